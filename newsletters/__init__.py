"""KL's newsletter subscriptions: the application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from newsletters.config import DefaultConfig

PACKAGE = Path(__file__).resolve().parent
# A source checkout (make, pip install -e, flask --app wsgi from the clone) keeps its
# instance folder and node_modules beside the package; an installed wheel has neither.
ROOT = PACKAGE.parent
WEAK_SECRETS = {"", "dev", "secret", "change-me", "changeme", "development"}


class ConfigurationError(RuntimeError):
    """The app was asked to start with settings it must not run with."""


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: code defaults, instance/config.py, NEWSLETTERS_* env, then test_config."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("NEWSLETTERS_INSTANCE_PATH") or _default_instance_path(),
        instance_relative_config=True,
        template_folder=str(PACKAGE / "templates"),
        static_folder=str(PACKAGE / "static"),
    )
    app.config.from_object(DefaultConfig)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("NEWSLETTERS")
    if test_config:
        app.config.from_mapping(test_config)
    _resolve_defaults(app)

    from newsletters import cli, errors, i18n, inputs, security, templating
    from newsletters.extensions import babel, csrf, db, limiter, login_manager, mail, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PACKAGE / "migrations"), render_as_batch=True)
    mail.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale)
    security.init_app(app)
    # Before the blueprints: their `<int:...>` rules use the bounded converter.
    inputs.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    templating.init_app(app)

    # Import every model so metadata (and Alembic) see all tables.
    from newsletters import models  # noqa: F401
    from newsletters.admin.routes import bp as admin_bp
    from newsletters.api.routes import bp as api_bp
    from newsletters.api.staff_routes import bp as api_staff_bp
    from newsletters.assets import bp as assets_bp
    from newsletters.editions.routes import bp as editions_bp
    from newsletters.editions.staff_routes import bp as editor_bp
    from newsletters.feeds.routes import bp as feeds_bp
    from newsletters.mailing.routes import bp as mailing_bp
    from newsletters.reports.staff_routes import bp as reports_bp
    from newsletters.staff.routes import bp as staff_bp
    from newsletters.subscriptions.routes import bp as subscriptions_bp
    from newsletters.webhooks.routes import bp as webhooks_bp

    app.register_blueprint(assets_bp)
    app.register_blueprint(editions_bp)
    app.register_blueprint(subscriptions_bp)
    app.register_blueprint(mailing_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(editor_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(feeds_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(api_staff_bp)
    cli.init_app(app)
    _listen(app)
    _init_worker(app)
    return app


def _listen(app: Flask) -> None:
    """Features that react to what lower layers announce (newsletters/events.py), or
    that lower layers call back (mailing.deferred)."""
    from newsletters.audit import services as audit
    from newsletters.bounces import erasure as bounces_erasure
    from newsletters.bounces import processing as bounces
    from newsletters.editions import erasure as editions_erasure
    from newsletters.reports import erasures as reports_erasures
    from newsletters.subscriptions import mails as subscription_mails
    from newsletters.webhooks import services as webhooks

    audit.init_app(app)
    # An import's invitations are written when the worker sends them (mailing.deferred).
    subscription_mails.init_app(app)
    # A refused delivery is recorded as a bounce (editions announce it).
    bounces.init_app(app)
    # An erased subscriber's rows in the features above subscriptions, and their export.
    editions_erasure.init_app(app)
    bounces_erasure.init_app(app)
    # Erasures counted per newsletter and week (nothing personal), for the reports.
    reports_erasures.init_app(app)
    # Outgoing webhooks: a delivery row per subscribed endpoint, in the same transaction.
    webhooks.init_app(app)


def _default_instance_path() -> str | None:
    """`instance/` of a source checkout; Flask's own default (under sys.prefix) for a wheel."""
    if (ROOT / "pyproject.toml").is_file():
        return str(ROOT / "instance")
    return None


def _earlier_keys(cfg, name: str) -> list[str]:
    """A setting of earlier keys: a list of texts, or one text (from the environment)."""
    keys = cfg.get(name) or []
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list | tuple) or not all(
        isinstance(key, str) and key.strip() for key in keys
    ):
        raise ConfigurationError(
            f"{name} must be a list of earlier keys (texts), "
            f"e.g. NEWSLETTERS_{name}='[\"the old key\"]'"
        )
    return list(keys)


def _resolve_defaults(app: Flask) -> None:
    cfg = app.config
    secret = cfg.get("SECRET_KEY")
    if not app.debug and not app.testing:
        if not secret or str(secret).strip().lower() in WEAK_SECRETS or len(str(secret)) < 16:
            raise ConfigurationError(
                "NEWSLETTERS_SECRET_KEY is not set (or is too weak). Set it in the environment "
                "or in instance/config.py; `make setup` writes a random one for a laptop."
            )
    elif not secret:
        cfg["SECRET_KEY"] = "insecure-debug-key-" + os.urandom(8).hex()
    for name in ("SECRET_KEY_FALLBACKS", "TWOFA_ENCRYPTION_KEY_FALLBACKS"):
        cfg[name] = _earlier_keys(cfg, name)
    suppression_key = cfg.get("SUPPRESSION_HASH_KEY")
    if cfg["SECRET_KEY_FALLBACKS"] and not suppression_key:
        raise ConfigurationError(
            "SECRET_KEY_FALLBACKS is set but SUPPRESSION_HASH_KEY is not: the suppression "
            "list is keyed by SECRET_KEY, and a new one would forget who was erased. With "
            "the old SECRET_KEY still in place, run `flask subscribers suppression-key` and "
            "set NEWSLETTERS_SUPPRESSION_HASH_KEY to what it prints; then rotate."
        )
    if isinstance(suppression_key, str) and suppression_key.startswith("hex:"):
        try:
            if len(bytes.fromhex(suppression_key[4:])) < 16:
                raise ValueError("too short")
        except ValueError:
            raise ConfigurationError(
                "SUPPRESSION_HASH_KEY starts with hex: but is not at least 16 bytes of hex "
                "(copy it whole from `flask subscribers suppression-key`)"
            ) from None
    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        cfg["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'newsletters.db'}"
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql://"):
        # psycopg 3 is the driver we install.
        cfg["SQLALCHEMY_DATABASE_URI"] = cfg["SQLALCHEMY_DATABASE_URI"].replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
    # Wait this long for a lock another transaction holds, then the database is "busy"
    # (newsletters/busy.py): retried or answered 503, never a request hanging for good.
    lock_timeout = float(cfg["DATABASE_LOCK_TIMEOUT_SECONDS"])
    opts = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Several threads (web + in-process worker) and processes share the file.
        opts.setdefault("connect_args", {"timeout": lock_timeout})
    elif cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        opts.setdefault(
            "connect_args", {"options": f"-c lock_timeout={max(1, int(lock_timeout * 1000))}"}
        )
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = opts
    cfg["PUBLIC_BASE_URL"] = str(cfg["PUBLIC_BASE_URL"]).rstrip("/")
    if cfg.get("SESSION_COOKIE_SECURE") is None:
        cfg["SESSION_COOKIE_SECURE"] = cfg["PUBLIC_BASE_URL"].startswith("https://")
    if cfg.get("MAIL_SERVER"):
        # Real mail carries personal links: never show it in the browser, whatever an
        # instance config copied from a laptop says.
        cfg["DEV_MAILBOX"] = False
    elif cfg.get("DEV_MAILBOX") is None:
        cfg["DEV_MAILBOX"] = app.debug
    if cfg.get("DKFDS_DIST") is None:
        cfg["DKFDS_DIST"] = str(ROOT / "node_modules" / "dkfds" / "dist")
    if cfg.get("SWAGGER_UI_DIST") is None:
        cfg["SWAGGER_UI_DIST"] = str(ROOT / "node_modules" / "swagger-ui-dist")
    catch_up = cfg.get("DIGEST_CATCH_UP_MINUTES")
    # Slots are a day apart (23 hours when the clocks go forward): one window must close
    # well before the next slot opens (feeds/digests.py).
    if (
        isinstance(catch_up, bool)
        or not isinstance(catch_up, int | float)
        or not (1 <= catch_up <= 720)
    ):
        raise ConfigurationError(
            f"DIGEST_CATCH_UP_MINUTES must be a number of minutes from 1 to 720, not {catch_up!r}"
        )
    invitation_days = cfg.get("STAFF_INVITATION_MAX_AGE_DAYS")
    # Whole days: the Staff page says "expires after N days".
    if (
        isinstance(invitation_days, bool)
        or not isinstance(invitation_days, int)
        or not (1 <= invitation_days <= 365)
    ):
        raise ConfigurationError(
            "STAFF_INVITATION_MAX_AGE_DAYS must be a whole number of days from 1 to 365, "
            f"not {invitation_days!r}"
        )


def _init_worker(app: Flask) -> None:
    """Celery when a broker is configured; else the in-process worker, started with the
    first request (never in CLI commands)."""
    if app.config.get("CELERY_BROKER_URL"):
        from newsletters.tasks import celery_init_app

        celery_init_app(app)
        return
    if not app.config["WORKER_IN_PROCESS"]:
        return
    from newsletters.worker import start_in_process_worker

    @app.before_request
    def _ensure_worker() -> None:
        start_in_process_worker(app)
