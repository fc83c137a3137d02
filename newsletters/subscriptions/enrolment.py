"""Subscribing people on a recorded basis (staff's imports): no opt-in mail, and a
withdrawal is never overridden.

Part of the caller's transaction: the import commits each chunk of its file at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update

from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.subscriptions.consent import RequestContext, record_event
from newsletters.subscriptions.lookups import subscriptions_of
from newsletters.subscriptions.models import (
    ConsentAction,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow


def enrol(
    subscriber: Subscriber,
    newsletter: Newsletter,
    *,
    basis: str,
    ctx: RequestContext,
) -> bool:
    """Subscribe on a recorded basis (no opt-in mail); True if it changed anything."""
    existing = subscriptions_of(subscriber).get(newsletter.id) if subscriber.id else None
    if existing is not None and existing.status == SubscriptionStatus.CONFIRMED:
        return False
    if existing is not None and existing.status == SubscriptionStatus.UNSUBSCRIBED:
        # They left; a recorded basis does not override a withdrawal.
        return False
    now = utcnow()
    subscription = existing or Subscription(subscriber=subscriber, newsletter=newsletter)
    if existing is None:
        db.session.add(subscription)
    subscription.status = SubscriptionStatus.CONFIRMED
    subscription.requested_at = subscription.requested_at or now
    subscription.confirmed_at = now
    record_event(subscription, ConsentAction.ENROLLED, ctx, basis=basis)
    return True


def insert_subscribers(rows: Sequence[dict[str, str]]) -> None:
    """Create subscribers in bulk (one executemany), skipping addresses that exist by now
    (a subscribe request carried out meanwhile).

    The one path that creates subscribers in bulk: each row gives `email` and the
    details it has; every other column takes its default (Python or server side), so a
    column added later needs only a default to be filled here too.
    """
    if not rows:
        return
    table = Subscriber.__table__
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(table).on_conflict_do_nothing(index_elements=[table.c.email])
    db.session.connection().execute(statement, list(rows))


def mark_welcome_letter_sent(subscription_ids: Sequence[int], *, at: datetime) -> None:
    """Record that these enrolled subscriptions have had the welcome letter (part of the
    caller's transaction, which queues the mails): a later send skips them."""
    for start in range(0, len(subscription_ids), _MARK_CHUNK):
        db.session.execute(
            update(Subscription)
            .where(Subscription.id.in_(subscription_ids[start : start + _MARK_CHUNK]))
            .values(welcome_letter_sent_at=at)
        )


# Below SQLite's limit of bound parameters in one statement.
_MARK_CHUNK = 500
