"""A busy database (finding 5 of issue 18): a large import never makes the public form
fail, a busy database is retried or answered 503 with Retry-After (never a 500), and the
worker's jobs carry on at their next tick. On SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions.models import (
    Subscriber,
    SubscribeRequest,
    Subscription,
    SubscriptionStatus,
)
from newsletters.worker import Worker
from tests.conftest import ROOT_DIR, TEST_SECRET
from tests.support.pages import csrf_token

# A lock timeout short enough for a test to wait it out several times.
SHORT_WAIT = {"DATABASE_LOCK_TIMEOUT_SECONDS": 0.2, "RATELIMIT_SUBSCRIBE": "10000 per hour"}


@contextlib.contextmanager
def database_locked(app: Flask) -> Iterator[None]:
    """Hold the lock a subscribe POST's INSERT needs, from another connection, as a long
    write transaction (an import of old) does."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")  # SQLite's one write lock
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
            connection.execute("LOCK TABLE subscribe_requests, subscribers IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.rollback()


def post_subscribe(client: FlaskClient, email: str):
    token = csrf_token(client.get("/").data)
    return client.post(
        "/",
        data={"csrf_token": token, "email": email, "newsletters": "momentum"},
    )


def count(app: Flask, model, *where) -> int:
    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model).where(*where))
        db.session.remove()
        return value


def test_a_busy_database_gets_a_danish_503_with_retry_after_not_a_500(make_app):
    app = make_app(**SHORT_WAIT, BUSY_RETRIES=1)
    client = app.test_client()
    token = csrf_token(client.get("/").data)
    with database_locked(app):
        response = client.post(
            "/", data={"csrf_token": token, "email": "anna@example.dk", "newsletters": "momentum"}
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    page = response.get_data(as_text=True)
    assert "Vi har travlt lige nu" in page and "Intet blev gemt" in page
    assert "Traceback" not in page
    assert count(app, SubscribeRequest) == 0
    # Once the lock is gone the same POST goes through.
    assert post_subscribe(client, "anna@example.dk").status_code == 303
    assert count(app, SubscribeRequest) == 1


def test_a_request_that_finds_the_database_busy_is_retried_and_carried_out_once(make_app):
    app = make_app(**SHORT_WAIT, BUSY_RETRIES=10)
    client = app.test_client()
    token = csrf_token(client.get("/").data)
    with database_locked(app):
        # The lock goes away while the request is retrying.
        answer: list = []
        thread = threading.Thread(
            target=lambda: answer.append(
                client.post(
                    "/",
                    data={"csrf_token": token, "email": "bo@example.dk", "newsletters": "momentum"},
                )
            )
        )
        thread.start()
        time.sleep(0.6)
    thread.join(timeout=30)
    assert answer[0].status_code == 303
    assert count(app, SubscribeRequest) == 1


def test_the_worker_retries_at_its_next_tick_when_the_database_is_busy(make_app, caplog):
    app = make_app(**SHORT_WAIT)
    assert post_subscribe(app.test_client(), "carl@example.dk").status_code == 303
    worker = Worker(app, "busy-test")
    with database_locked(app):
        assert worker.run_once() is False
    # Busy is not a failure: no growing pause, nothing counted against the request.
    assert not any(worker._failures_in_a_row.values())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with app.app_context():
        request_row = db.session.scalars(select(SubscribeRequest)).one()
        assert request_row.attempts == 0
        db.session.remove()
    while worker.run_once():
        pass
    assert count(app, SubscribeRequest) == 0
    assert count(app, Subscription, Subscription.status == SubscriptionStatus.PENDING) == 1


@pytest.mark.e2e
def test_public_subscribes_and_the_worker_keep_working_during_a_large_import(
    make_app, tmp_path: Path, caplog
):
    """The attack of finding 5: a 5 000-row import (the real CLI, in another process)
    while the public form is posted and the worker runs its jobs, on one database."""
    app = make_app(RATELIMIT_SUBSCRIBE="10000 per hour")
    rows = 5_000
    csv_path = tmp_path / "large.csv"
    with csv_path.open("w") as out:
        out.write("email,name,municipality,role\n")
        for n in range(rows):
            out.write(f"import{n:05d}@kommune.dk,Person {n},Aarhus,medarbejder\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")},
        "NEWSLETTERS_SECRET_KEY": TEST_SECRET,
        "NEWSLETTERS_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTERS_SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"].replace(
            "postgresql+psycopg://", "postgresql://"
        ),
        "NEWSLETTERS_WORKER_IN_PROCESS": "false",
    }
    worker = Worker(app, "load-test")
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            if not worker.run_once():
                time.sleep(0.05)

    worker_thread = threading.Thread(target=work)
    worker_thread.start()
    # Invitations: the heaviest mode (a mail rendered per row).
    importer = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "subscribers", "import",
         str(csv_path), "--newsletter", "kl-nyheder"],
        cwd=ROOT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = app.test_client()
    answers: list[tuple[int, str | None, float]] = []
    try:
        while importer.poll() is None:
            started = time.monotonic()
            response = post_subscribe(client, f"web{len(answers):04d}@example.dk")
            answers.append(
                (
                    response.status_code,
                    response.headers.get("Retry-After"),
                    time.monotonic() - started,
                )
            )
        out, err = importer.communicate(timeout=10)
    finally:
        if importer.poll() is None:
            importer.kill()
        stop.set()
        worker_thread.join(timeout=60)
    assert importer.returncode == 0, err
    assert f"{rows} invited" in out
    assert len(answers) >= 10, "the import ended before the form was tried"
    statuses = [status for status, _, _ in answers]
    assert all(s == 303 or (s == 503 and retry) for s, retry, _ in answers), statuses
    # In practice every POST gets through: no chunk holds the lock for long.
    assert statuses.count(303) == len(statuses), statuses
    assert max(seconds for _, _, seconds in answers) < 5
    assert not any(worker._failures_in_a_row.values())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # What the worker had not done yet it does now; nothing was lost on either side.
    while worker.run_once():
        pass
    posted = len(answers)
    assert count(app, SubscribeRequest) == 0
    assert count(app, Subscriber, Subscriber.email.like("web%")) == posted
    assert count(app, Subscriber, Subscriber.email.like("import%")) == rows
    assert count(app, OutboxMessage, OutboxMessage.kind == "confirm") == rows + posted


def test_an_import_stopped_by_a_busy_database_says_so_and_completes_when_run_again(
    make_app, tmp_path: Path
):
    app = make_app(**SHORT_WAIT, IMPORT_CHUNK_ROWS=2)
    path = tmp_path / "people.csv"
    path.write_text("email\n" + "".join(f"p{n}@kommune.dk\n" for n in range(5)))
    args = ["subscribers", "import", str(path), "--newsletter", "bestyrelse", "--basis", "B"]
    with database_locked(app):
        stopped = app.test_cli_runner().invoke(args=args)
    assert stopped.exit_code == 1
    assert "database was busy" in stopped.output and "run the same command again" in stopped.output
    assert "Traceback" not in stopped.output
    done = app.test_cli_runner().invoke(args=args)
    assert done.exit_code == 0, done.output
    assert count(app, Subscription, Subscription.status == SubscriptionStatus.CONFIRMED) == 5
