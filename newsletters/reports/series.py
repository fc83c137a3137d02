"""Minutes and days as the kept figures count them: whole minutes (or days) since the
Unix epoch, in UTC (editions/summaries.py, subscriptions' ConsentDayCount)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_start(minutes: int) -> datetime:
    return EPOCH + timedelta(minutes=int(minutes))


def day_date(days: int) -> date:
    return (EPOCH + timedelta(days=int(days))).date()


def epoch_day(day: date) -> int:
    return (day - EPOCH.date()).days
