"""The factory, configuration layers, security headers, error pages, the schema."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from newsletters import ConfigurationError, create_app
from newsletters.extensions import db


def test_refuses_to_start_in_production_without_a_secret_key(monkeypatch, database_url):
    with pytest.raises(ConfigurationError, match="NEWSLETTERS_SECRET_KEY"):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with pytest.raises(ConfigurationError):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "dev"})


def test_environment_overrides_code_defaults(monkeypatch, database_url):
    monkeypatch.setenv("NEWSLETTERS_SECRET_KEY", "from-the-environment-0123456789")
    monkeypatch.setenv("NEWSLETTERS_SEND_RATE_PER_SECOND", "25")
    monkeypatch.setenv("NEWSLETTERS_PUBLIC_BASE_URL", "https://nyhedsbreve.kl.dk/")
    monkeypatch.setenv("NEWSLETTERS_WORKER_IN_PROCESS", "false")
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    assert app.config["WORKER_IN_PROCESS"] is False
    assert app.config["SECRET_KEY"] == "from-the-environment-0123456789"
    assert app.config["SEND_RATE_PER_SECOND"] == 25
    assert app.config["PUBLIC_BASE_URL"] == "https://nyhedsbreve.kl.dk"
    # https in production: secure cookies and HSTS.
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert "Strict-Transport-Security" in app.test_client().get("/nope").headers


def test_instance_config_is_read(monkeypatch, tmp_path, database_url):
    (tmp_path / "config.py").write_text(
        "SECRET_KEY = 'from-the-instance-folder-0123'\nX_URL = 'x'\n"
    )
    monkeypatch.setenv("NEWSLETTERS_INSTANCE_PATH", str(tmp_path))
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    assert app.config["SECRET_KEY"] == "from-the-instance-folder-0123"
    assert app.config["X_URL"] == "x"


def test_postgresql_urls_use_psycopg3(database_url):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "postgresql://u@h/d"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/d"


def test_security_headers(client):
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


def test_session_cookie_is_httponly_and_samesite(make_app):
    app = make_app(PUBLIC_BASE_URL="https://nyhedsbreve.kl.dk", SESSION_COOKIE_SECURE=None)
    cookie = app.test_client().get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_error_pages_are_danish_and_never_a_stack_trace(make_app):
    app = make_app(TESTING=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    client = app.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "secret internals" not in html and "Traceback" not in html
    assert '<html lang="da">' in html
    assert client.get("/no-such-page").status_code == 404
    assert client.put("/").status_code == 405


def test_dev_mailbox_is_off_unless_asked_for(make_app):
    assert make_app().test_client().get("/dev/mail/").status_code == 404
    app = make_app(DEV_MAILBOX=True)
    from tests.conftest import deliver
    from tests.support.flows import subscribe

    client = app.test_client()
    subscribe(client, "a@example.dk")
    deliver(app)
    inbox = client.get("/dev/mail/").get_data(as_text=True)
    assert "a@example.dk" in inbox
    message = client.get("/dev/mail/1").get_data(as_text=True)
    assert "/confirm/" in message
    html_part = client.get("/dev/mail/1.html")
    assert "default-src 'none'" in html_part.headers["Content-Security-Policy"]


def test_dev_mailbox_is_never_on_with_a_real_mail_server(make_app):
    app = make_app(DEV_MAILBOX=True, MAIL_SERVER="127.0.0.1")
    assert app.config["DEV_MAILBOX"] is False
    assert app.test_client().get("/dev/mail/").status_code == 404


def _not_search_index(name, type_, parent_names) -> bool:
    """Migration 0024's search index lives outside the models (FTS5 tables on SQLite,
    trigram GIN indexes on PostgreSQL)."""
    return not (name or "").startswith("subscribers_search") and not (name or "").endswith("_trgm")


def test_migrations_match_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _not_search_index}
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == [], "the models changed without a migration: run `flask db migrate`"


def test_without_dkfds_installed_pages_link_no_missing_stylesheet(make_app, tmp_path):
    # An installed wheel has no node_modules: plain styling, and no link that would 404.
    app = make_app(DKFDS_DIST=str(tmp_path / "no-node-modules"))
    html = app.test_client().get("/").get_data(as_text=True)
    assert "dkfds.min.css" not in html and "/static/app.css" in html
    with_dkfds = make_app()
    if os.path.isdir(with_dkfds.config["DKFDS_DIST"]):  # `make assets` installed it
        assert "dkfds.min.css" in with_dkfds.test_client().get("/").get_data(as_text=True)
