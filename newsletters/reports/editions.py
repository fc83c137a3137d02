"""The report of one edition's send: what became of each message, and how the send went
over time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from newsletters.bounces.models import Bounce, BounceKind
from newsletters.editions import engagement, summaries
from newsletters.editions.models import Delivery, DeliveryStatus, Edition
from newsletters.extensions import db
from newsletters.reports import series
from newsletters.subscriptions.models import ConsentAction, ConsentEvent, Subscriber

# A chart of more minutes than this groups them in wider buckets (a send of a week).
MAX_POINTS = 240


@dataclass
class EditionReport:
    edition: Edition
    recipients: int
    counts: dict[str, int]
    bounced_hard: int
    bounced_soft: int
    unsubscribed: int
    possible_duplicates: int
    # (start of the bucket, messages sent in it), oldest first.
    per_minute: list[tuple[datetime, int]] = field(default_factory=list)
    bucket_minutes: int = 1
    # Where the newsletter counts them (editions/engagement.py): totals only.
    counting: bool = False
    opens: int = 0
    clicks: list[tuple[str, int]] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.counts.get(DeliveryStatus.SENT.value, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(DeliveryStatus.FAILED.value, 0)

    @property
    def not_sent(self) -> int:
        return self.counts.get(DeliveryStatus.SKIPPED.value, 0) + self.counts.get(
            DeliveryStatus.CANCELLED.value, 0
        )

    @property
    def waiting(self) -> int:
        return self.counts.get(DeliveryStatus.QUEUED.value, 0) + self.counts.get(
            DeliveryStatus.SENDING.value, 0
        )

    @property
    def peak_per_minute(self) -> float:
        if not self.per_minute:
            return 0.0
        return max(n for _, n in self.per_minute) / self.bucket_minutes


def edition_report(edition_id: int) -> EditionReport | None:
    edition = db.session.get(Edition, edition_id)
    if edition is None:
        return None
    # A finished send's figures were counted when it finished; a running one's now.
    figures = summaries.send_figures(edition_id)
    bounced = _bounced(edition_id, figures)
    unsubscribed = db.session.scalar(
        select(func.count(func.distinct(ConsentEvent.subscription_id))).where(
            ConsentEvent.edition_id == edition_id,
            ConsentEvent.action == ConsentAction.WITHDRAWN,
        )
    )
    per_minute, bucket = _per_minute(figures.minutes)
    opens, clicks = engagement.edition_counts(edition_id)
    return EditionReport(
        edition=edition,
        recipients=figures.recipients,
        counts=dict(figures.counts),
        bounced_hard=bounced.get(BounceKind.HARD.value, 0),
        bounced_soft=bounced.get(BounceKind.SOFT.value, 0),
        unsubscribed=unsubscribed or 0,
        possible_duplicates=figures.possible_duplicates,
        per_minute=per_minute,
        bucket_minutes=bucket,
        counting=bool(edition.newsletter.engagement_counting),
        opens=opens,
        clicks=clicks,
    )


def _bounced(edition_id: int, figures: summaries.SendFigures) -> dict[str, int]:
    """Deliveries of the edition that bounced, per kind (a delivery bounced twice: once).

    Found from the bounces within the range of the edition's delivery ids (bounces are
    few; its deliveries may be 100 000), each checked by its delivery's primary key.
    """
    if figures.first_delivery_id is None:
        return {}
    of_edition = (
        select(Delivery.id)
        .where(Delivery.id == Bounce.delivery_id, Delivery.edition_id == edition_id)
        .exists()
    )
    return {
        str(getattr(kind, "value", kind)): n
        for kind, n in db.session.execute(
            select(Bounce.kind, func.count(func.distinct(Bounce.delivery_id)))
            .where(
                Bounce.delivery_id.between(figures.first_delivery_id, figures.last_delivery_id),
                of_edition,
            )
            .group_by(Bounce.kind)
        )
    }


def _per_minute(minutes: list[tuple[int, int]]) -> tuple[list[tuple[datetime, int]], int]:
    """(start, messages) per bucket of `minutes` ((epoch minute, messages), oldest
    first), in buckets of as many minutes as keep the chart to MAX_POINTS bars."""
    if not minutes:
        return [], 1
    first, last = minutes[0][0], minutes[-1][0]
    bucket = max(1, -(-(last - first + 1) // MAX_POINTS))
    sums: dict[int, int] = {}
    for m, n in minutes:
        key = first + (m - first) // bucket * bucket
        sums[key] = sums.get(key, 0) + n
    # Minutes without a message are zero, so the chart shows a pause as a gap.
    points = [(series.minute_start(k), sums.get(k, 0)) for k in range(first, last + 1, bucket)]
    return points, bucket


@dataclass(frozen=True)
class RecipientOutcome:
    email: str
    status: str
    sent_at: datetime | None
    attempts: int
    possible_duplicates: int
    bounce: str
    error: str


def recipient_outcomes(edition_id: int, chunk: int = 2000) -> Iterator[RecipientOutcome]:
    """Every recipient's outcome, by delivery id, read in chunks (for a streamed CSV)."""
    bounce_kind = (
        select(func.max(Bounce.kind))
        .where(Bounce.delivery_id == Delivery.id)
        .correlate(Delivery)
        .scalar_subquery()
    )
    after = 0
    while True:
        rows = db.session.execute(
            select(
                Delivery.id,
                Subscriber.email,
                Delivery.status,
                Delivery.sent_at,
                Delivery.attempts,
                Delivery.possible_duplicates,
                bounce_kind,
                Delivery.last_error,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.edition_id == edition_id, Delivery.id > after)
            .order_by(Delivery.id)
            .limit(chunk)
        ).all()
        if not rows:
            return
        for row in rows:
            yield RecipientOutcome(
                email=row.email,
                status=str(getattr(row.status, "value", row.status)),
                sent_at=row.sent_at,
                attempts=row.attempts,
                possible_duplicates=row.possible_duplicates,
                bounce=str(getattr(row[6], "value", row[6]) or ""),
                error=(row.last_error or "")[:500],
            )
        after = rows[-1].id


__all__ = ["EditionReport", "RecipientOutcome", "edition_report", "recipient_outcomes"]
