"""An edition's send from start to end: start, schedule, pause, resume, cancel, finish.

Each function is one transaction on the edition, held locked, and moves it only through
`states.transition`: a move its state does not allow raises `ForbiddenTransition`. Each
announces what it did before it commits (newsletters/events.py): the staff action under
its audit name (`edition.send`, `edition.pause`, ...: the audit entry), and what a send
did for those who react to it (`edition.started`, `edition.paused`, `edition.finished`,
with the edition's id, newsletter slug, subject and the counts known then; not audited
again when an audit entry for the same action is already written).

Starting inserts one delivery per confirmed subscriber with a single INSERT ... SELECT;
the delivery loop (`delivery`) sends them. A send may go to part of the readers: the
edition's segment (`segments`, stored in its canonical spelling) is one more condition
of that same statement.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import bindparam, func, insert, literal, select, text, update

from newsletters import events, jobs
from newsletters.editions import segments, summaries
from newsletters.editions.models import Delivery, DeliveryStatus, Edition, EditionStatus
from newsletters.editions.states import Action, EditionError, states_allowing, transition
from newsletters.extensions import db
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import Subscriber, Subscription, SubscriptionStatus
from newsletters.timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)

deliveries = Delivery.__table__


def get(edition_id: int, *, lock: bool = False) -> Edition:
    """The edition (locked FOR UPDATE with `lock`); EditionError if there is none."""
    # populate_existing: FOR UPDATE alone returns an edition already in the session (a
    # view loaded it) as it was then, and the status check would miss a concurrent change.
    edition = db.session.get(
        Edition, edition_id, with_for_update=lock or None, populate_existing=lock
    )
    if edition is None:
        raise EditionError(f"there is no edition {edition_id}")
    return edition


def _target(edition: Edition | int) -> str:
    return f"edition:{edition if isinstance(edition, int) else edition.id}"


def _about(edition: Edition, **counts) -> dict:
    """The data of an `edition.*` event: what a listener needs without a query."""
    return {
        "edition_id": edition.id,
        "newsletter": edition.newsletter.slug,
        "subject": edition.subject,
        **counts,
    }


# --------------------------------------------------------------------------- starting


class Stored(enum.Enum):
    """The segment already stored on the edition (a scheduled send keeps its own)."""

    SEGMENT = "stored"


STORED: Literal[Stored.SEGMENT] = Stored.SEGMENT
SegmentText = str | None | Literal[Stored.SEGMENT]


def _read(segment: SegmentText) -> str | None | Literal[Stored.SEGMENT]:
    """The canonical spelling of a segment as typed (None: everyone), or STORED; raises
    SegmentError. Read before the edition is locked: a bad one changes nothing."""
    return segment if segment is STORED else segments.canonical(segment)


def _segment(edition: Edition, segment: SegmentText) -> str | None:
    return edition.segment if segment is STORED else segment


def recipients_count(edition_id: int, segment: SegmentText = STORED) -> int:
    """How many would get the edition if it were sent now (for the confirmation), to
    `segment` (a text as typed; by default the one stored on it). Raises SegmentError."""
    segment = _read(segment)
    edition = get(edition_id)
    query = _recipients(edition.newsletter_id, _segment(edition, segment), count=True)
    return db.session.scalar(query) or 0


def _recipients(newsletter_id: int, segment: str | None = None, *, count: bool = False):
    columns = (func.count(),) if count else (Subscription.subscriber_id,)
    query = (
        select(*columns)
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.newsletter_id == newsletter_id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
            Subscriber.hard_bounced_at.is_(None),
            # Set-based, inside the one INSERT ... SELECT: never a query per recipient.
            suppression.not_suppressed(Subscriber.email),
        )
    )
    part = segments.condition(segments.parse(segment))
    return query if part is None else query.where(part)


def start_send(
    edition_id: int, *, segment: SegmentText = STORED, actor: events.Actor | None = None
) -> int:
    """Start sending: one delivery for every subscriber confirmed now who is in the
    segment (a text as typed, None for everyone; by default the one stored on the
    edition), in one transaction. The segment is stored on the edition.

    Returns the number of recipients. Set-based (INSERT ... SELECT), so 100 000
    deliveries take one statement, not 100 000. Raises SegmentError (nothing changed)
    for a segment that cannot be read.
    """
    segment = _read(segment)
    edition = get(edition_id, lock=True)
    chosen = _segment(edition, segment)
    transition(edition, Action.START)
    edition.segment = chosen
    now = utcnow()
    recipients = _recipients(edition.newsletter_id, chosen).add_columns(
        literal(edition.id).label("edition_id"),
        literal(DeliveryStatus.QUEUED.value).label("status"),
        literal(0).label("attempts"),
        bindparam("now", now, type_=UTCDateTime()).label("next_attempt_at"),
        literal(0).label("possible_duplicates"),
    )
    enqueue = insert(deliveries).from_select(
        [
            "subscriber_id",
            "edition_id",
            "status",
            "attempts",
            "next_attempt_at",
            "possible_duplicates",
        ],
        recipients,
    )
    if db.session.get_bind().dialect.name == "postgresql":
        # For this transaction only: the hash join of a million subscriptions in memory
        # (the default 4 MB split it into 8 batches written to temporary files).
        db.session.execute(text("SET LOCAL work_mem = '64MB'"))
        # Counted from the INSERT's own RETURNING in the same statement: a count of the
        # new rows afterwards read each of them again (a second or so at 1 000 000).
        inserted = enqueue.returning(deliveries.c.id).cte("inserted")
        edition.recipients, edition.first_delivery_id = db.session.execute(
            select(func.count(), func.min(inserted.c.id))
        ).one()
    else:
        db.session.execute(enqueue)
        edition.recipients, edition.first_delivery_id = db.session.execute(
            select(func.count(), func.min(Delivery.id)).where(Delivery.edition_id == edition.id)
        ).one()
    edition.started_at = now
    edition.paused_reason = None
    events.announce(
        "edition.send",
        _target(edition),
        actor=actor,
        recipients=edition.recipients,
        **({"segment": chosen} if chosen else {}),
    )
    events.announce(
        "edition.started",
        _target(edition),
        actor=actor,
        audited=False,
        **_about(edition, recipients=edition.recipients),
    )
    jobs.queued_work()
    db.session.commit()
    log.info(
        "edition %s: sending to %s recipients%s",
        edition.id,
        edition.recipients,
        f" ({chosen})" if chosen else "",
    )
    return edition.recipients


def schedule(
    edition_id: int,
    when: datetime,
    *,
    segment: SegmentText = STORED,
    actor: events.Actor | None = None,
) -> None:
    """Send at `when` (an aware datetime) to `segment` (stored on the edition: the worker
    starts it then, to that segment). Raises SegmentError (nothing changed)."""
    segment = _read(segment)
    edition = get(edition_id, lock=True)
    if when.tzinfo is None:
        raise EditionError("the time must have a time zone")
    chosen = _segment(edition, segment)
    transition(edition, Action.SCHEDULE)
    edition.scheduled_at = when
    edition.segment = chosen
    events.announce(
        "edition.schedule",
        _target(edition),
        actor=actor,
        at=when.isoformat(),
        **({"segment": chosen} if chosen else {}),
    )
    db.session.commit()


def unschedule(edition_id: int, *, actor: events.Actor | None = None) -> None:
    """Take a scheduled edition back to a draft; it is not sent until started again."""
    edition = get(edition_id, lock=True)
    transition(edition, Action.UNSCHEDULE)
    edition.scheduled_at = None
    events.announce("edition.unschedule", _target(edition), actor=actor)
    db.session.commit()


def start_scheduled(*, actor: events.Actor = events.WORKER) -> int:
    """Start every scheduled edition whose time has come; the scheduler's job."""
    due = db.session.scalars(
        select(Edition.id).where(
            Edition.status == EditionStatus.SCHEDULED, Edition.scheduled_at <= utcnow()
        )
    ).all()
    started = 0
    for edition_id in due:
        try:
            start_send(edition_id, actor=actor)
            started += 1
        except EditionError:
            # Another scheduler started it first (the row lock made us wait).
            db.session.rollback()
    return started


# --------------------------------------------------------------------------- controlling


def pause(edition_id: int, reason: str | None = None, *, actor: events.Actor | None = None) -> None:
    """Stop sending until resumed; the message in flight is the last to go out."""
    edition = get(edition_id, lock=True)
    transition(edition, Action.PAUSE)
    edition.paused_reason = reason
    events.announce("edition.pause", _target(edition), actor=actor)
    events.announce(
        "edition.paused",
        _target(edition),
        actor=actor,
        audited=False,
        **_about(edition, recipients=edition.recipients, reason=reason),
    )
    db.session.commit()


def pause_for_failures(edition_id: int, count: int, failure: str) -> bool:
    """The sender pausing a send after `count` failures in a row; False if it was no
    longer sending. The worker's own pause: audited as `edition.paused`."""
    reason = f"{count} failures in a row; the last: {failure}"[:2000]
    result = db.session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status.in_(states_allowing(Action.PAUSE)))
        .values(status=EditionStatus.PAUSED, paused_reason=reason)
    )
    if result.rowcount:
        edition = db.session.get(Edition, edition_id)
        events.announce(
            "edition.paused",
            _target(edition_id),
            actor=events.WORKER,
            **_about(edition, recipients=edition.recipients, reason=reason),
        )
    db.session.commit()
    if result.rowcount:
        log.warning("edition %s paused itself: %s", edition_id, reason)
    return bool(result.rowcount)


def resume(edition_id: int, *, actor: events.Actor | None = None) -> None:
    edition = get(edition_id, lock=True)
    transition(edition, Action.RESUME)
    edition.paused_reason = None
    events.announce("edition.resume", _target(edition), actor=actor)
    jobs.queued_work()
    db.session.commit()


def cancel(edition_id: int, *, actor: events.Actor | None = None) -> int:
    """Stop for good; returns how many deliveries will not be sent."""
    edition = get(edition_id, lock=True)
    transition(edition, Action.CANCEL)
    edition.finished_at = utcnow()
    result = db.session.execute(
        update(deliveries)
        .where(deliveries.c.edition_id == edition_id, deliveries.c.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED.value)
    )
    events.announce("edition.cancel", _target(edition), actor=actor)
    db.session.commit()
    return result.rowcount


def finish_complete_editions() -> list[int]:
    """Mark SENT every sending edition with nothing left to send; their ids.

    Each is announced as `edition.finished` with its counts (audited: the worker's act),
    and its figures are counted once and kept for its report (`summaries`).
    """
    open_deliveries = (
        select(Delivery.id)
        .where(
            Delivery.edition_id == Edition.id,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .exists()
    )
    complete = Edition.status.in_(states_allowing(Action.FINISH)) & ~open_deliveries
    candidates = db.session.scalars(select(Edition.id).where(complete)).all()
    finished = []
    for edition_id in candidates:
        result = db.session.execute(
            update(Edition)
            .where(Edition.id == edition_id, complete)
            .values(status=EditionStatus.SENT, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:
            continue  # another worker finished it, or it was paused meanwhile
        finished.append(edition_id)
        edition = db.session.get(Edition, edition_id)
        counts = summaries.summarise(edition_id).counts
        events.announce(
            "edition.finished",
            _target(edition_id),
            actor=events.WORKER,
            **_about(
                edition,
                recipients=edition.recipients,
                sent=counts.get("sent", 0),
                failed=counts.get("failed", 0),
                skipped=counts.get("skipped", 0),
            ),
        )
    db.session.commit()
    return finished


# --------------------------------------------------------------------------- reading


@dataclass
class Progress:
    status: str
    recipients: int
    counts: dict[str, int]
    sent_last_minute: int
    possible_duplicates: int
    paused_reason: str | None

    @property
    def sent(self) -> int:
        return self.counts.get("sent", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def remaining(self) -> int:
        return self.counts.get("queued", 0) + self.counts.get("sending", 0)

    @property
    def rate_per_second(self) -> float:
        return self.sent_last_minute / 60.0


def _counts(edition_id: int) -> dict[str, int]:
    """The edition's deliveries per status (its value: "sent", "queued", ...)."""
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.status)
    ).all()
    return {str(getattr(k, "value", k)): v for k, v in rows}


def progress(edition_id: int) -> Progress:
    edition = get(edition_id)
    counts = _counts(edition_id)
    since = utcnow() - timedelta(seconds=60)
    recent = db.session.scalar(
        select(func.count()).where(Delivery.edition_id == edition_id, Delivery.sent_at >= since)
    )
    duplicates = db.session.scalar(
        select(func.coalesce(func.sum(Delivery.possible_duplicates), 0)).where(
            Delivery.edition_id == edition_id
        )
    )
    return Progress(
        status=edition.status.value,
        recipients=edition.recipients,
        counts=counts,
        sent_last_minute=recent or 0,
        possible_duplicates=duplicates or 0,
        paused_reason=edition.paused_reason,
    )
