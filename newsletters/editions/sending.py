"""Sending an edition to everyone confirmed, exactly once, surviving crashes.

Starting a send inserts one delivery per confirmed subscriber with a single
INSERT ... SELECT. Workers claim batches of deliveries under a lease. For each message,
one committed transaction records the previous message as SENT and marks this one
SENDING, on condition that the edition is still sending and the subscription still
confirmed; only then is the message handed to the SMTP server. So:

- pausing, cancelling and unsubscribing take effect before the next message
  (PRODUCT.md invariant 3);
- a worker killed at any instant leaves at most one SENDING delivery, which another
  worker sends again once the lease runs out and counts as a possible duplicate; every
  other delivery is either SENT or still QUEUED, so nobody is skipped (invariant 2).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.utils import formatdate

from flask import current_app
from sqlalchemy import (
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)

from newsletters import jobs
from newsletters.bounces import suppression
from newsletters.bounces.models import BounceKind
from newsletters.bounces.processing import record_bounce
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionItem,
    EditionStatus,
)
from newsletters.editions.rendering import EditionTemplate, edition_template
from newsletters.extensions import db
from newsletters.mailing.transport import DeliveryFailure, Transport, open_transport
from newsletters.subscriptions.addresses import ascii_address
from newsletters.subscriptions.links import manage_url_for, unsubscribe_url_for
from newsletters.subscriptions.models import Subscriber, Subscription, SubscriptionStatus
from newsletters.timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
editions = Edition.__table__


class EditionError(ValueError):
    """The edition cannot do what was asked (wrong state, unknown id, bad input)."""


# --------------------------------------------------------------------------- composing


@dataclass(frozen=True)
class ItemInput:
    heading: str
    text_markdown: str = ""
    link: str = ""


def create_edition(
    *,
    newsletter_slug: str,
    subject: str,
    body_markdown: str,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
    created_by: str = "",
) -> Edition:
    """A new draft edition of a newsletter."""
    newsletter = newsletter_by_slug(newsletter_slug)
    if newsletter is None:
        raise EditionError(f"there is no newsletter '{newsletter_slug}'")
    subject = " ".join((subject or "").split())
    if not subject:
        raise EditionError("the subject is empty")
    if len(subject) > 300:
        raise EditionError("the subject is longer than 300 characters")
    edition = Edition(
        newsletter=newsletter,
        subject=subject,
        preheader=preheader.strip(),
        body_markdown=body_markdown,
        meeting_date=meeting_date,
        created_by=created_by,
        status=EditionStatus.DRAFT,
    )
    for position, item in enumerate(items):
        edition.items.append(
            EditionItem(
                position=position,
                heading=item.heading.strip(),
                text_markdown=item.text_markdown,
                link=item.link.strip(),
            )
        )
    db.session.add(edition)
    db.session.commit()
    return edition


# --------------------------------------------------------------------------- starting


def recipients_count(edition_id: int) -> int:
    """How many would get the edition if it were sent now (for the confirmation)."""
    edition = _edition(edition_id)
    return db.session.scalar(_recipients(edition.newsletter_id, count=True)) or 0


def _recipients(newsletter_id: int, *, count: bool = False):
    columns = (func.count(),) if count else (Subscription.subscriber_id,)
    return (
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


def _edition(edition_id: int, *, lock: bool = False) -> Edition:
    # populate_existing: FOR UPDATE alone returns an edition already in the session (a
    # view loaded it) as it was then, and the status check would miss a concurrent change.
    edition = db.session.get(
        Edition, edition_id, with_for_update=lock or None, populate_existing=lock
    )
    if edition is None:
        raise EditionError(f"there is no edition {edition_id}")
    return edition


def start_send(edition_id: int) -> int:
    """Start sending: one delivery for every subscriber confirmed now, in one transaction.

    Returns the number of recipients. Set-based (INSERT ... SELECT), so 100 000
    deliveries take one statement, not 100 000.
    """
    edition = _edition(edition_id, lock=True)
    if edition.status not in (EditionStatus.DRAFT, EditionStatus.SCHEDULED):
        raise EditionError(f"edition {edition_id} is {edition.status.value}, it cannot be sent")
    now = utcnow()
    recipients = _recipients(edition.newsletter_id).add_columns(
        literal(edition.id).label("edition_id"),
        literal(DeliveryStatus.QUEUED.value).label("status"),
        literal(0).label("attempts"),
        bindparam("now", now, type_=UTCDateTime()).label("next_attempt_at"),
        literal(0).label("possible_duplicates"),
    )
    db.session.execute(
        insert(deliveries).from_select(
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
    )
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT.
    edition.recipients = db.session.scalar(
        select(func.count()).where(Delivery.edition_id == edition.id)
    )
    edition.status = EditionStatus.SENDING
    edition.started_at = now
    edition.paused_reason = None
    jobs.queued_work()
    db.session.commit()
    log.info("edition %s: sending to %s recipients", edition.id, edition.recipients)
    return edition.recipients


def schedule(edition_id: int, when) -> None:
    """Send at `when` (an aware datetime); the worker starts it then."""
    edition = _edition(edition_id, lock=True)
    if edition.status not in (EditionStatus.DRAFT, EditionStatus.SCHEDULED):
        raise EditionError(f"edition {edition_id} is {edition.status.value}")
    if when.tzinfo is None:
        raise EditionError("the time must have a time zone")
    edition.status = EditionStatus.SCHEDULED
    edition.scheduled_at = when
    db.session.commit()


def unschedule(edition_id: int) -> None:
    """Take a scheduled edition back to a draft; it is not sent until started again."""
    edition = _edition(edition_id, lock=True)
    if edition.status != EditionStatus.SCHEDULED:
        raise EditionError(f"edition {edition_id} is {edition.status.value}, not scheduled")
    edition.status = EditionStatus.DRAFT
    edition.scheduled_at = None
    db.session.commit()


def start_scheduled() -> int:
    """Start every scheduled edition whose time has come; the scheduler's job."""
    due = db.session.scalars(
        select(Edition.id).where(
            Edition.status == EditionStatus.SCHEDULED, Edition.scheduled_at <= utcnow()
        )
    ).all()
    started = 0
    for edition_id in due:
        try:
            start_send(edition_id)
            started += 1
        except EditionError:
            # Another scheduler started it first (the row lock made us wait).
            db.session.rollback()
    return started


# --------------------------------------------------------------------------- controlling


def pause(edition_id: int, reason: str | None = None) -> None:
    edition = _edition(edition_id, lock=True)
    if edition.status != EditionStatus.SENDING:
        raise EditionError(f"edition {edition_id} is {edition.status.value}, not sending")
    edition.status = EditionStatus.PAUSED
    edition.paused_reason = reason
    db.session.commit()


def resume(edition_id: int) -> None:
    edition = _edition(edition_id, lock=True)
    if edition.status != EditionStatus.PAUSED:
        raise EditionError(f"edition {edition_id} is {edition.status.value}, not paused")
    edition.status = EditionStatus.SENDING
    edition.paused_reason = None
    jobs.queued_work()
    db.session.commit()


def cancel(edition_id: int) -> int:
    """Stop for good; returns how many deliveries will not be sent."""
    edition = _edition(edition_id, lock=True)
    if edition.status not in (EditionStatus.SENDING, EditionStatus.PAUSED, EditionStatus.SCHEDULED):
        raise EditionError(
            f"edition {edition_id} is {edition.status.value}, it cannot be cancelled"
        )
    edition.status = EditionStatus.CANCELLED
    edition.finished_at = utcnow()
    result = db.session.execute(
        update(deliveries)
        .where(deliveries.c.edition_id == edition_id, deliveries.c.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED.value)
    )
    db.session.commit()
    return result.rowcount


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


def progress(edition_id: int) -> Progress:
    edition = _edition(edition_id)
    counts = dict(
        db.session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.edition_id == edition_id)
            .group_by(Delivery.status)
        ).all()
    )
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
        counts={str(getattr(k, "value", k)): v for k, v in counts.items()},
        sent_last_minute=recent or 0,
        possible_duplicates=duplicates or 0,
        paused_reason=edition.paused_reason,
    )


# --------------------------------------------------------------------------- the sender


@dataclass
class SendStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    connection_lost: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.retried + self.skipped


_sending_editions = select(editions.c.id).where(editions.c.status == EditionStatus.SENDING.value)

# The writes of every message, as SQL prepared once per process (see _Marks); the status
# values are those of DeliveryStatus, EditionStatus and SubscriptionStatus. The in-flight
# mark: this claimed delivery becomes SENDING only if it is still this worker's and unsent,
# its edition still sending and its subscriber still confirmed; the check and the mark are
# one statement. The SENT mark of the message before it goes into the same transaction.
_IN_FLIGHT_SQL = """UPDATE deliveries
SET status = 'sending', attempts = attempts + 1,
    possible_duplicates = possible_duplicates + CASE WHEN status = 'sending' THEN 1 ELSE 0 END
WHERE id = :delivery AND leased_by = :worker AND status IN ('queued', 'sending')
  AND EXISTS (SELECT 1 FROM editions
              WHERE editions.id = :edition AND editions.status = 'sending')
  AND EXISTS (SELECT 1 FROM subscriptions
              WHERE subscriptions.subscriber_id = :subscriber
                AND subscriptions.newsletter_id = :newsletter
                AND subscriptions.status = 'confirmed')"""
_SENT_SQL = """UPDATE deliveries SET status = 'sent', sent_at = :sent_at, leased_until = NULL
WHERE id = :sent"""


class _Marks:
    """Each message's committed in-flight mark, on one connection held for a batch.

    `mark()` commits, in ONE transaction, the previous message (accepted by the server) as
    SENT and this one as SENDING if the conditions of _IN_FLIGHT_SQL hold, and says whether
    it was marked; only then may the message be handed over. On PostgreSQL that is a single
    statement (the SENT mark as a data-modifying CTE) in autocommit mode, so one round trip
    with its commit instead of BEGIN, UPDATE, UPDATE, COMMIT; on SQLite two statements and
    a commit.

    The connection comes from SQLAlchemy's pool (which sets and resets its isolation level
    and rolls back whatever is left when it goes back); the statements run on the driver's
    own cursor as SQL prepared once. This runs once per message: through the ORM session it
    cost 3x the database work, and even SQLAlchemy's exec_driver_sql added ~65 us per
    message to ~140 (benchmarks/README.md, "Sending an edition").
    """

    _prepared: dict[str, tuple[str, str, str | None]] = {}

    def __init__(self, worker_id: str) -> None:
        engine = db.engine
        self._connection = engine.connect()
        if engine.dialect.name == "postgresql":
            self._connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            self._driver = self._connection.connection.driver_connection
            self._cursor = self._driver.cursor()
        except BaseException:
            self._connection.close()
            raise
        self._worker = worker_id
        self._sent_at = UTCDateTime().bind_processor(engine.dialect) or (lambda value: value)
        self._in_flight, self._sent, self._sent_and_in_flight = self._sql(engine.dialect)

    @classmethod
    def _sql(cls, dialect) -> tuple[str, str, str | None]:
        prepared = cls._prepared.get(dialect.name)
        if prepared is None:
            if dialect.paramstyle == "pyformat":  # psycopg
                in_flight, sent = (
                    re.sub(r":(\w+)", r"%(\1)s", sql) for sql in (_IN_FLIGHT_SQL, _SENT_SQL)
                )
            else:  # sqlite3 takes :name whatever its declared paramstyle
                in_flight, sent = _IN_FLIGHT_SQL, _SENT_SQL
            combined = (
                f"WITH sent AS ({sent})\n{in_flight}" if dialect.name == "postgresql" else None
            )
            prepared = cls._prepared[dialect.name] = (in_flight, sent, combined)
        return prepared

    def mark(
        self,
        delivery_id: int,
        edition_id: int,
        subscriber_id: int,
        newsletter_id: int,
        *,
        sent: int | None,
    ) -> bool:
        params = {
            "delivery": delivery_id,
            "worker": self._worker,
            "edition": edition_id,
            "subscriber": subscriber_id,
            "newsletter": newsletter_id,
        }
        cursor = self._cursor
        if sent is not None:
            params["sent"] = sent
            params["sent_at"] = self._sent_at(utcnow())
            if self._sent_and_in_flight is not None:
                # One statement in autocommit: committed when it returns.
                cursor.execute(self._sent_and_in_flight, params)
                return cursor.rowcount == 1
            cursor.execute(self._sent, {"sent": sent, "sent_at": params["sent_at"]})
        cursor.execute(self._in_flight, params)
        marked = cursor.rowcount == 1
        self._driver.commit()
        return marked

    def sent(self, delivery_id: int) -> None:
        self._cursor.execute(self._sent, {"sent": delivery_id, "sent_at": self._sent_at(utcnow())})
        self._driver.commit()

    def close(self) -> None:
        try:
            self._cursor.close()
        finally:
            self._connection.close()


class _TemplateCache:
    """Rendered editions, per worker process, keyed by edition and the start of its send
    (an edition cannot change while it sends)."""

    def __init__(self, size: int = 8) -> None:
        self._items: OrderedDict[tuple, EditionTemplate] = OrderedDict()
        self._size = size

    def get(self, edition_id: int) -> EditionTemplate:
        edition = db.session.get(Edition, edition_id)
        key = (edition_id, edition.started_at)
        template = self._items.get(key)
        if template is None:
            template = edition_template(edition)
            self._items[key] = template
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return template


_templates = _TemplateCache()


def send_due(worker_id: str, *, transport: Transport | None = None) -> SendStats:
    """Send every due delivery of every sending edition; the worker's sending job."""
    stats = SendStats()
    own_transport = transport is None
    transport = transport or open_transport()
    try:
        while not stats.connection_lost:
            ids = jobs.claim(
                Delivery,
                worker_id,
                _batch_size(),
                Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
                Delivery.edition_id.in_(_sending_editions),
            )
            if not ids:
                break
            _send_batch(ids, worker_id, transport, stats)
    finally:
        if own_transport:
            transport.close()
    _finish_complete_editions()
    return stats


def _batch_size() -> int:
    cfg = current_app.config
    size = int(cfg["SEND_BATCH_SIZE"])
    rate = float(cfg["SEND_RATE_PER_SECOND"] or 0)
    if rate > 0:
        # A rate-limited batch must finish well inside its lease.
        size = max(1, min(size, int(rate * float(cfg["WORKER_LEASE_SECONDS"]) / 2)))
    return size


def _send_batch(ids: list[int], worker_id: str, transport: Transport, stats: SendStats) -> None:
    rows = db.session.execute(
        select(
            Delivery.id,
            Delivery.edition_id,
            Delivery.subscriber_id,
            Subscriber.email,
            Subscriber.locale,
            Subscriber.token_version,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.id)
    ).all()
    db.session.commit()
    pending_sent: int | None = None
    stopped_editions: set[int] = set()
    failures_in_a_row = 0
    pause_after = int(current_app.config["SEND_PAUSE_AFTER_FAILURES"] or 0)
    date = formatdate(usegmt=True)
    # Rendered once per edition and batch: an edition cannot change while it sends, and
    # whether it still sends is checked by every in-flight mark.
    templates: dict[int, EditionTemplate] = {}
    marks = _Marks(worker_id)
    try:
        for delivery_id, edition_id, subscriber_id, email, locale, token_version in rows:
            if edition_id in stopped_editions or stats.connection_lost:
                _release(delivery_id, worker_id)
                continue
            template = templates.get(edition_id)
            if template is None:
                template = templates[edition_id] = _templates.get(edition_id)
                db.session.commit()  # nothing of the session stays open while mail goes out
            marked = marks.mark(
                delivery_id, edition_id, subscriber_id, template.newsletter_id, sent=pending_sent
            )
            pending_sent = None
            if not marked:
                if _why_not_sendable(delivery_id, edition_id, worker_id, stats):
                    stopped_editions.add(edition_id)
                continue
            to = ascii_address(email)
            message = template.message(
                to=to,
                delivery_id=delivery_id,
                manage_url=manage_url_for(subscriber_id, token_version, locale),
                unsubscribe_url=unsubscribe_url_for(
                    subscriber_id, token_version, locale, template.newsletter_id
                ),
                date=date,
            )
            try:
                transport.send(template.envelope_from, to, message)
            except DeliveryFailure as failure:
                failures_in_a_row += 1
                _record_failure(delivery_id, subscriber_id, failure, stats)
                if pause_after and failures_in_a_row >= pause_after:
                    _pause_for_failures(edition_id, failures_in_a_row, failure)
                    stopped_editions.add(edition_id)
                continue
            except Exception as exc:  # a message we cannot even hand over must not stop the rest
                log.exception("delivery %s could not be sent", delivery_id)
                transport.close()
                failures_in_a_row += 1
                _record_failure(
                    delivery_id,
                    subscriber_id,
                    DeliveryFailure(f"unexpected error: {exc!r}", permanent=True),
                    stats,
                    bounce=False,
                )
                continue
            failures_in_a_row = 0
            pending_sent = delivery_id
            stats.sent += 1
        if pending_sent is not None:
            marks.sent(pending_sent)
    finally:
        marks.close()


def _why_not_sendable(delivery_id: int, edition_id: int, worker_id: str, stats: SendStats) -> bool:
    """After a refused in-flight mark: skip the delivery, or stop the edition (True)."""
    edition_status = db.session.scalar(select(Edition.status).where(Edition.id == edition_id))
    if edition_status != EditionStatus.SENDING:
        _release(delivery_id, worker_id)
        return True
    # Unsubscribed (or unconfirmed) since the send started: never sent, recorded why.
    result = db.session.execute(
        update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.leased_by == worker_id,
            deliveries.c.status == DeliveryStatus.QUEUED.value,
        )
        .values(status=DeliveryStatus.SKIPPED.value, leased_until=None)
    )
    db.session.commit()
    stats.skipped += result.rowcount
    return False


def _release(delivery_id: int, worker_id: str) -> None:
    db.session.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.leased_by == worker_id)
        .values(leased_until=None, leased_by=None)
    )
    db.session.commit()


def _record_failure(
    delivery_id: int,
    subscriber_id: int,
    failure: DeliveryFailure,
    stats: SendStats,
    *,
    bounce: bool = True,
) -> None:
    delivery = db.session.get(Delivery, delivery_id)
    delivery.last_error = str(failure)[:2000]
    delivery.leased_until = None
    stats.errors.append(str(failure))
    if failure.permanent:
        delivery.status = DeliveryStatus.FAILED
        stats.failed += 1
        if bounce:
            # A 5xx for an address is a hard bounce: recorded like those from the bounce
            # mailbox, and no more mail goes to the address (hard_bounced_at, suppression).
            message = str(failure)
            record_bounce(
                subscriber_id,
                BounceKind.HARD,
                status=_status_of(message),
                diagnostic=message,
                source="smtp",
                delivery_id=delivery_id,
            )
    else:
        # Never accepted: back in the queue after a backoff (a dropped connection may
        # have delivered it, which the receiving side sees as the same Message-ID).
        delivery.status = DeliveryStatus.QUEUED
        delivery.leased_by = None
        delivery.next_attempt_at = utcnow() + jobs.backoff(delivery.attempts)
        stats.retried += 1
        stats.connection_lost = failure.connection_lost
    db.session.commit()


def _status_of(message: str) -> str:
    """The enhanced status code (5.1.1) or else the SMTP reply code in an error text."""
    match = re.search(r"\b[245]\.\d{1,3}\.\d{1,3}\b", message) or re.search(
        r"\b[45]\d\d\b", message
    )
    return match.group(0) if match else ""


def _pause_for_failures(edition_id: int, count: int, failure: DeliveryFailure) -> None:
    reason = f"{count} failures in a row; the last: {failure}"
    db.session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status == EditionStatus.SENDING)
        .values(status=EditionStatus.PAUSED, paused_reason=reason[:2000])
    )
    db.session.commit()
    log.warning("edition %s paused itself: %s", edition_id, reason)


def _finish_complete_editions() -> None:
    """Mark SENT every sending edition with nothing left to send."""
    open_deliveries = (
        select(Delivery.id)
        .where(
            Delivery.edition_id == Edition.id,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .exists()
    )
    db.session.execute(
        update(Edition)
        .where(Edition.status == EditionStatus.SENDING, ~open_deliveries)
        .values(status=EditionStatus.SENT, finished_at=utcnow())
    )
    db.session.commit()
