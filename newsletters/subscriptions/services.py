"""Subscriber operations, called by the web views, the CLI and the worker alike.

Each public function is one transaction: it commits what it did (mail included, via the
outbox) or, on error, leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, insert, select, update

from newsletters import busy, jobs
from newsletters.audit import services as audit
from newsletters.bounces import suppression
from newsletters.bounces.models import Bounce, Suppression, SuppressionReason
from newsletters.catalog.models import Newsletter
from newsletters.editions.models import Delivery, Edition
from newsletters.extensions import db
from newsletters.mailing import mailbox, outbox
from newsletters.mailing.addresses import ascii_address, normalise_email
from newsletters.mailing.compose import render_mail
from newsletters.mailing.models import OutboxMessage
from newsletters.names import clean_name
from newsletters.subscriptions import links
from newsletters.subscriptions.consent import CURRENT_CONSENT_VERSION
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscribeRequest,
    Subscription,
    SubscriptionStatus,
)
from newsletters.subscriptions.municipalities import is_municipality
from newsletters.timeutil import utcnow
from newsletters.tokens import Purpose, SubscriberLink, TokenError, verify_timed

log = logging.getLogger(__name__)

# Mails a stranger can cause to be sent to an address: limited per address per hour.
LIMITED_KINDS = ("confirm", "already_subscribed", "manage_link")


@dataclass(frozen=True)
class RequestContext:
    """Where an action came from, for the consent record."""

    ip: str | None = None
    user_agent: str | None = None
    locale: str = "da"
    method: str = "web_form"


@dataclass
class ConfirmOutcome:
    subscriber: Subscriber
    confirmed: list[Newsletter] = field(default_factory=list)
    already: list[Newsletter] = field(default_factory=list)
    # Asked for, but withdrawn since: the link no longer confirms them.
    withdrawn: list[Newsletter] = field(default_factory=list)


@dataclass
class UnsubscribeOutcome:
    subscriber: Subscriber | None
    newsletters: list[Newsletter] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def record_event(
    subscription: Subscription,
    action: ConsentAction,
    ctx: RequestContext,
    *,
    method: str | None = None,
    basis: str | None = None,
    consent_version: str | None = None,
    at: datetime | None = None,
) -> None:
    db.session.add(
        ConsentEvent(
            subscription=subscription,
            action=action,
            method=method or ctx.method,
            at=at or utcnow(),
            ip=(ctx.ip or None) and ctx.ip[:64],
            user_agent=(ctx.user_agent or None) and ctx.user_agent[:512],
            consent_text_version=consent_version,
            locale=ctx.locale,
            basis=basis,
        )
    )


def known_municipality(value: str) -> str:
    """The empty string or one of the 98 municipalities: the forms offer only those, and every
    other caller (the API) is held to the same."""
    value = value.strip()
    if value and not is_municipality(value):
        raise ValueError(f"not one of the 98 municipalities: {value[:100]!r}")
    return value


def _newsletters_by_slug(slugs: Iterable[str]) -> list[Newsletter]:
    wanted = list(dict.fromkeys(slugs))
    found = {
        n.slug: n
        for n in db.session.scalars(db.select(Newsletter).where(Newsletter.slug.in_(wanted)))
    }
    missing = [s for s in wanted if s not in found]
    if missing:
        raise UnknownNewsletter(missing)
    return [found[s] for s in wanted]


class UnknownNewsletter(ValueError):
    def __init__(self, slugs: Sequence[str]) -> None:
        super().__init__(", ".join(slugs))
        self.slugs = list(slugs)


def _lock_subscriber(email: str) -> Subscriber | None:
    return db.session.scalar(
        db.select(Subscriber).where(Subscriber.email == email).with_for_update()
    )


def _subscriptions_of(subscriber: Subscriber) -> dict[int, Subscription]:
    return {
        s.newsletter_id: s
        for s in db.session.scalars(
            db.select(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
    }


def may_mail(address: str) -> bool:
    """Whether another confirmation or link mail may go to this address this hour."""
    since = utcnow() - timedelta(hours=1)
    sent = db.session.scalar(
        select(func.count(OutboxMessage.id)).where(
            OutboxMessage.to_address == address,
            OutboxMessage.kind.in_(LIMITED_KINDS),
            OutboxMessage.created_at > since,
        )
    )
    return (sent or 0) < int(current_app.config["ADDRESS_MAILS_PER_HOUR"])


def mails_this_hour(addresses: Iterable[str]) -> dict[str, int]:
    """How many confirmation and link mails each address (as the outbox writes it) was
    sent in the last hour: the per-address limit of `may_mail`, for many at once."""
    since = utcnow() - timedelta(hours=1)
    wanted = list(addresses)
    counts: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        counts.update(
            iter(
                db.session.execute(
                    select(OutboxMessage.to_address, func.count(OutboxMessage.id))
                    .where(
                        OutboxMessage.to_address.in_(chunk),
                        OutboxMessage.kind.in_(LIMITED_KINDS),
                        OutboxMessage.created_at > since,
                    )
                    .group_by(OutboxMessage.to_address)
                )
            )
        )
    return counts


def queue_confirmation(subscriber: Subscriber, newsletters: Sequence[Newsletter]) -> bool:
    if not may_mail(subscriber.email):
        return False
    db.session.add(OutboxMessage(**confirmation_mail_row(subscriber, newsletters)))
    jobs.queued_work()
    return True


def confirmation_mail_row(subscriber: Subscriber, newsletters: Sequence[Newsletter]) -> dict:
    """The double opt-in mail's outbox row (see `outbox.message_row`); no limit checked."""
    mail = render_mail(
        "confirm",
        locale=subscriber.locale,
        newsletters=newsletters,
        confirm_url=links.confirm_url(subscriber, [n.id for n in newsletters]),
        manage_url=links.manage_url(subscriber),
        max_age_days=current_app.config["CONFIRM_MAX_AGE_DAYS"],
    )
    return outbox.message_row(
        kind="confirm",
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        unsubscribe_url=links.unsubscribe_url(subscriber),
    )


def _queue_manage_link(subscriber: Subscriber, kind: str = "manage_link") -> bool:
    if not may_mail(subscriber.email):
        return False
    confirmed = [
        s.newsletter for s in subscriber.subscriptions if s.status == SubscriptionStatus.CONFIRMED
    ]
    mail = render_mail(
        kind,
        locale=subscriber.locale,
        newsletters=confirmed,
        manage_url=links.manage_url(subscriber),
        max_age_days=current_app.config["MANAGE_MAX_AGE_DAYS"],
    )
    outbox.enqueue(
        kind=kind,
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        unsubscribe_url=links.unsubscribe_url(subscriber),
    )
    return True


# --------------------------------------------------------------------------- subscribe


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
    subscriber = _lock_subscriber(address)
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
    existing = _subscriptions_of(subscriber)
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
            for s in _subscriptions_of(subscriber).values()
            if s.status == SubscriptionStatus.PENDING
        ]
        waiting.sort(key=lambda n: (n.position, n.id))
        queue_confirmation(subscriber, waiting)
    elif already:
        _queue_manage_link(subscriber, kind="already_subscribed")


def _link_owner(link: SubscriberLink, signed_at: datetime | None) -> Subscriber | None:
    """The subscriber a verified link was made for, or None.

    By the random link key (unique, indexed). A link from before migration 0008 names a
    row id instead; it counts only if that row already existed when the link was signed,
    otherwise the id was freed and handed to someone else since (the old SQLite schema
    reused the highest id), and the link is not theirs. The signature time is in whole
    seconds (rounded down), so a link signed within the second its row was created is
    refused too: strict on purpose, as no new link of this form is ever made.
    """
    if link.link_key is not None:
        return db.session.scalar(select(Subscriber).where(Subscriber.link_key == link.link_key))
    subscriber = db.session.get(Subscriber, link.legacy_id)
    if subscriber is None or signed_at is None or subscriber.created_at > signed_at:
        return None
    return subscriber


def _verified_subscriber(purpose: Purpose, token: str) -> tuple[Subscriber, SubscriberLink]:
    payload, signed_at = verify_timed(purpose, token)
    link = SubscriberLink.from_payload(payload)
    subscriber = _link_owner(link, signed_at)
    if subscriber is None or subscriber.token_version != link.token_version:
        raise TokenError("invalid")
    return subscriber, link


def _subscriber_of_link(purpose: Purpose, token: str) -> tuple[Subscriber, SubscriberLink]:
    """Like _verified_subscriber, but accepts an expired link (to send a fresh one)."""
    try:
        payload, signed_at = verify_timed(purpose, token)
    except TokenError as error:
        if not error.expired or error.payload is None:
            raise
        payload, signed_at = error.payload, error.signed_at
    link = SubscriberLink.from_payload(payload)
    subscriber = _link_owner(link, signed_at)
    if subscriber is None or subscriber.token_version != link.token_version:
        raise TokenError("invalid")
    return subscriber, link


def inspect_confirm(token: str) -> tuple[Subscriber, list[Subscription]]:
    """What a confirm link is for, without changing anything (GET shows, POST acts)."""
    subscriber, link = _verified_subscriber(Purpose.CONFIRM, token)
    subscriptions = [
        s for s in subscriber.subscriptions if s.newsletter_id in set(link.newsletter_ids)
    ]
    subscriptions.sort(key=lambda s: (s.newsletter.position, s.newsletter_id))
    return subscriber, subscriptions


def confirm(token: str, *, ctx: RequestContext) -> ConfirmOutcome:
    """Confirm the pending subscriptions a confirm link names. Confirming twice is harmless."""
    subscriber, link = _verified_subscriber(Purpose.CONFIRM, token)
    outcome = ConfirmOutcome(subscriber=subscriber)
    now = utcnow()
    # Suppressed since the link was sent (erased and asked never to be mailed, or the
    # address bounced): the link no longer subscribes.
    suppressed = suppression.is_suppressed(subscriber.email)
    for subscription in _subscriptions_of(subscriber).values():
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
    subscriber, link = _subscriber_of_link(Purpose.CONFIRM, expired_token)
    pending = [
        s.newsletter
        for s in subscriber.subscriptions
        if s.status == SubscriptionStatus.PENDING and s.newsletter_id in link.newsletter_ids
    ]
    if pending:
        _lock_subscriber(subscriber.email)
        queue_confirmation(subscriber, pending)
    db.session.commit()


# --------------------------------------------------------------------------- manage


def request_manage_link(email: str, *, locale: str) -> None:
    """Mail a manage link to `email` if it is a subscriber's; silent otherwise."""
    address = normalise_email(email)
    subscriber = _lock_subscriber(address)
    if subscriber is not None:
        if not any(s.status == SubscriptionStatus.CONFIRMED for s in subscriber.subscriptions):
            # Not yet confirmed: the link that helps is a fresh confirmation.
            pending = [
                s.newsletter
                for s in subscriber.subscriptions
                if s.status == SubscriptionStatus.PENDING
            ]
            if pending:
                queue_confirmation(subscriber, pending)
            else:
                _queue_manage_link(subscriber)
        else:
            _queue_manage_link(subscriber)
    db.session.commit()


def resend_manage_link(expired_token: str) -> None:
    """Mail a fresh manage link to the owner of an expired one."""
    subscriber, _ = _subscriber_of_link(Purpose.MANAGE, expired_token)
    _lock_subscriber(subscriber.email)
    _queue_manage_link(subscriber)
    db.session.commit()


def subscriber_for_manage(token: str) -> Subscriber:
    """The subscriber a manage link belongs to; raises TokenError."""
    subscriber, _ = _verified_subscriber(Purpose.MANAGE, token)
    return subscriber


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
    chosen = {n.id: n for n in _newsletters_by_slug(slugs)}
    existing = _subscriptions_of(subscriber)
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


def _withdraw(subscription: Subscription, ctx: RequestContext, *, method: str, now) -> None:
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    subscription.unsubscribed_at = now
    record_event(subscription, ConsentAction.WITHDRAWN, ctx, method=method)


# --------------------------------------------------------------------------- unsubscribe


def _unsubscribe_link(token: str) -> tuple[Subscriber | None, SubscriberLink]:
    """Verify an unsubscribe link. Unlike other links it ignores `token_version`:
    revoking links must never take away the way out."""
    payload, signed_at = verify_timed(Purpose.UNSUBSCRIBE, token)
    link = SubscriberLink.from_payload(payload)
    subscriber = _link_owner(link, signed_at)
    if subscriber is None and link.legacy_id is not None:
        # An old link we cannot match safely: the page that offers a new link, rather
        # than "you are not subscribed", which may not be true for its owner.
        raise TokenError("invalid")
    return subscriber, link


def inspect_unsubscribe(token: str) -> tuple[Subscriber | None, list[Newsletter]]:
    """Whom an unsubscribe link is for and which newsletters it would stop."""
    subscriber, link = _unsubscribe_link(token)
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
    subscriber, link = _unsubscribe_link(token)
    if subscriber is None:
        return UnsubscribeOutcome(subscriber=None)
    return unsubscribe_subscriber(
        subscriber.id, newsletter_ids=link.newsletter_ids or None, ctx=ctx
    )


def unsubscribe_subscriber(
    subscriber_id: int, *, newsletter_ids: Sequence[int] | None, ctx: RequestContext
) -> UnsubscribeOutcome:
    """Withdraw the given newsletters (all when None) of one subscriber, recording it."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    outcome = UnsubscribeOutcome(subscriber=subscriber)
    if subscriber is None:
        return outcome
    now = utcnow()
    for subscription in _subscriptions_of(subscriber).values():
        if newsletter_ids is not None and subscription.newsletter_id not in newsletter_ids:
            continue
        if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
            continue
        _withdraw(subscription, ctx, method=ctx.method, now=now)
        outcome.newsletters.append(subscription.newsletter)
    db.session.commit()
    return outcome


# --------------------------------------------------------------------------- data rights


def export_data(subscriber_id: int) -> dict[str, Any]:
    """Everything stored about one subscriber, as JSON-ready data (GDPR Art. 15 and 20)."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise TokenError("invalid")

    def iso(value) -> str | None:
        return value.isoformat() if value else None

    subscriptions = []
    for s in sorted(subscriber.subscriptions, key=lambda s: s.newsletter.position):
        events = db.session.scalars(
            db.select(ConsentEvent)
            .where(ConsentEvent.subscription_id == s.id)
            .order_by(ConsentEvent.at, ConsentEvent.id)
        )
        subscriptions.append(
            {
                "newsletter": s.newsletter.slug,
                "newsletter_name": s.newsletter.name,
                "status": s.status.value,
                "requested_at": iso(s.requested_at),
                "confirmed_at": iso(s.confirmed_at),
                "unsubscribed_at": iso(s.unsubscribed_at),
                "consent_history": [
                    {
                        "action": e.action.value,
                        "method": e.method,
                        "at": iso(e.at),
                        "ip": e.ip,
                        "user_agent": e.user_agent,
                        "consent_text_version": e.consent_text_version,
                        "locale": e.locale,
                        "basis": e.basis,
                    }
                    for e in events
                ],
            }
        )
    mails = db.session.scalars(
        db.select(OutboxMessage)
        .where(OutboxMessage.subscriber_id == subscriber.id)
        .order_by(OutboxMessage.id)
    )
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "municipality": subscriber.municipality,
        "role": subscriber.role,
        "language": subscriber.locale,
        "created_at": iso(subscriber.created_at),
        "updated_at": iso(subscriber.updated_at),
        "subscriptions": subscriptions,
        "mails": [
            {
                "kind": m.kind,
                "subject": m.subject,
                "created_at": iso(m.created_at),
                "sent_at": iso(m.sent_at),
                "status": m.status.value,
            }
            for m in mails
        ],
        "editions_received": [
            {
                "newsletter": slug,
                "edition": edition_id,
                "subject": subject,
                "status": status.value,
                "sent_at": iso(sent_at),
                "attempts": attempts,
                "last_error": last_error,
            }
            for edition_id, slug, subject, status, sent_at, attempts, last_error in (
                db.session.execute(
                    select(
                        Delivery.edition_id,
                        Newsletter.slug,
                        Edition.subject,
                        Delivery.status,
                        Delivery.sent_at,
                        Delivery.attempts,
                        Delivery.last_error,
                    )
                    .join(Edition, Edition.id == Delivery.edition_id)
                    .join(Newsletter, Newsletter.id == Edition.newsletter_id)
                    .where(Delivery.subscriber_id == subscriber.id)
                    .order_by(Delivery.id)
                )
            )
        ],
        "bounces": [
            {
                "kind": b.kind.value,
                "status": b.status,
                "diagnostic": b.diagnostic,
                "source": b.source,
                "at": iso(b.at),
            }
            for b in db.session.scalars(
                select(Bounce).where(Bounce.subscriber_id == subscriber.id).order_by(Bounce.id)
            )
        ],
        "mail_stopped_at": iso(subscriber.hard_bounced_at),
        "suppressed": suppression.is_suppressed(subscriber.email),
    }


def erase(
    subscriber_id: int,
    *,
    never_again: bool = False,
    by_staff_id: int | None = None,
    ip: str | None = None,
) -> bool:
    """Delete the subscriber and everything stored about them (GDPR Art. 17); one
    transaction. False if there was no such subscriber.

    With `never_again` only a keyed hash of the address stays, on the suppression list,
    so the person is never mailed again without the address being kept. An existing
    suppression entry (a bounce) keeps its hash and loses the address. When staff erase
    (`by_staff_id`), the audit entry names the subscriber by id only.
    """
    email = db.session.scalar(select(Subscriber.email).where(Subscriber.id == subscriber_id))
    if email is None:
        db.session.rollback()
        return False
    subscription_ids = select(Subscription.id).where(Subscription.subscriber_id == subscriber_id)
    db.session.execute(
        delete(ConsentEvent).where(ConsentEvent.subscription_id.in_(subscription_ids))
    )
    db.session.execute(delete(Bounce).where(Bounce.subscriber_id == subscriber_id))
    db.session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber_id))
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
    if by_staff_id is not None:
        audit.record(
            by_staff_id,
            "subscriber.erase",
            f"subscriber:{subscriber_id}",
            {"never_again": never_again},
            ip,
        )
    db.session.commit()
    db.session.expunge_all()
    return True


def _ascii_or_same(address: str) -> str:
    try:
        return ascii_address(address)
    except ValueError:
        return address


# --------------------------------------------------------------------------- enrolment


def enrol(
    subscriber: Subscriber,
    newsletter: Newsletter,
    *,
    basis: str,
    ctx: RequestContext,
) -> bool:
    """Subscribe on a recorded basis (no opt-in mail); True if it changed anything.

    Part of the caller's transaction: the import commits its whole file at once.
    """
    existing = _subscriptions_of(subscriber).get(newsletter.id) if subscriber.id else None
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


def queue_welcome(subscriber: Subscriber, newsletter: Newsletter, *, basis: str) -> None:
    """The welcome mail after an enrolment: why they get it and how to leave."""
    db.session.add(OutboxMessage(**welcome_mail_row(subscriber, newsletter, basis=basis)))
    jobs.queued_work()


def welcome_mail_row(subscriber: Subscriber, newsletter: Newsletter, *, basis: str) -> dict:
    """The welcome mail's outbox row (see `outbox.message_row`)."""
    # Signed once: the body and the List-Unsubscribe header carry the same link.
    unsubscribe_url = links.unsubscribe_url(subscriber, newsletter.id)
    mail = render_mail(
        "welcome",
        locale=subscriber.locale,
        newsletter=newsletter,
        basis=basis,
        manage_url=links.manage_url(subscriber),
        unsubscribe_url=unsubscribe_url,
    )
    return outbox.message_row(
        kind="welcome",
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        list_id=f"{newsletter.name} <{newsletter.slug}.{current_app.config['MAIL_DOMAIN']}>",
        unsubscribe_url=unsubscribe_url,
    )


def insert_subscribers(rows: Sequence[dict[str, str]]) -> None:
    """Create subscribers in bulk (one executemany), skipping addresses that exist by now
    (a subscribe request carried out meanwhile). Part of the caller's transaction.

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
    subscriber, link = _verified_subscriber(Purpose.JOIN, token)
    if len(link.newsletter_ids) != 1:
        raise TokenError("invalid")
    newsletter = db.session.get(Newsletter, link.newsletter_ids[0])
    if newsletter is None:
        raise TokenError("invalid")
    existing = _subscriptions_of(subscriber).get(newsletter.id)
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
    _lock_subscriber(offer.subscriber.email)
    subscription = _subscriptions_of(offer.subscriber).get(offer.newsletter.id)
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


# --------------------------------------------------------------------------- hygiene


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
