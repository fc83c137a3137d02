"""A busy database: retried where that is safe, answered 503 where it is not, never a 500.

"Busy" is a transaction that could not get its lock in time, not a fault: SQLite's
write lock held by another writer past the busy timeout ("database is locked"), or on
PostgreSQL a lock not granted within `lock_timeout`, a serialization failure or a
deadlock. Both databases wait `DATABASE_LOCK_TIMEOUT_SECONDS` for a lock (set on every
connection in `create_app`). A view whose work is one transaction is run again
(`retry_when_busy`); what is still busy after that gets the 503 page with
`Retry-After` (errors.py), and the worker's jobs try again on their next tick.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy.exc import DBAPIError

from newsletters.extensions import db

# Seconds a client is told to wait before trying again (the 503's Retry-After).
RETRY_AFTER_SECONDS = 5

# SQLSTATEs of a transaction that lost a race for a lock, safe to run again whole:
# serialization_failure, deadlock_detected, lock_not_available (lock_timeout).
_POSTGRES_BUSY = {"40001", "40P01", "55P03"}

F = TypeVar("F", bound=Callable[..., Any])


def is_busy(error: BaseException) -> bool:
    """Whether this error means "the database is busy, try again", not a fault."""
    original = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(original, sqlite3.OperationalError):
        message = str(original).lower()
        return "locked" in message or "busy" in message
    return getattr(original, "sqlstate", None) in _POSTGRES_BUSY


def retry_when_busy(view: F) -> F:
    """Run a view again (up to BUSY_RETRIES more times, after a short growing pause) when
    the database is busy. Only for views whose work is one transaction: a failed attempt
    has been rolled back whole, so running it again cannot do anything twice."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        retries = int(current_app.config["BUSY_RETRIES"])
        for attempt in range(retries + 1):
            try:
                return view(*args, **kwargs)
            except DBAPIError as error:
                if attempt == retries or not is_busy(error):
                    raise
                db.session.rollback()
                # Jittered, so that requests that collided do not collide again.
                time.sleep(0.05 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper  # type: ignore[return-value]
