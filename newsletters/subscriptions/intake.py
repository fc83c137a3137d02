"""Coming in: the subscribe form, the double opt-in confirmation, the one-click join link.

A posted form is one INSERT (the hot path); the worker carries it out later
(`process_subscribe_requests`): a pending subscription and the confirmation mail, or a
manage link for what the address already receives. The person confirms by pressing the
button on the page the confirmation link opens (GET shows, POST acts). An address on the
suppression list is never mailed and never confirmed.

Each public function is one transaction: it commits what it did (mail included, via the
outbox) or, on error, leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update

from newsletters import busy, jobs
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.mailing.addresses import normalise_email
from newsletters.names import clean_name
from newsletters.subscriptions import links, mails, suppression
from newsletters.subscriptions.consent import (
    CURRENT_CONSENT_VERSION,
    RequestContext,
    record_event,
)
from newsletters.subscriptions.lookups import (
    known_municipality,
    lock_subscriber,
    subscriptions_of,
)
from newsletters.subscriptions.models import (
    ConsentAction,
    Subscriber,
    SubscribeRequest,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow
from newsletters.tokens import Purpose, TokenError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the form

# Built once, on the table (plain Core, not the ORM's bulk path): the compiled form is
# reused on every request.
_INSERT_REQUEST = insert(SubscribeRequest.__table__)


def accept_subscribe_request(
    *,
    email: str,
    slugs: Sequence[str],
    ctx: RequestContext,
    name: str = "",
    municipality: str = "",
) -> None:
    """Record a posted subscribe form for the worker: one INSERT in one short transaction.

    The form was validated by the caller. What the request leads to (double opt-in mail,
    or a manage link for newsletters already confirmed) is carried out by
    `process_subscribe_requests`, and deliberately never told to the caller: the answer
    is the same either way.
    """
    now = utcnow()
    db.session.connection().execute(
        _INSERT_REQUEST,
        {
            "email": normalise_email(email),
            "name": clean_name(name),
            "municipality": known_municipality(municipality),
            "newsletters": ",".join(dict.fromkeys(slugs)),
            "requested_at": now,
            "next_attempt_at": now,
            "ip": (ctx.ip or None) and ctx.ip[:64],
            "user_agent": (ctx.user_agent or None) and ctx.user_agent[:512],
            "locale": ctx.locale,
            "consent_text_version": CURRENT_CONSENT_VERSION,
            # The channel when not the public form (the API: "api:<token name>").
            "method": None if ctx.method == "web_form" else ctx.method[:40],
            "attempts": 0,
        },
    )
    jobs.queued_work()
    db.session.commit()


def process_subscribe_requests(worker_id: str, *, batch_size: int = 50) -> int:
    """Carry out the posted subscribe forms that are due; the worker's intake job.

    Each request is one transaction: its effects and the deletion of the request row
    commit together, so a crash at any point neither loses nor repeats a request.
    """
    done = 0
    while True:
        ids = jobs.claim(SubscribeRequest, worker_id, batch_size)
        for request_id in ids:
            done += _process_subscribe_request(request_id, worker_id)
        if len(ids) < batch_size:
            return done


def _process_subscribe_request(request_id: int, worker_id: str) -> bool:
    row = db.session.get(SubscribeRequest, request_id)
    if row is None or row.leased_by != worker_id:
        db.session.rollback()
        return False
    ctx = RequestContext(
        ip=row.ip, user_agent=row.user_agent, locale=row.locale, method=row.method or "web_form"
    )
    attempts_before = row.attempts
    try:
        slugs = [s for s in row.newsletters.split(",") if s]
        # A newsletter removed since the form was posted is left out, not an error.
        newsletters = list(
            db.session.scalars(db.select(Newsletter).where(Newsletter.slug.in_(slugs)))
        )
        newsletters.sort(key=lambda n: slugs.index(n.slug))
        # A suppressed address gets no mail, and the form's answer was the same anyway.
        if newsletters and not suppression.is_suppressed(row.email):
            _request_subscription(
                row.email,
                newsletters,
                ctx,
                row.name,
                row.municipality,
                "",
                requested_at=row.requested_at,
                consent_version=row.consent_text_version,
            )
        db.session.delete(row)
        db.session.commit()
        return True
    except Exception as exc:
        # E.g. two first requests for one new address raced in two workers: the retry
        # finds the subscriber the other one created.
        db.session.rollback()
        if busy.is_busy(exc):
            # Not the request's fault: give it back, due at once, without counting an
            # attempt. (If even that is busy, the worker's next tick finds the lease.)
            log.info("subscribe request %s: database busy, will retry", request_id)
            values: dict[str, Any] = {"next_attempt_at": utcnow()}
        else:
            log.warning("subscribe request %s failed, will retry: %r", request_id, exc)
            values = {
                "attempts": attempts_before + 1,
                "last_error": repr(exc)[:2000],
                "next_attempt_at": utcnow() + jobs.backoff(attempts_before + 1),
            }
        db.session.execute(
            update(SubscribeRequest)
            .where(SubscribeRequest.id == request_id)
            .values(leased_until=None, leased_by=None, **values)
        )
        db.session.commit()
        return False


def _request_subscription(
    address: str,
    newsletters: Sequence[Newsletter],
    ctx: RequestContext,
    name: str,
    municipality: str,
    role: str,
    *,
    requested_at: datetime,
    consent_version: str,
) -> None:
    now = requested_at
    subscriber = lock_subscriber(address)
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            name=name.strip(),
            municipality=municipality.strip(),
            role=role.strip(),
            locale=ctx.locale,
        )
        db.session.add(subscriber)
        db.session.flush()
    existing = subscriptions_of(subscriber)
    has_confirmed = any(s.status == SubscriptionStatus.CONFIRMED for s in existing.values())
    if not has_confirmed:
        # Nobody has proven this address yet, so the latest request speaks for it. A
        # confirmed subscriber's details change only through the preference centre.
        subscriber.name = name.strip() or subscriber.name
        subscriber.municipality = municipality.strip() or subscriber.municipality
        subscriber.role = role.strip() or subscriber.role
        subscriber.locale = ctx.locale

    pending: list[Newsletter] = []
    already: list[Newsletter] = []
    for newsletter in newsletters:
        subscription = existing.get(newsletter.id)
        if subscription is not None and subscription.status == SubscriptionStatus.CONFIRMED:
            already.append(newsletter)
            continue
        if subscription is None:
            subscription = Subscription(subscriber=subscriber, newsletter=newsletter)
            db.session.add(subscription)
        subscription.status = SubscriptionStatus.PENDING
        subscription.requested_at = now
        record_event(
            subscription, ConsentAction.REQUESTED, ctx, consent_version=consent_version, at=now
        )
        pending.append(newsletter)
    db.session.flush()

    if pending:
        # Every newsletter still waiting for this address goes into the one link.
        waiting = [
            s.newsletter
            for s in subscriptions_of(subscriber).values()
            if s.status == SubscriptionStatus.PENDING
        ]
        waiting.sort(key=lambda n: (n.position, n.id))
        mails.queue_confirmation(subscriber, waiting)
    elif already:
        mails.queue_manage_link(subscriber, kind="already_subscribed")


# --------------------------------------------------------------------------- confirmation


@dataclass
class ConfirmOffer:
    """What pressing the button on a confirm link's page would do."""

    subscriber: Subscriber
    # The subscriptions the link names, in the catalogue's order.
    subscriptions: list[Subscription]
    # The address is on the suppression list: the button would confirm nothing.
    suppressed: bool

    @property
    def pending(self) -> list[Subscription]:
        return [s for s in self.subscriptions if s.status == SubscriptionStatus.PENDING]


@dataclass
class ConfirmOutcome:
    subscriber: Subscriber
    confirmed: list[Newsletter] = field(default_factory=list)
    already: list[Newsletter] = field(default_factory=list)
    # Asked for, but withdrawn since (or the address is suppressed): the link no longer
    # confirms them.
    withdrawn: list[Newsletter] = field(default_factory=list)
    suppressed: bool = False


def inspect_confirm(token: str) -> ConfirmOffer:
    """What a confirm link is for, without changing anything (GET shows, POST acts)."""
    subscriber, link = links.verified_subscriber(Purpose.CONFIRM, token)
    subscriptions = [
        s for s in subscriber.subscriptions if s.newsletter_id in set(link.newsletter_ids)
    ]
    subscriptions.sort(key=lambda s: (s.newsletter.position, s.newsletter_id))
    return ConfirmOffer(
        subscriber=subscriber,
        subscriptions=subscriptions,
        suppressed=suppression.is_suppressed(subscriber.email),
    )


def confirm(token: str, *, ctx: RequestContext) -> ConfirmOutcome:
    """Confirm the pending subscriptions a confirm link names. Confirming twice is harmless."""
    subscriber, link = links.verified_subscriber(Purpose.CONFIRM, token)
    # Suppressed since the link was sent (erased and asked never to be mailed, or the
    # address bounced): the link no longer subscribes.
    suppressed = suppression.is_suppressed(subscriber.email)
    outcome = ConfirmOutcome(subscriber=subscriber, suppressed=suppressed)
    now = utcnow()
    for subscription in subscriptions_of(subscriber).values():
        if subscription.newsletter_id not in link.newsletter_ids:
            continue
        if subscription.status == SubscriptionStatus.PENDING and suppressed:
            outcome.withdrawn.append(subscription.newsletter)
        elif subscription.status == SubscriptionStatus.PENDING:
            subscription.status = SubscriptionStatus.CONFIRMED
            subscription.confirmed_at = now
            record_event(subscription, ConsentAction.CONFIRMED, ctx, method="confirm_link")
            outcome.confirmed.append(subscription.newsletter)
        elif subscription.status == SubscriptionStatus.CONFIRMED:
            outcome.already.append(subscription.newsletter)
        else:
            outcome.withdrawn.append(subscription.newsletter)
    db.session.commit()
    return outcome


def resend_confirmation(expired_token: str) -> None:
    """Send a fresh confirmation for an expired confirm link's still-pending newsletters."""
    subscriber, link = links.subscriber_of_expired(Purpose.CONFIRM, expired_token)
    pending = [
        s.newsletter
        for s in subscriber.subscriptions
        if s.status == SubscriptionStatus.PENDING and s.newsletter_id in link.newsletter_ids
    ]
    if pending:
        lock_subscriber(subscriber.email)
        mails.queue_confirmation(subscriber, pending)
    db.session.commit()


# --------------------------------------------------------------------------- join links


@dataclass
class JoinOffer:
    subscriber: Subscriber
    newsletter: Newsletter
    # Already receiving it (confirmed).
    already: bool
    # The address is on the suppression list: the link cannot subscribe it.
    suppressed: bool


def _join_link(token: str) -> JoinOffer:
    subscriber, link = links.verified_subscriber(Purpose.JOIN, token)
    if len(link.newsletter_ids) != 1:
        raise TokenError("invalid")
    newsletter = db.session.get(Newsletter, link.newsletter_ids[0])
    if newsletter is None:
        raise TokenError("invalid")
    existing = subscriptions_of(subscriber).get(newsletter.id)
    return JoinOffer(
        subscriber=subscriber,
        newsletter=newsletter,
        already=existing is not None and existing.status == SubscriptionStatus.CONFIRMED,
        suppressed=suppression.is_suppressed(subscriber.email),
    )


def inspect_join(token: str) -> JoinOffer:
    """What a one-click subscribe link offers, without changing anything (GET shows)."""
    return _join_link(token)


def join(token: str, *, ctx: RequestContext) -> JoinOffer:
    """Subscribe the link's owner to the link's newsletter, confirmed: the link came to
    their own address, and pressing the button is the request and the confirmation.

    Recorded as both (method 'welcome-link'). Idempotent. An earlier withdrawal does not
    stop it: this is the person's own new request.
    """
    offer = _join_link(token)
    if offer.already or offer.suppressed:
        db.session.rollback()
        return offer
    lock_subscriber(offer.subscriber.email)
    subscription = subscriptions_of(offer.subscriber).get(offer.newsletter.id)
    if subscription is None:
        subscription = Subscription(subscriber=offer.subscriber, newsletter=offer.newsletter)
        db.session.add(subscription)
    now = utcnow()
    subscription.status = SubscriptionStatus.CONFIRMED
    subscription.requested_at = now
    subscription.confirmed_at = now
    subscription.unsubscribed_at = None
    record_event(
        subscription,
        ConsentAction.REQUESTED,
        ctx,
        method="welcome-link",
        consent_version=CURRENT_CONSENT_VERSION,
        at=now,
    )
    record_event(subscription, ConsentAction.CONFIRMED, ctx, method="welcome-link", at=now)
    db.session.commit()
    return offer
