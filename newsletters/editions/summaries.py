"""A send's figures: what became of its messages and how many went each minute.

A finished send's figures are counted once, in the transaction that marks it SENT
(`summarise`), and kept (EditionSendSummary, EditionSendMinute): nothing changes its
deliveries afterwards but the erasure of a subscriber, which deletes theirs and takes
them off the kept figures in the same transaction (`forget`). A send still running, or
cancelled (a message in flight may still become sent), is counted from its deliveries
each time, in one pass over them.

Bounces and withdrawals that arrive after the send are not part of these figures: they
are other features' records, few, and counted when asked (the reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Integer, cast, delete, func, insert, literal, select, update

from newsletters.editions.models import (
    Delivery,
    DeliveryStatus,
    EditionSendMinute,
    EditionSendSummary,
)
from newsletters.extensions import db
from newsletters.timeutil import utcnow

# The kept counts: a SENT edition has nothing queued or being sent.
_KEPT = {
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.SKIPPED: "skipped",
    DeliveryStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class SendFigures:
    # Delivery status value ("sent", "failed", ...) -> how many deliveries have it.
    counts: dict[str, int]
    possible_duplicates: int
    # (minute since the Unix epoch, messages sent in it), oldest first; minutes without
    # a message left out.
    minutes: list[tuple[int, int]] = field(default_factory=list)
    # The range of its delivery ids (None: no deliveries).
    first_delivery_id: int | None = None
    last_delivery_id: int | None = None
    # Whether these are the figures kept when the send finished.
    stored: bool = False

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def epoch_minute(at: datetime) -> int:
    """Whole minutes since the Unix epoch of an aware datetime (as the database counts)."""
    return int(at.timestamp() // 60)


def _minutes_select(edition_id: int):
    """SELECT (minute, messages) of the edition's sent deliveries, grouped in the database.

    Grouped by the minute as the column holds it (SQLite: the text up to the minute;
    PostgreSQL: date_trunc), and only the few groups turned into epoch minutes.
    """
    if _postgresql():
        key = func.date_trunc("minute", Delivery.sent_at)
    else:
        key = func.substr(Delivery.sent_at, 1, 16)
    grouped = (
        select(key.label("m"), func.count().label("n"))
        .where(Delivery.edition_id == edition_id, Delivery.sent_at.is_not(None))
        .group_by(key)
        .subquery()
    )
    if _postgresql():
        minute = cast(func.floor(func.extract("epoch", grouped.c.m) / 60), Integer)
    else:
        minute = cast(func.strftime("%s", grouped.c.m.concat(":00")), Integer) / 60
    return select(minute.label("minute"), grouped.c.n.label("sent")).order_by(minute)


def _live(edition_id: int) -> SendFigures:
    """The figures counted from the deliveries: one pass for the counts, one for the
    minutes."""
    statuses = list(DeliveryStatus)
    row = db.session.execute(
        select(
            *(func.count().filter(Delivery.status == s) for s in statuses),
            func.coalesce(func.sum(Delivery.possible_duplicates), 0),
            func.min(Delivery.id),
            func.max(Delivery.id),
        ).where(Delivery.edition_id == edition_id)
    ).one()
    counts = {s.value: n for s, n in zip(statuses, row[: len(statuses)], strict=True) if n}
    duplicates, first, last = row[len(statuses) :]
    minutes = [(int(m), int(n)) for m, n in db.session.execute(_minutes_select(edition_id))]
    return SendFigures(counts, int(duplicates or 0), minutes, first, last)


def summarise(edition_id: int) -> SendFigures:
    """Count the finished send's deliveries and keep the figures (in the caller's
    transaction, replacing any kept before); the figures."""
    figures = _live(edition_id)
    for model in (EditionSendMinute, EditionSendSummary):
        db.session.execute(delete(model).where(model.edition_id == edition_id))
    db.session.execute(
        insert(EditionSendSummary).values(
            edition_id=edition_id,
            possible_duplicates=figures.possible_duplicates,
            first_delivery_id=figures.first_delivery_id,
            last_delivery_id=figures.last_delivery_id,
            summarised_at=utcnow(),
            **{column: figures.counts.get(status.value, 0) for status, column in _KEPT.items()},
        )
    )
    if figures.minutes:
        db.session.execute(
            insert(EditionSendMinute),
            [{"edition_id": edition_id, "minute": m, "sent": n} for m, n in figures.minutes],
        )
    return SendFigures(
        figures.counts,
        figures.possible_duplicates,
        figures.minutes,
        figures.first_delivery_id,
        figures.last_delivery_id,
        stored=True,
    )


def stored(edition_id: int) -> SendFigures | None:
    """The figures kept when the send finished; None if none were kept."""
    summary = db.session.get(EditionSendSummary, edition_id)
    if summary is None:
        return None
    counts = {
        status.value: n for status, column in _KEPT.items() if (n := getattr(summary, column))
    }
    minutes = db.session.execute(
        select(EditionSendMinute.minute, EditionSendMinute.sent)
        .where(EditionSendMinute.edition_id == edition_id, EditionSendMinute.sent > 0)
        .order_by(EditionSendMinute.minute)
    ).all()
    return SendFigures(
        counts,
        summary.possible_duplicates,
        [(m, n) for m, n in minutes],
        summary.first_delivery_id,
        summary.last_delivery_id,
        stored=True,
    )


def send_figures(edition_id: int) -> SendFigures:
    """The edition's send figures: those kept when it finished, else counted now."""
    return stored(edition_id) or _live(edition_id)


def forget(subscriber_id: int) -> None:
    """Take the subscriber's deliveries off the kept figures of finished sends, before
    those deliveries are deleted (their erasure; in its transaction)."""
    rows = db.session.execute(
        select(
            Delivery.edition_id, Delivery.status, Delivery.sent_at, Delivery.possible_duplicates
        ).where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.edition_id.in_(select(EditionSendSummary.edition_id)),
        )
    ).all()
    for edition_id, status, sent_at, duplicates in rows:
        column = _KEPT.get(DeliveryStatus(status))
        values = {"possible_duplicates": EditionSendSummary.possible_duplicates - duplicates}
        if column is not None:
            values[column] = getattr(EditionSendSummary, column) - 1
        db.session.execute(
            update(EditionSendSummary)
            .where(EditionSendSummary.edition_id == edition_id)
            .values(**values)
        )
        if sent_at is not None:
            db.session.execute(
                update(EditionSendMinute)
                .where(
                    EditionSendMinute.edition_id == edition_id,
                    EditionSendMinute.minute == literal(epoch_minute(sent_at)),
                )
                .values(sent=EditionSendMinute.sent - 1)
            )


__all__ = ["SendFigures", "epoch_minute", "forget", "send_figures", "stored", "summarise"]
