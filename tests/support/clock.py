"""The app's clock (timeutil.utcnow), set by tests: no test may pass or fail with the hour
of day or the weekday it runs on.

`Clock` stands still between the test's moves, and ticks a microsecond per reading: time
never goes back, and two events are never at the same instant (a worker's
rendered-edition cache is keyed by the start of a send). A running clock
(`Clock.running`) keeps a fixed distance from the real time instead, for a live server
whose worker waits on real seconds; another process (`python -m tests.support.clocked`)
that is given the same distance reads the same instant.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def local(*args: int) -> datetime:
    """An instant given on Copenhagen's wall clock: local(2026, 11, 30, 7, 0)."""
    return datetime(*args, tzinfo=COPENHAGEN).astimezone(UTC)


class Clock:
    def __init__(self, start: datetime, *, running: bool = False) -> None:
        self._lock = threading.Lock()
        self.running = running
        self._offset = timedelta(0)
        self._now = start
        self._last = start - timedelta(microseconds=1)
        self.set(start)

    @classmethod
    def running_from(cls, start: datetime) -> Clock:
        return cls(start, running=True)

    @property
    def offset_seconds(self) -> float:
        """How far a running clock is from the real time (for another process)."""
        return self._offset.total_seconds()

    def __call__(self) -> datetime:
        with self._lock:
            if self.running:
                value = datetime.now(UTC) + self._offset
            else:
                self._now += timedelta(microseconds=1)
                value = self._now
            # Never back, never twice the same instant (threads read it too).
            value = max(value, self._last + timedelta(microseconds=1))
            self._last = value
            return value

    def set(self, instant: datetime) -> None:
        """Move the clock to `instant` (an aware datetime); a running one goes on from it."""
        with self._lock:
            if self.running:
                self._offset = instant - datetime.now(UTC)
            self._now = instant
            self._last = min(self._last, instant - timedelta(microseconds=1))

    def set_local(self, *args: int) -> None:
        """Move the clock to an instant on Copenhagen's wall clock."""
        self.set(local(*args))

    def advance(self, **delta: float) -> None:
        with self._lock:
            self._offset += timedelta(**delta)
            self._now += timedelta(**delta)

    def local_now(self) -> datetime:
        return self().astimezone(COPENHAGEN)
