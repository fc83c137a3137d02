"""Fixtures: a real database (SQLite, or PostgreSQL when NEWSLETTERS_TEST_DATABASE_URL is
set), the app, a strict SMTP server on loopback, a live HTTP server."""

from __future__ import annotations

import os
import smtplib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import MetaData, create_engine, text

# The developer's own settings must not leak into tests.
for _key in list(os.environ):
    if _key.startswith("NEWSLETTERS_") and _key != "NEWSLETTERS_TEST_DATABASE_URL":
        del os.environ[_key]
os.environ["NEWSLETTERS_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="newsletters-instance-")

from newsletters import create_app, jobs, timeutil  # noqa: E402
from newsletters.catalog.services import seed_newsletters  # noqa: E402
from newsletters.extensions import db, limiter  # noqa: E402
from newsletters.mailing import outbox  # noqa: E402
from tests.support.clock import Clock, local  # noqa: E402
from tests.support.feedserver import FeedServer  # noqa: E402
from tests.support.live import LiveServer  # noqa: E402
from tests.support.smtp import SMTPServer, free_port  # noqa: E402

ROOT_DIR = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-key-not-for-production"
ALLOWED_SMTP_PORTS: set[int] = set()


def pytest_report_header(config) -> str:
    return f"database: {_database_label()}"


def _database_label() -> str:
    url = os.environ.get("NEWSLETTERS_TEST_DATABASE_URL")
    return url.split("@")[-1] if url else "SQLite (temporary file)"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("NEWSLETTERS_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


def base_config(database_url: str) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "WORKER_IN_PROCESS": False,
        "PUBLIC_BASE_URL": "http://localhost",
        "MAIL_SERVER": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        "SEND_RETRY_BACKOFF_SECONDS": 0.05,
        "SEND_RETRY_MAX_BACKOFF_SECONDS": 0.2,
        "WORKER_POLL_SECONDS": 0.05,
        "MAIL_TIMEOUT_SECONDS": 5,
        # The tests serve their feeds on loopback (tests/support/feedserver.py); the
        # address policy's own tests turn this off.
        "FEEDS_ALLOW_PRIVATE": True,
    }


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    """The schema built by the real migrations, once per run, on an emptied database."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)
    engine.dispose()
    app = create_app(base_config(database_url))
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.engine.dispose()
    return database_url


def _empty_tables() -> None:
    tables = [t for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        names = ", ".join(t.name for t in tables)
        db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(table.delete())
        # Like RESTART IDENTITY: each test's ids start at 1 again (AUTOINCREMENT tables
        # keep their high-water mark in sqlite_sequence).
        if db.session.execute(
            text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
        ).first():
            db.session.execute(text("DELETE FROM sqlite_sequence"))
    db.session.commit()


@pytest.fixture
def make_app(migrated_database: str) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database, seeded with KL's newsletters; emptied afterwards."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config = base_config(migrated_database)
        config.update(overrides)
        app = create_app(config)
        with app.app_context():
            if not apps:
                _empty_tables()
                seed_newsletters()
            limiter.reset()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        worker = app.extensions.get("newsletters_worker")
        if worker is not None:
            worker.stop()
            worker.thread.join(timeout=10)
    if apps:
        with apps[0].app_context():
            db.session.remove()
            _empty_tables()
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    jobs.work_waiting.clear()


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The app's clock, standing at Monday 30 November 2026, 06:00 in Copenhagen (before
    the digests' hour) until the test moves it. Every test that touches a schedule
    (digests, scheduled sends, "today") sets the time through it."""
    clock = Clock(local(2026, 11, 30, 6, 0))
    timeutil.set_clock(clock)
    yield clock
    timeutil.set_clock(None)


@pytest.fixture
def running_clock() -> Iterator[Clock]:
    """The app's clock from Monday 30 November 2026, 10:09 in Copenhagen (after the
    digests' hour), running with the real seconds: for a live server and its worker."""
    clock = Clock.running_from(local(2026, 11, 30, 10, 9))
    timeutil.set_clock(clock)
    yield clock
    timeutil.set_clock(None)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """Feeds served on loopback (tests/support/feedserver.py) for the test's length."""
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer().start()
    ALLOWED_SMTP_PORTS.add(server.port)
    yield server
    ALLOWED_SMTP_PORTS.discard(server.port)
    server.stop()


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], smtp_server: SMTPServer) -> Flask:
    """An app whose mail goes to the strict SMTP server on loopback."""
    return make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)


@pytest.fixture
def live_server(make_app: Callable[..., Flask], smtp_server: SMTPServer) -> Iterator[LiveServer]:
    """The app over real HTTP, its in-process worker mailing the SMTP server on loopback."""
    # The public base URL must be known before the app is built: reserve the port first.
    port = free_port()
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        WORKER_IN_PROCESS=True,
        SESSION_COOKIE_SECURE=False,
    )
    server = LiveServer(app, port=port).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_unexpected_smtp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that opens an SMTP connection to a server it did not start."""
    original = smtplib.SMTP.connect

    def guarded(self, host="localhost", port=0, source_address=None):
        if int(port) not in ALLOWED_SMTP_PORTS:
            raise AssertionError(f"unexpected SMTP connection to {host}:{port}")
        return original(self, host, port, source_address)

    monkeypatch.setattr(smtplib.SMTP, "connect", guarded)


def deliver(app: Flask) -> outbox.DeliveryStats:
    """Run the outbox job once, as the worker does."""
    with app.app_context():
        stats = outbox.deliver_due("test-worker")
        db.session.remove()
        return stats


@pytest.fixture(autouse=True)
def no_stray_workers() -> Iterator[None]:
    """An in-process worker left running would deliver other tests' mail."""
    import threading

    yield
    stray = [t for t in threading.enumerate() if t.name == "newsletters-worker" and t.is_alive()]
    assert not stray, "a test left an in-process worker running (WORKER_IN_PROCESS)"
