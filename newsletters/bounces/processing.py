"""Recording bounces and stopping mail to addresses that keep bouncing.

A hard bounce (from the bounce mailbox, or a 5xx answer at send time) stops mail to the
address at once; soft bounces do once BOUNCE_SOFT_LIMIT of them arrived within
BOUNCE_SOFT_WINDOW_DAYS. "Stops" means: `Subscriber.hard_bounced_at` is set and the
address goes on the suppression list, which start_send's INSERT ... SELECT excludes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from newsletters import events
from newsletters.bounces import parsing
from newsletters.bounces.models import Bounce, BounceKind
from newsletters.editions.models import Delivery
from newsletters.extensions import db
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import Subscriber, SuppressionReason
from newsletters.timeutil import utcnow


def init_app(app: Flask) -> None:
    """Record the refusals the sender announces (a 5xx at send time) as hard bounces."""
    events.listen(app, _record_refusal, ["delivery.refused"])


def _record_refusal(event: events.Event) -> None:
    """A permanent refusal of a delivery: a hard bounce, in the sender's transaction."""
    data = event.data
    if not data.get("permanent", True):
        return
    record_bounce(
        data["subscriber_id"],
        BounceKind.HARD,
        status=data.get("status", ""),
        diagnostic=data.get("diagnostic", ""),
        source="smtp",
        delivery_id=data.get("delivery_id"),
    )


@dataclass
class ProcessStats:
    messages: int = 0
    hard: int = 0
    soft: int = 0
    stopped: int = 0
    auto_replies: int = 0
    warnings: int = 0
    not_bounces: int = 0
    unattributed: int = 0
    already_recorded: int = 0
    unreadable: int = 0
    errors: list[str] = field(default_factory=list)


def record_bounce(
    subscriber_id: int,
    kind: BounceKind,
    *,
    status: str = "",
    diagnostic: str = "",
    source: str = "dsn",
    delivery_id: int | None = None,
    fingerprint: str | None = None,
) -> bool:
    """Record one bounce (in the caller's transaction) and stop mail to the address if
    it calls for that; True if mail was stopped now. Announced as `bounce.recorded`."""
    stopped = _record_bounce(
        subscriber_id,
        kind,
        status=status,
        diagnostic=diagnostic,
        source=source,
        delivery_id=delivery_id,
        fingerprint=fingerprint,
    )
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is not None:
        events.announce(
            "bounce.recorded",
            f"subscriber:{subscriber_id}",
            audited=False,
            subscriber_id=subscriber_id,
            email=subscriber.email,
            kind=kind.value,
            status=status[:20],
            diagnostic=diagnostic[:500],
            source=source,
            mail_stopped=stopped,
        )
    return stopped


def _record_bounce(
    subscriber_id: int,
    kind: BounceKind,
    *,
    status: str,
    diagnostic: str,
    source: str,
    delivery_id: int | None,
    fingerprint: str | None,
) -> bool:
    db.session.add(
        Bounce(
            subscriber_id=subscriber_id,
            delivery_id=delivery_id,
            kind=kind,
            status=status[:20],
            diagnostic=diagnostic[:2000],
            source=source,
            fingerprint=fingerprint,
        )
    )
    db.session.flush()
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.hard_bounced_at is not None:
        return False
    if kind is BounceKind.HARD:
        reason, count, note = SuppressionReason.HARD_BOUNCE, 1, f"{status} {diagnostic}".strip()
    else:
        cfg = current_app.config
        since = utcnow() - timedelta(days=float(cfg["BOUNCE_SOFT_WINDOW_DAYS"]))
        count = (
            db.session.scalar(
                select(func.count()).where(
                    Bounce.subscriber_id == subscriber_id,
                    Bounce.kind == BounceKind.SOFT,
                    Bounce.at >= since,
                )
            )
            or 0
        )
        if count < int(cfg["BOUNCE_SOFT_LIMIT"]):
            return False
        reason, note = SuppressionReason.SOFT_BOUNCES, f"the last: {status} {diagnostic}".strip()
    db.session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.hard_bounced_at.is_(None))
        .values(hard_bounced_at=utcnow())
    )
    suppression.suppress(subscriber.email, reason, note=note[:500], bounce_count=count)
    return True


def process_message(raw: bytes, stats: ProcessStats) -> None:
    """Read one message of the bounce mailbox and record what it says; one transaction."""
    stats.messages += 1
    try:
        parsed = parsing.parse(raw, mail_domain=current_app.config["MAIL_DOMAIN"])
    except Exception as exc:  # one unreadable message must not stop the mailbox
        stats.unreadable += 1
        stats.errors.append(f"unreadable message: {exc!r}")
        return
    if parsed.auto_reply:
        stats.auto_replies += 1
        return
    if parsed.warning_only:
        stats.warnings += 1
        return
    if not parsed.is_bounce:
        stats.not_bounces += 1
        return
    delivery = None
    if parsed.delivery is not None:
        edition_id, delivery_id = parsed.delivery
        delivery = db.session.get(Delivery, delivery_id)
        if delivery is not None and delivery.edition_id != edition_id:
            delivery = None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        for recipient in parsed.recipients:
            subscriber_id = _subscriber_for(recipient.address, delivery, len(parsed.recipients))
            if subscriber_id is None:
                stats.unattributed += 1
                continue
            fingerprint = hashlib.sha256(f"{digest}:{recipient.address}".encode()).hexdigest()
            if db.session.scalar(select(Bounce.id).where(Bounce.fingerprint == fingerprint)):
                stats.already_recorded += 1
                continue
            stopped = record_bounce(
                subscriber_id,
                recipient.kind,
                status=recipient.status,
                diagnostic=recipient.diagnostic,
                delivery_id=delivery.id if delivery is not None else None,
                fingerprint=fingerprint,
            )
            if recipient.kind is BounceKind.HARD:
                stats.hard += 1
            else:
                stats.soft += 1
            stats.stopped += stopped
        db.session.commit()
    except IntegrityError:
        # Another process recorded the same bounce a moment ago.
        db.session.rollback()
        stats.already_recorded += 1


def _subscriber_for(address: str, delivery: Delivery | None, recipients: int) -> int | None:
    """The subscriber a bounced address belongs to. The delivery named by the returned
    message decides when the bounce is about one recipient (a forwarding address may
    differ from ours); otherwise the address itself."""
    if delivery is not None and recipients == 1:
        return delivery.subscriber_id
    try:
        normalised = normalise_email(address)
    except InvalidAddress:
        normalised = address
    subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == normalised))
    if subscriber_id is None and delivery is not None:
        subscriber_id = delivery.subscriber_id
    return subscriber_id


def process_messages(
    messages: Iterable[tuple[object, bytes]], on_done: Callable[[object], None] | None = None
) -> ProcessStats:
    """Process (key, raw) pairs; `on_done(key)` after each one is recorded (mark seen)."""
    stats = ProcessStats()
    for key, raw in messages:
        process_message(raw, stats)
        if on_done is not None:
            on_done(key)
    return stats
