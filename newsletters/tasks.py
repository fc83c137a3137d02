"""Scale-out: the worker's jobs on Celery (Redis or RabbitMQ), chosen by configuration.

With CELERY_BROKER_URL set, one task per lane of the worker (`newsletters.worker.LANES`:
mail, editions, feeds, webhooks) runs exactly what that lane of the in-process worker runs: the
same job functions, claiming rows under leases, so any number of Celery workers may run
on any number of machines. Celery beat sends each lane a tick every
WORKER_POLL_SECONDS; a commit that queues work sends one to each lane at once.

Each lane's task goes to its own queue (`mail`, `editions`, `feeds`, `webhooks`), so a
slow feed server or webhook endpoint can hold only its own queue: give it a worker
process of its own, and mail never waits behind a fetch.

    celery -A wsgi.celery worker --beat -Q mail,editions --loglevel=INFO
    celery -A wsgi.celery worker -Q feeds,webhooks --loglevel=INFO

A worker started without -Q consumes all four queues (fine on a laptop; a fetch then
holds one of its pool's slots, at most FEEDS_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import logging

from celery import Celery, Task
from flask import Flask, current_app
from kombu import Queue

from newsletters import jobs
from newsletters.worker import LANES, Worker

log = logging.getLogger(__name__)

# The lanes of newsletters.worker, each a queue.
LANE_QUEUES = tuple(lane.name for lane in LANES)


def tick_name(lane: str) -> str:
    return f"newsletters.tick.{lane}"


def celery_init_app(app: Flask) -> Celery:
    """A Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    poll = float(app.config["WORKER_POLL_SECONDS"])
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"],
        result_backend=app.config.get("CELERY_RESULT_BACKEND"),
        task_ignore_result=True,
        # A tick is idempotent and cheap to repeat; never pile up stale ones.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # One queue per lane: a worker consumes those it is given with -Q (all four
        # without -Q), so feeds and webhooks can have workers of their own.
        task_queues=[Queue(name) for name in LANE_QUEUES],
        task_default_queue="mail",
        task_routes={tick_name(lane): {"queue": lane} for lane in LANE_QUEUES},
        beat_schedule={
            f"newsletters-tick-{lane}": {
                "task": tick_name(lane),
                "schedule": poll,
                "options": {"expires": poll * 2},
            }
            for lane in LANE_QUEUES
        },
    )
    celery.set_default()
    app.extensions["celery"] = celery
    ticks = {lane: _register_tick(celery, lane) for lane in LANE_QUEUES}
    app.extensions["celery_ticks"] = ticks
    jobs.on_work_queued(app, wake)
    return celery


def _register_tick(celery: Celery, lane: str):
    @celery.task(name=tick_name(lane), ignore_result=True)
    def tick() -> bool:
        """Run this lane's jobs once, as the lane of the in-process worker does."""
        [lane_jobs] = [lane_.jobs for lane_ in LANES if lane_.name == lane]
        did_work = _celery_worker(current_app._get_current_object()).run_jobs(lane_jobs, lane)
        if did_work:
            # More may be due (a large send): keep going without waiting for beat.
            tick.apply_async(countdown=0)
        return did_work

    return tick


def _celery_worker(app: Flask) -> Worker:
    worker = app.extensions.get("celery_worker")
    if worker is None:
        worker = Worker(app)
        app.extensions["celery_worker"] = worker
    return worker


def wake(app: Flask) -> None:
    """Ask Celery workers to look for work now (after a commit that queued some)."""
    for tick in (app.extensions.get("celery_ticks") or {}).values():
        try:
            tick.apply_async(expires=60)
        except Exception:  # the broker being away must not fail the request; beat retries
            log.exception("could not send a tick to the Celery broker")
            return
