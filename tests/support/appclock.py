"""The app's controlled clock (timeutil.set_clock) as a fixture, for tests of times."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from newsletters import timeutil


class AppClock:
    """utcnow() for the app, moved by the test; it ticks a microsecond per reading, so
    two events are never at the same instant."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def controlled_clock() -> Iterator[AppClock]:
    """For a test module's fixture: `yield from controlled_clock()`."""
    clock = AppClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    timeutil.set_clock(clock)
    yield clock
    timeutil.set_clock(None)
