"""The worker: runs every feature's background jobs until stopped.

The same `Worker.run_once` runs in a thread of the web process (the embedded default)
and in the foreground with `flask --app wsgi worker`; any number may run at once,
because every job claims its rows under a lease.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import event

from newsletters import busy, jobs
from newsletters.editions import sending
from newsletters.extensions import db
from newsletters.feeds import digests
from newsletters.feeds import services as feeds
from newsletters.mailing import outbox
from newsletters.subscriptions.services import process_subscribe_requests, purge_pending

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs each job of JOBS in turn; sleeps when none had work, waking early on new mail."""

    def __init__(self, app: Flask, worker_id: str | None = None) -> None:
        self.app = app
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._failures_in_a_row = 0

    def run_once(self) -> bool:
        """Run every job once; True if any of them did something."""
        did_work = False
        with self.app.app_context():
            try:
                for job in JOBS:
                    did_work = job(self.worker_id) or did_work
                self._failures_in_a_row = 0
            except Exception as error:
                if busy.is_busy(error):
                    # Another transaction held a lock too long (a large import, say):
                    # not a failure. What the job claimed stays leased or is retried,
                    # and the next tick carries on.
                    db.session.rollback()
                    log.warning("worker %s: database busy, next tick retries", self.worker_id)
                    return False
                # A database or programming error must not kill the worker; it is logged
                # and retried after a pause that grows while it keeps failing.
                db.session.rollback()
                self._failures_in_a_row += 1
                log.exception("worker %s: job failed", self.worker_id)
            finally:
                db.session.remove()
        return did_work

    def idle_seconds(self) -> float:
        poll = float(self.app.config["WORKER_POLL_SECONDS"])
        return min(poll * (2**self._failures_in_a_row), 300.0)

    def run_forever(self) -> None:
        log.info("worker %s started", self.worker_id)
        while not self.stopping.is_set():
            if self.run_once():
                continue
            jobs.work_waiting.wait(self.idle_seconds())
            jobs.work_waiting.clear()
        log.info("worker %s stopped", self.worker_id)

    def stop(self) -> None:
        self.stopping.set()
        jobs.work_waiting.set()


def _outbox_job(worker_id: str) -> bool:
    stats = outbox.deliver_due(worker_id)
    if stats.connection_lost:
        # The mail server is away: the batch was put back with a backoff, so the worker
        # idles instead of spinning.
        log.warning("mail server unavailable: %s", stats.errors[-1])
        return False
    return stats.handled > 0


def _intake_job(worker_id: str) -> bool:
    return process_subscribe_requests(worker_id) > 0


def _editions_job(worker_id: str) -> bool:
    started = sending.start_scheduled()
    stats = sending.send_due(worker_id)
    if stats.connection_lost:
        log.warning("mail server unavailable for editions: %s", stats.errors[-1])
        return False
    return bool(started or stats.handled)


class _Daily:
    """Runs a job at most once a day per worker process. Several workers may run it the
    same day: the purge is idempotent."""

    def __init__(self, job: Callable[[], object], interval_seconds: float = 86400) -> None:
        self.job = job
        self.interval = interval_seconds
        self.last_run: float | None = None

    def __call__(self, worker_id: str) -> bool:
        now = time.monotonic()
        if self.last_run is not None and now - self.last_run < self.interval:
            return False
        self.last_run = now
        self.job()
        return False  # housekeeping: never keeps the worker from idling


def _purge_pending() -> None:
    subscriptions, subscribers = purge_pending()
    if subscriptions:
        log.info("purged %s pending subscription(s), %s subscriber(s)", subscriptions, subscribers)


def _feeds_job(worker_id: str) -> bool:
    return feeds.fetch_due(worker_id) > 0


def _digests_job(worker_id: str) -> bool:
    return digests.scheduled_digests(worker_id) > 0


# In order: posted forms become mail before the outbox is emptied; due feeds are fetched
# before digests are made from them; a digest in auto-send is an edition scheduled for
# now, which the editions job starts in the same round; then housekeeping.
JOBS: list[Callable[[str], bool]] = [
    _intake_job,
    _outbox_job,
    _feeds_job,
    _digests_job,
    _editions_job,
    _Daily(_purge_pending),
]


_in_process_lock = threading.Lock()


def start_in_process_worker(app: Flask) -> Worker:
    """Start this app's worker thread once (the embedded default); kept in app.extensions."""
    with _in_process_lock:
        worker = app.extensions.get("newsletters_worker")
        if worker is None:
            worker = Worker(app)
            worker.thread = threading.Thread(
                target=worker.run_forever, name="newsletters-worker", daemon=True
            )
            app.extensions["newsletters_worker"] = worker
            worker.thread.start()
        return worker


def _wait_longer_for_locks(seconds: float) -> None:
    """This process's connections wait `seconds` for a lock, not the web's shorter
    DATABASE_LOCK_TIMEOUT_SECONDS: nobody is waiting on a worker, and a sending lane
    whose commit gave up would leave its in-flight message to be counted as a possible
    duplicate."""
    engine = db.engine

    @event.listens_for(engine, "connect")
    def _lock_timeout(dbapi_connection, connection_record) -> None:
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        else:
            cursor.execute(f"SET lock_timeout = {int(seconds * 1000)}")
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_connection.commit()

    engine.dispose()  # connections made before this (none, normally) are not reused


@click.command("worker")
@click.option("--once", is_flag=True, help="Do the work that is due now, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Run the worker (delivery, feeds, digests, scheduled sends) until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _wait_longer_for_locks(float(current_app.config["WORKER_LOCK_TIMEOUT_SECONDS"]))
    worker = Worker(current_app._get_current_object())
    if once:
        while worker.run_once():
            pass
        click.echo(f"worker {worker.worker_id}: nothing more is due")
        return

    def _stop(signum, frame) -> None:
        click.echo(f"worker {worker.worker_id}: stopping after the current message")
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"worker {worker.worker_id}: running (SIGTERM stops it)")
    worker.run_forever()
    click.echo(f"worker {worker.worker_id}: stopped")
