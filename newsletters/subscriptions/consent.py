"""The consent texts shown next to the subscribe form, by version, and the announcement
of every consent record.

Append a new version when the wording changes; never edit a published one, because
every consent record points at the version its subscriber saw.
"""

from __future__ import annotations

from datetime import datetime

from newsletters import events

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
