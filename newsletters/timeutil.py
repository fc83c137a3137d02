"""Aware-UTC datetimes everywhere, in Python and in both databases."""

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.types import DateTime, TypeDecorator

# Tests set a clock here (set_clock) to run the scheduler through days without sleeping;
# every module reads the time through utcnow(), so one switch moves them all.
_clock: Callable[[], datetime] | None = None


def utcnow() -> datetime:
    """The current instant as an aware UTC datetime (the clock set by set_clock, if any)."""
    if _clock is not None:
        return _clock()
    return datetime.now(UTC)


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Make utcnow() return clock() (an aware datetime) from now on; None: the real time."""
    global _clock
    _clock = clock


class UTCDateTime(TypeDecorator):
    """Stores aware datetimes as UTC; SQLite hands back naive values, made aware here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
