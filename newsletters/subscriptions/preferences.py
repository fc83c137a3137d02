"""The preference centre and the way out: manage links, choosing newsletters and
details, unsubscribing.

The manage link came to the subscriber's own address, so what they choose with it takes
effect at once. The unsubscribe link works even after links were revoked: nothing may take
away the way out. Each public function is one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.mailing.addresses import normalise_email
from newsletters.names import clean_name
from newsletters.subscriptions import links, mails
from newsletters.subscriptions.consent import (
    CURRENT_CONSENT_VERSION,
    RequestContext,
    record_event,
)
from newsletters.subscriptions.lookups import (
    known_municipality,
    lock_subscriber,
    newsletters_by_slug,
    subscriptions_of,
)
from newsletters.subscriptions.models import (
    ConsentAction,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow
from newsletters.tokens import Purpose, TokenError

# --------------------------------------------------------------------------- manage links


def request_manage_link(email: str, *, locale: str) -> None:
    """Mail a manage link to `email` if it is a subscriber's; silent otherwise."""
    address = normalise_email(email)
    subscriber = lock_subscriber(address)
    if subscriber is not None:
        if not any(s.status == SubscriptionStatus.CONFIRMED for s in subscriber.subscriptions):
            # Not yet confirmed: the link that helps is a fresh confirmation.
            pending = [
                s.newsletter
                for s in subscriber.subscriptions
                if s.status == SubscriptionStatus.PENDING
            ]
            if pending:
                mails.queue_confirmation(subscriber, pending)
            else:
                mails.queue_manage_link(subscriber)
        else:
            mails.queue_manage_link(subscriber)
    db.session.commit()


def resend_manage_link(expired_token: str) -> None:
    """Mail a fresh manage link to the owner of an expired one."""
    subscriber, _ = links.subscriber_of_expired(Purpose.MANAGE, expired_token)
    lock_subscriber(subscriber.email)
    mails.queue_manage_link(subscriber)
    db.session.commit()


def subscriber_for_manage(token: str) -> Subscriber:
    """The subscriber a manage link belongs to; raises TokenError."""
    subscriber, _ = links.verified_subscriber(Purpose.MANAGE, token)
    return subscriber


# --------------------------------------------------------------------------- choices


def update_preferences(
    subscriber_id: int,
    *,
    slugs: Sequence[str],
    name: str,
    municipality: str,
    ctx: RequestContext,
) -> tuple[list[Newsletter], list[Newsletter]]:
    """Set exactly these newsletters and details; returns (added, removed).

    The manage link came to the subscriber's own address, so a newsletter chosen here
    is confirmed at once: the link itself is the second opt-in.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise TokenError("invalid")
    chosen = {n.id: n for n in newsletters_by_slug(slugs)}
    existing = subscriptions_of(subscriber)
    now = utcnow()
    added: list[Newsletter] = []
    removed: list[Newsletter] = []
    for newsletter_id, newsletter in chosen.items():
        subscription = existing.get(newsletter_id)
        if subscription is not None and subscription.status == SubscriptionStatus.CONFIRMED:
            continue
        if subscription is None:
            subscription = Subscription(subscriber=subscriber, newsletter=newsletter)
            db.session.add(subscription)
        subscription.status = SubscriptionStatus.CONFIRMED
        subscription.requested_at = now
        subscription.confirmed_at = now
        subscription.unsubscribed_at = None
        record_event(
            subscription,
            ConsentAction.REQUESTED,
            ctx,
            method="preference_centre",
            consent_version=CURRENT_CONSENT_VERSION,
        )
        record_event(subscription, ConsentAction.CONFIRMED, ctx, method="preference_centre")
        added.append(newsletter)
    for newsletter_id, subscription in existing.items():
        if newsletter_id in chosen or subscription.status == SubscriptionStatus.UNSUBSCRIBED:
            continue
        _withdraw(subscription, ctx, method="preference_centre", now=now)
        removed.append(subscription.newsletter)
    subscriber.name = clean_name(name)
    subscriber.municipality = known_municipality(municipality)
    db.session.commit()
    return added, removed


def _withdraw(
    subscription: Subscription,
    ctx: RequestContext,
    *,
    method: str,
    now: datetime,
    edition_id: int | None = None,
) -> None:
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    subscription.unsubscribed_at = now
    record_event(subscription, ConsentAction.WITHDRAWN, ctx, method=method, edition_id=edition_id)


# --------------------------------------------------------------------------- unsubscribe


@dataclass
class UnsubscribeOutcome:
    subscriber: Subscriber | None
    newsletters: list[Newsletter] = field(default_factory=list)


def inspect_unsubscribe(token: str) -> tuple[Subscriber | None, list[Newsletter]]:
    """Whom an unsubscribe link is for and which newsletters it would stop."""
    subscriber, link = links.unsubscribe_link_owner(token)
    if subscriber is None:
        return None, []
    active = [s for s in subscriber.subscriptions if s.status != SubscriptionStatus.UNSUBSCRIBED]
    if link.newsletter_ids:
        active = [s for s in active if s.newsletter_id in link.newsletter_ids]
    return subscriber, [s.newsletter for s in active]


def unsubscribe(token: str, *, ctx: RequestContext) -> UnsubscribeOutcome:
    """Withdraw what an unsubscribe link names (one newsletter, or all). Idempotent.

    Takes effect at commit: the sender re-checks the subscription before every message.
    """
    subscriber, link = links.unsubscribe_link_owner(token)
    if subscriber is None:
        return UnsubscribeOutcome(subscriber=None)
    return unsubscribe_subscriber(
        subscriber.id,
        newsletter_ids=link.newsletter_ids or None,
        ctx=ctx,
        edition_id=link.edition_id,
    )


def unsubscribe_subscriber(
    subscriber_id: int,
    *,
    newsletter_ids: Sequence[int] | None,
    ctx: RequestContext,
    edition_id: int | None = None,
) -> UnsubscribeOutcome:
    """Withdraw the given newsletters (all when None) of one subscriber, recording it
    (and the edition whose link was used, when the link names one)."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    outcome = UnsubscribeOutcome(subscriber=subscriber)
    if subscriber is None:
        return outcome
    now = utcnow()
    for subscription in subscriptions_of(subscriber).values():
        if newsletter_ids is not None and subscription.newsletter_id not in newsletter_ids:
            continue
        if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
            continue
        _withdraw(subscription, ctx, method=ctx.method, now=now, edition_id=edition_id)
        outcome.newsletters.append(subscription.newsletter)
    db.session.commit()
    return outcome
