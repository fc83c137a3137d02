"""Forgetting people: erasure on request (GDPR Art. 17) and the purge of confirmations
never given.

The subscriber side deletes its own rows and the mail queued for the address; the
features above it (editions' deliveries, bounces) hold rows about the person too, and
delete them when the erasure is announced (`subscriber.erase`, in the same transaction:
their listeners are registered in `create_app`).
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from newsletters import events
from newsletters.extensions import db
from newsletters.mailing import mailbox
from newsletters.mailing.addresses import ascii_address
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import (
    ConsentEvent,
    Subscriber,
    SubscribeRequest,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from newsletters.timeutil import utcnow

# Announced before a subscriber's rows go; the data carry `subscriber_id` and
# `never_again`. Listeners delete their own rows of that subscriber.
ERASE = "subscriber.erase"


def erase(
    subscriber_id: int,
    *,
    never_again: bool = False,
    by_staff_id: int | None = None,
    ip: str | None = None,
    actor: events.Actor | None = None,
) -> bool:
    """Delete the subscriber and everything stored about them (GDPR Art. 17); one
    transaction. False if there was no such subscriber.

    Audited when staff (`by_staff_id`) or another named actor (`actor`: the REST API's
    token) erase; a person erasing themselves is announced without an audit entry.

    With `never_again` only a keyed hash of the address stays, on the suppression list,
    so the person is never mailed again without the address being kept. An existing
    suppression entry (a bounce) keeps its hash and loses the address. When staff erase
    (`by_staff_id`), the audit entry names the subscriber by id only.
    """
    email = db.session.scalar(select(Subscriber.email).where(Subscriber.id == subscriber_id))
    if email is None:
        db.session.rollback()
        return False
    # First, while the subscriber row still exists for the others' foreign keys.
    events.announce(
        ERASE,
        f"subscriber:{subscriber_id}",
        actor=actor or events.Actor(by_staff_id, ip, "web"),
        audited=by_staff_id is not None or actor is not None,
        subscriber_id=subscriber_id,
        never_again=never_again,
        # Which newsletters lose a reader (the reports count erasures per newsletter).
        confirmed_newsletter_ids=list(
            db.session.scalars(
                select(Subscription.newsletter_id).where(
                    Subscription.subscriber_id == subscriber_id,
                    Subscription.status == SubscriptionStatus.CONFIRMED,
                )
            )
        ),
    )
    subscription_ids = select(Subscription.id).where(Subscription.subscriber_id == subscriber_id)
    db.session.execute(
        delete(ConsentEvent).where(ConsentEvent.subscription_id.in_(subscription_ids))
    )
    db.session.execute(
        delete(OutboxMessage).where(
            (OutboxMessage.subscriber_id == subscriber_id)
            | (OutboxMessage.to_address == email)
            | (OutboxMessage.to_address == _ascii_or_same(email))
        )
    )
    mailbox.forget(email, _ascii_or_same(email))
    # A subscribe form posted a moment ago and not yet carried out would bring them back.
    db.session.execute(delete(SubscribeRequest).where(SubscribeRequest.email == email))
    db.session.execute(delete(Subscription).where(Subscription.subscriber_id == subscriber_id))
    db.session.execute(delete(Subscriber).where(Subscriber.id == subscriber_id))
    db.session.execute(update(Suppression).where(Suppression.email == email).values(email=None))
    if never_again:
        suppression.suppress(
            email, SuppressionReason.ERASURE, keep_address=False, by_staff_id=by_staff_id
        )
    db.session.commit()
    db.session.expunge_all()
    return True


def _ascii_or_same(address: str) -> str:
    try:
        return ascii_address(address)
    except ValueError:
        return address


def purge_pending(older_than_days: float | None = None) -> tuple[int, int]:
    """Delete pending subscriptions never confirmed within PENDING_PURGE_DAYS, and the
    subscribers left with no subscription at all; returns (subscriptions, subscribers).

    Set-based, one transaction. A subscriber who has or had any other subscription keeps
    their row (and its consent history).
    """
    days = current_app.config["PENDING_PURGE_DAYS"] if older_than_days is None else older_than_days
    cutoff = utcnow() - timedelta(days=float(days))
    stale = select(Subscription.id).where(
        Subscription.status == SubscriptionStatus.PENDING,
        Subscription.requested_at < cutoff,
    )
    stale_ids = list(db.session.scalars(stale))
    if not stale_ids:
        db.session.rollback()
        return 0, 0
    affected = list(
        db.session.scalars(
            select(Subscription.subscriber_id).where(Subscription.id.in_(stale_ids)).distinct()
        )
    )
    for start in range(0, len(stale_ids), 500):
        chunk = stale_ids[start : start + 500]
        db.session.execute(delete(ConsentEvent).where(ConsentEvent.subscription_id.in_(chunk)))
        db.session.execute(delete(Subscription).where(Subscription.id.in_(chunk)))
    orphans = 0
    for start in range(0, len(affected), 500):
        chunk = affected[start : start + 500]
        has_any = select(Subscription.id).where(Subscription.subscriber_id == Subscriber.id)
        orphan_ids = list(
            db.session.scalars(
                select(Subscriber.id).where(Subscriber.id.in_(chunk), ~has_any.exists())
            )
        )
        if orphan_ids:
            db.session.execute(
                delete(OutboxMessage).where(OutboxMessage.subscriber_id.in_(orphan_ids))
            )
            db.session.execute(delete(Subscriber).where(Subscriber.id.in_(orphan_ids)))
            orphans += len(orphan_ids)
    db.session.commit()
    return len(stale_ids), orphans
