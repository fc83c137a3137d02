"""Consent: the texts shown next to the subscribe form, by version, the record of every
step a subscription takes (asked, confirmed, enrolled, withdrawn), and its announcement.

Append a new text version when the wording changes; never edit a published one, because
every consent record points at the version its subscriber saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletters import events
from newsletters.extensions import db
from newsletters.subscriptions.models import ConsentAction, ConsentEvent, Subscription
from newsletters.timeutil import utcnow

CONSENT_TEXTS: dict[str, dict[str, str]] = {
    "2026-11-v1": {
        "da": (
            "Ja tak, jeg vil gerne modtage de valgte nyhedsbreve fra KL på e-mail. KL bruger "
            "min e-mailadresse, mit navn og min kommune alene til at sende nyhedsbrevene. "
            "Jeg kan til enhver tid afmelde mig via linket i hvert nyhedsbrev."
        ),
        "en": (
            "Yes, I would like to receive the selected newsletters from KL by email. KL uses "
            "my email address, my name and my municipality only to send the newsletters. I "
            "can unsubscribe at any time with the link in every newsletter."
        ),
    },
}

CURRENT_CONSENT_VERSION = "2026-11-v1"


def consent_text(locale: str, version: str = CURRENT_CONSENT_VERSION) -> str:
    texts = CONSENT_TEXTS[version]
    return texts.get(locale, texts["da"])


@dataclass(frozen=True)
class RequestContext:
    """Where an action came from, for the consent record."""

    ip: str | None = None
    user_agent: str | None = None
    locale: str = "da"
    method: str = "web_form"


def record_event(
    subscription: Subscription,
    action: ConsentAction,
    ctx: RequestContext,
    *,
    method: str | None = None,
    basis: str | None = None,
    consent_version: str | None = None,
    at: datetime | None = None,
    edition_id: int | None = None,
) -> None:
    """Add one step of a subscription's consent history to the current transaction, and
    announce it (`edition_id`: the edition whose link a withdrawal came from)."""
    at = at or utcnow()
    db.session.add(
        ConsentEvent(
            subscription=subscription,
            action=action,
            method=method or ctx.method,
            at=at,
            ip=(ctx.ip or None) and ctx.ip[:64],
            user_agent=(ctx.user_agent or None) and ctx.user_agent[:512],
            consent_text_version=consent_version,
            locale=ctx.locale,
            basis=basis,
            edition_id=edition_id,
        )
    )
    # Announced in the same transaction (outgoing webhooks listen).
    subscriber = subscription.subscriber
    if subscriber.id is None:
        db.session.flush()
    announce_consent(
        action.value,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name or "",
        municipality=subscriber.municipality or "",
        newsletter=subscription.newsletter.slug,
        method=method or ctx.method,
        at=at,
    )


# What each kind of consent record announces (newsletters.events): outgoing webhooks
# listen. An enrolment on a recorded basis is a confirmed subscription to the outside.
ANNOUNCEMENTS = {
    "requested": "subscription.requested",
    "confirmed": "subscription.confirmed",
    "enrolled": "subscription.confirmed",
    "withdrawn": "subscription.unsubscribed",
}


def announce_consent(
    action: str,
    *,
    subscriber_id: int,
    email: str,
    name: str,
    municipality: str,
    newsletter: str,
    method: str,
    at: datetime,
) -> None:
    """Announce a consent record (not audited: the consent record is its own proof)."""
    events.announce(
        ANNOUNCEMENTS[action],
        f"subscriber:{subscriber_id}",
        audited=False,
        subscriber_id=subscriber_id,
        email=email,
        name=name,
        municipality=municipality,
        newsletter=newsletter,
        method=method,
        at=at.isoformat(),
    )
