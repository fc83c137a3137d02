"""Grouping timestamps into minutes and days in the database, the same on SQLite and
PostgreSQL: an integer count of minutes (or days) since the Unix epoch, in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Integer, cast, func

from newsletters.extensions import db

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def minute_of(column):
    """SQL: whole minutes since the epoch of a UTC timestamp column."""
    if _postgresql():
        return cast(func.floor(func.extract("epoch", column) / 60), Integer)
    return cast(cast(func.strftime("%s", column), Integer) / 60, Integer)


def day_of(column):
    """SQL: whole days since the epoch of a UTC timestamp column."""
    if _postgresql():
        return cast(func.floor(func.extract("epoch", column) / 86400), Integer)
    return cast(cast(func.strftime("%s", column), Integer) / 86400, Integer)


def minute_start(minutes: int) -> datetime:
    return EPOCH + timedelta(minutes=int(minutes))


def day_date(days: int) -> date:
    return (EPOCH + timedelta(days=int(days))).date()


def epoch_day(day: date) -> int:
    return (day - EPOCH.date()).days
