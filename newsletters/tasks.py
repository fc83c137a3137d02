"""Scale-out: the worker's jobs on Celery (Redis or RabbitMQ), chosen by configuration.

With CELERY_BROKER_URL set, the `tick` task runs exactly what the in-process worker
runs (`Worker.run_once`): the same job functions, claiming rows under leases, so any
number of Celery workers may run on any number of machines. Celery beat sends a tick
every WORKER_POLL_SECONDS; a commit that queues work sends one at once.

    celery -A wsgi.celery worker --beat --loglevel=INFO
"""

from __future__ import annotations

import logging

from celery import Celery, Task
from flask import Flask, current_app

log = logging.getLogger(__name__)


def celery_init_app(app: Flask) -> Celery:
    """A Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"],
        result_backend=app.config.get("CELERY_RESULT_BACKEND"),
        task_ignore_result=True,
        # A tick is idempotent and cheap to repeat; never pile up stale ones.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        beat_schedule={
            "newsletters-tick": {
                "task": "newsletters.tick",
                "schedule": float(app.config["WORKER_POLL_SECONDS"]),
                "options": {"expires": float(app.config["WORKER_POLL_SECONDS"]) * 2},
            }
        },
    )
    celery.set_default()
    app.extensions["celery"] = celery

    @celery.task(name="newsletters.tick", ignore_result=True)
    def tick() -> bool:
        """Run every job once, as the in-process worker does; True if any did work."""

        worker = _celery_worker(current_app._get_current_object())
        did_work = worker.run_once()
        if did_work:
            # More may be due (a large send): keep going without waiting for beat.
            tick.apply_async(countdown=0)
        return did_work

    app.extensions["celery_tick"] = tick
    return celery


def _celery_worker(app: Flask):
    from newsletters.worker import Worker

    worker = app.extensions.get("celery_worker")
    if worker is None:
        worker = Worker(app)
        app.extensions["celery_worker"] = worker
    return worker


def wake(app: Flask) -> None:
    """Ask a Celery worker to look for work now (after a commit that queued some)."""
    tick = app.extensions.get("celery_tick")
    if tick is None:
        return
    try:
        tick.apply_async(expires=60)
    except Exception:  # the broker being away must not fail the request; beat retries
        log.exception("could not send a tick to the Celery broker")
