"""The worker: runs every feature's background jobs until stopped.

Its jobs run in four lanes, each a thread with its own app context, database session
and wake-up, so none waits for another: **mail** (posted forms, then the outbox:
confirmation and link mails), **editions** (scheduled sends, sending), **feeds**
(fetching the feeds that are due, digests at their hour, daily housekeeping) and
**webhooks** (calls to the registered endpoints, WEBHOOKS_TIMEOUT at most each). A feed
server that answers slowly holds the feeds lane, at most FEEDS_TIMEOUT_SECONDS per
fetch, and never a confirmation mail. A stop (SIGTERM) stops every lane: each finishes
what it is doing (the feeds lane starts no further fetch) and the worker returns.

`Worker.run_once` runs every job once, one after the other, in the order below:
`flask worker --once` and the tests use it. The lanes run in a thread of the web process
(the embedded default) and in the foreground with `flask --app wsgi worker`; any number
of workers may run at once, because every job claims its rows under a lease.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import event

from newsletters import busy, jobs
from newsletters.editions import delivery, lifecycle
from newsletters.extensions import db
from newsletters.feeds import digests
from newsletters.feeds import services as feeds
from newsletters.mailing import outbox
from newsletters.subscriptions.erasure import purge_pending
from newsletters.subscriptions.intake import process_subscribe_requests
from newsletters.webhooks import delivery as webhooks

log = logging.getLogger(__name__)

# The stop event of the worker whose job runs in this thread (the feeds job reads it).
_stopping: ContextVar[threading.Event | None] = ContextVar("worker_stopping", default=None)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs LANES side by side (`run_forever`), or every job once (`run_once`)."""

    def __init__(self, app: Flask, worker_id: str | None = None) -> None:
        self.app = app
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.lane_threads: list[threading.Thread] = []
        self._failures_in_a_row: dict[str, int] = {}
        self._wake = {lane.name: threading.Event() for lane in LANES}

    def run_jobs(self, jobs_: Sequence[Callable[[str], bool]], name: str = "all") -> bool:
        """Run `jobs_` once in a fresh app context; True if any of them did something."""
        did_work = False
        with self.app.app_context():
            token = _stopping.set(self.stopping)
            try:
                for job in jobs_:
                    did_work = job(self.worker_id) or did_work
                self._failures_in_a_row[name] = 0
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
                self._failures_in_a_row[name] = self._failures_in_a_row.get(name, 0) + 1
                log.exception("worker %s: %s job failed", self.worker_id, name)
            finally:
                _stopping.reset(token)
                db.session.remove()
        return did_work

    def run_once(self) -> bool:
        """Run every job once, in JOBS order; True if any of them did something."""
        return self.run_jobs(JOBS)

    def idle_seconds(self, name: str = "all") -> float:
        poll = float(self.app.config["WORKER_POLL_SECONDS"])
        return min(poll * (2 ** self._failures_in_a_row.get(name, 0)), 300.0)

    def run_lane(self, lane: Lane) -> None:
        """One lane until the worker stops: its jobs again while they find work, else
        a sleep that new work (a commit that queued some) cuts short."""
        wake = self._wake[lane.name]
        jobs.listen(wake)
        try:
            while not self.stopping.is_set():
                if self.run_jobs(lane.jobs, lane.name):
                    continue
                wake.wait(self.idle_seconds(lane.name))
                wake.clear()
        finally:
            jobs.unlisten(wake)

    def run_forever(self) -> None:
        """Run every lane in its own thread until `stop`; returns when all have ended."""
        log.info("worker %s started", self.worker_id)
        self.lane_threads = [
            threading.Thread(
                target=self.run_lane, args=(lane,), name=f"newsletters-{lane.name}", daemon=True
            )
            for lane in LANES
        ]
        for thread in self.lane_threads:
            thread.start()
        # Wait in slices: a signal handler of the main thread (`flask worker`) runs between.
        while not self.stopping.wait(1.0):
            pass
        for thread in self.lane_threads:
            thread.join()
        log.info("worker %s stopped", self.worker_id)

    def stop(self) -> None:
        self.stopping.set()
        for wake in self._wake.values():
            wake.set()
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
    started = lifecycle.start_scheduled()
    stats = delivery.send_due(worker_id)
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
    return feeds.fetch_due(worker_id, stop=_stopping.get()) > 0


def _webhooks_job(worker_id: str) -> bool:
    return webhooks.deliver_due(worker_id, stop=_stopping.get()) > 0


def _digests_job(worker_id: str) -> bool:
    return digests.scheduled_digests(worker_id) > 0


_purge_daily = _Daily(_purge_pending)


@dataclass(frozen=True)
class Lane:
    """Jobs that run one after the other in one thread, beside the other lanes."""

    name: str
    jobs: tuple[Callable[[str], bool], ...]


# Each lane's jobs in order: posted forms become mail before the outbox is emptied; due
# feeds are fetched before digests are made from them (a digest in auto-send is an
# edition scheduled for now: its commit wakes the editions lane).
LANES: tuple[Lane, ...] = (
    Lane("mail", (_intake_job, _outbox_job)),
    Lane("editions", (_editions_job,)),
    Lane("feeds", (_feeds_job, _digests_job, _purge_daily)),
    Lane("webhooks", (_webhooks_job,)),
)

# Every job, for `run_once`: as above, and the editions job after the digests so that a
# digest in auto-send starts in the same round; then housekeeping.
JOBS: list[Callable[[str], bool]] = [
    _intake_job,
    _outbox_job,
    _feeds_job,
    _digests_job,
    _editions_job,
    _webhooks_job,
    _purge_daily,
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
        click.echo(f"worker {worker.worker_id}: stopping after the current message and fetch")
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"worker {worker.worker_id}: running (SIGTERM stops it)")
    try:
        worker.run_forever()
    finally:
        # The feed parser processes (and multiprocessing's resource tracker) end with us.
        feeds.shutdown_parsing_pools()
    click.echo(f"worker {worker.worker_id}: stopped")
