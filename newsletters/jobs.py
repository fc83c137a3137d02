"""Plumbing shared by background jobs: leasing due rows, and waking the worker.

Waking a worker that runs elsewhere (Celery) is a callback registered at start-up with
`on_work_queued`: this module sits in the foundation and knows no worker.

A job's table has `id`, `next_attempt_at`, `leased_until` and `leased_by`. Workers claim
due rows under a lease; a worker that dies leaves its lease to run out, after which
another worker takes the rows over. On PostgreSQL, SKIP LOCKED lets concurrent workers
claim disjoint rows; SQLite serialises writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import ColumnElement, event, or_, update
from sqlalchemy.orm import Session

from newsletters.extensions import db
from newsletters.timeutil import utcnow

# Set after a commit that queued work, so an idle in-process worker wakes at once.
work_waiting = threading.Event()
# The lanes of running workers each wait on their own event; every one is set too.
_listeners: set[threading.Event] = set()


def listen(event: threading.Event) -> None:
    """Set `event` (too) whenever work is queued, until `unlisten`."""
    _listeners.add(event)


def unlisten(event: threading.Event) -> None:
    _listeners.discard(event)


def wake_all() -> None:
    work_waiting.set()
    for listener in list(_listeners):
        listener.set()


def queued_work() -> None:
    """Mark the current transaction as queuing work: the worker wakes when it commits."""
    db.session.info["work_queued"] = True


def on_work_queued(app: Flask, callback: Callable[[Flask], None]) -> None:
    """Call `callback(app)` after each commit of `app` that queued work (set at start-up)."""
    app.extensions.setdefault("jobs.on_work_queued", []).append(callback)


@event.listens_for(Session, "after_commit")
def _wake_worker(session: Session) -> None:
    if session.info.pop("work_queued", False):
        wake_all()
        if has_app_context():
            app = current_app._get_current_object()
            for callback in app.extensions.get("jobs.on_work_queued", ()):
                callback(app)


@event.listens_for(Session, "after_rollback")
def _forget_work(session: Session) -> None:
    session.info.pop("work_queued", None)


def claim(model: Any, worker_id: str, limit: int, *conditions: ColumnElement[bool]) -> list[int]:
    """Lease up to `limit` due rows of `model` (and `conditions`) to this worker; their ids."""
    now = utcnow()
    lease = timedelta(seconds=current_app.config["WORKER_LEASE_SECONDS"])
    due = (
        db.select(model.id)
        .where(
            *conditions,
            model.next_attempt_at <= now,
            or_(model.leased_until.is_(None), model.leased_until < now),
        )
        .order_by(model.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(
        db.session.scalars(
            update(model)
            .where(model.id.in_(due.scalar_subquery()))
            .values(leased_until=now + lease, leased_by=worker_id)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    return sorted(ids)


def backoff(attempts: int) -> timedelta:
    """The delay before attempt `attempts + 1`: SEND_RETRY_BACKOFF_SECONDS, doubling."""
    cfg = current_app.config
    first = float(cfg["SEND_RETRY_BACKOFF_SECONDS"])
    cap = float(cfg["SEND_RETRY_MAX_BACKOFF_SECONDS"])
    return timedelta(seconds=min(first * (2 ** max(attempts - 1, 0)), cap))
