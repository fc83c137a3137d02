"""The report of one newsletter: its readers over time, who came and who left each week,
and where the leaving came from.

Reconstructed backwards from today's count with the consent records (every confirmation,
enrolment and withdrawal is one), so the line ends exactly at today's number of confirmed
subscribers. An erased person's records are gone, as if they had never subscribed; the
erasures themselves are counted without anything personal (`reports/erasures.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select

from newsletters.bounces.models import Bounce, BounceKind
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.reports import series
from newsletters.reports.models import ErasureCount
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentDayCount,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow

WEEKS = 26
_COUNTED = (
    ConsentAction.CONFIRMED.value,
    ConsentAction.ENROLLED.value,
    ConsentAction.WITHDRAWN.value,
)

# How a withdrawal was made (ConsentEvent.method) -> where it came from on the report.
SOURCES = ("one_click", "unsubscribe_link", "preference_centre", "bounce", "erasure", "other")
_METHOD_SOURCE = {
    "one_click": "one_click",
    "unsubscribe_page": "unsubscribe_link",
    "preference_centre": "preference_centre",
}


@dataclass
class Week:
    start: date  # a Monday
    subscribers: int  # confirmed at the end of the week
    joined: int
    left: int


@dataclass
class NewsletterReport:
    newsletter: Newsletter
    confirmed: int
    pending: int
    weeks: list[Week] = field(default_factory=list)
    # source -> withdrawals in the period
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def joined(self) -> int:
        return sum(w.joined for w in self.weeks)

    @property
    def left(self) -> int:
        return sum(w.left for w in self.weeks)


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def newsletter_report(
    newsletter: Newsletter, *, weeks: int = WEEKS, readers: bool = True
) -> NewsletterReport:
    """The newsletter's report of the last `weeks` weeks.

    readers=False: only the comings and goings (each week's joined and left, and the
    sources), without counting today's readers (then confirmed, pending and each week's
    subscribers are 0): what the weekly and sources charts draw.
    """
    today = utcnow().date()
    first_monday = _monday(today) - timedelta(weeks=weeks - 1)
    since_day = series.epoch_day(first_monday)

    confirmed = pending = 0
    if readers:
        # Two counts on the (newsletter_id, status) index, each only its own entries.
        confirmed, pending = (
            db.session.scalar(
                select(func.count()).where(
                    Subscription.newsletter_id == newsletter.id, Subscription.status == status
                )
            )
            or 0
            for status in (SubscriptionStatus.CONFIRMED, SubscriptionStatus.PENDING)
        )

    # Counted per day by the database as the records come and go (ConsentDayCount):
    # half a year of a large newsletter is a few hundred rows, not 100 000 records.
    rows = db.session.execute(
        select(
            ConsentDayCount.day,
            ConsentDayCount.action,
            ConsentDayCount.method,
            ConsentDayCount.count,
        ).where(
            ConsentDayCount.newsletter_id == newsletter.id,
            ConsentDayCount.day >= since_day,
            ConsentDayCount.action.in_(_COUNTED),
            ConsentDayCount.count != 0,
        )
    ).all()

    joined: dict[date, int] = {}
    left: dict[date, int] = {}
    sources = dict.fromkeys(SOURCES, 0)
    for epoch_day, action, method, n in rows:
        monday = _monday(series.day_date(epoch_day))
        if action == ConsentAction.WITHDRAWN.value:
            left[monday] = left.get(monday, 0) + n
            sources[_METHOD_SOURCE.get(method, "other")] += n
        else:
            joined[monday] = joined.get(monday, 0) + n

    # Mail stopped by a hard bounce: the subscription stays, but the reader is lost.
    # From the bounces (few) in the period, each checked against the newsletter's
    # subscriptions by their unique (subscriber, newsletter) index.
    reads_it = (
        select(Subscription.id)
        .where(
            Subscription.subscriber_id == Bounce.subscriber_id,
            Subscription.newsletter_id == newsletter.id,
        )
        .exists()
    )
    sources["bounce"] = (
        db.session.scalar(
            select(func.count(func.distinct(Bounce.subscriber_id))).where(
                Bounce.kind == BounceKind.HARD,
                Bounce.at >= datetime.combine(first_monday, time(), UTC),
                reads_it,
            )
        )
        or 0
    )
    erased: dict[date, int] = {}
    for week, n in db.session.execute(
        select(ErasureCount.week, ErasureCount.count).where(
            ErasureCount.newsletter_id == newsletter.id, ErasureCount.week >= first_monday
        )
    ):
        erased[week] = erased.get(week, 0) + n
        sources["erasure"] += n

    # Backwards from today's count: the end of each week is the next week's end minus
    # what that next week brought.
    mondays = [first_monday + timedelta(weeks=i) for i in range(weeks)]
    result: list[Week] = []
    running = confirmed
    for monday in reversed(mondays):
        j = joined.get(monday, 0)
        w_left = left.get(monday, 0) + erased.get(monday, 0)
        result.append(Week(monday, max(0, running) if readers else 0, j, w_left))
        running = running - j + left.get(monday, 0)
    result.reverse()
    return NewsletterReport(newsletter, confirmed, pending, result, sources)
