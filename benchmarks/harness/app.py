"""The app under test: its settings for CLI subprocesses, a migrated and seeded database,
and the app in this process."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .common import FLASK, ROOT, VENV_BIN, run_checked


def newsletters_env(settings: dict[str, str], tmp: Path) -> dict[str, str]:
    """This process's environment without its NEWSLETTERS_* settings, plus `settings` as
    NEWSLETTERS_<key> and an instance folder in the run's temp dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env.update({f"NEWSLETTERS_{k}": v for k, v in settings.items()})
    env["NEWSLETTERS_INSTANCE_PATH"] = str(tmp / "instance")
    return env


def compile_package() -> None:
    """The package's byte code, as `make setup` and a pip install write it: the CLI
    processes a benchmark times would otherwise compile the whole package at each start
    wherever PYTHONDONTWRITEBYTECODE is set (0.1 s each)."""
    command = [str(VENV_BIN / "python"), "-m", "compileall", "-q", str(ROOT / "newsletters")]
    run_checked(command, dict(os.environ), "compiling the package")


def migrate_and_seed(env: dict[str, str]) -> None:
    """`flask --app wsgi db upgrade` and `flask --app wsgi seed`, as an operator does."""
    compile_package()
    run_checked([*FLASK, "db", "upgrade"], env, "flask db upgrade")
    run_checked([*FLASK, "seed"], env, "flask seed")


def make_app(settings: dict[str, str], tmp: Path):
    """The app in this process with the same settings as the CLI subprocesses get."""
    for key in [k for k in os.environ if k.startswith("NEWSLETTERS_")]:
        del os.environ[key]
    os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp / "instance")
    from newsletters import create_app

    config: dict = {k: json.loads(v) if v.isdigit() else v for k, v in settings.items()}
    config["WORKER_IN_PROCESS"] = False
    return create_app(config)


def in_process_app(config: dict, *, migrate: bool = True):
    """create_app(config) on a fresh database, migrated and seeded in this process."""
    from flask_migrate import upgrade

    from newsletters import create_app
    from newsletters.catalog.services import seed_newsletters

    app = create_app({"WORKER_IN_PROCESS": False, **config})
    if migrate:
        with app.app_context():
            upgrade()
            seed_newsletters()
    return app


BENCH_ADMIN = "admin@kl.dk"
BENCH_PASSWORD = "bench-password-long"  # noqa: S105 - a throwaway benchmark database


def admin_client(app):
    """A test client signed in as an administrator, with both factors (administrators
    must have two); the app runs with CSRF off, as the benchmarks do."""
    import pyotp

    from newsletters import timeutil
    from newsletters.extensions import db
    from newsletters.staff import services as staff
    from newsletters.staff.twofactor import sealing

    secret = pyotp.random_base32()
    with app.app_context():
        account = staff.create_staff(BENCH_ADMIN, role="admin", password=BENCH_PASSWORD)
        account.totp_secret = sealing.seal(secret)
        account.totp_enabled_at = timeutil.utcnow()
        db.session.commit()
        db.session.remove()
    client = app.test_client()
    client.post("/staff/login", data={"email": BENCH_ADMIN, "password": BENCH_PASSWORD})
    with app.app_context():
        code = pyotp.TOTP(secret).at(timeutil.utcnow())
    response = client.post("/staff/login/code", data={"code": code})
    if response.status_code != 303:
        raise RuntimeError(f"the benchmark's administrator could not sign in: {response.status}")
    return client
