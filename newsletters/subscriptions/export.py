"""Everything stored about one subscriber, as JSON-ready data (GDPR Art. 15 and 20).

The subscriber side gives its own rows and the mail sent to the person; the features
above it that hold rows about the person (editions' deliveries, bounces) add a section of
their own, registered at start-up (`add_section` in `create_app`), since this layer may
not import them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask, current_app

from newsletters import events
from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import ConsentEvent, Subscriber
from newsletters.tokens import TokenError

# A section: (subscriber id) -> its JSON-ready rows about that subscriber.
Section = Callable[[int], Any]

_SECTIONS = "subscriptions.export_sections"


def add_section(app: Flask, key: str, section: Section) -> None:
    """Include `section(subscriber_id)` under `key` in every export of `app`."""
    app.extensions.setdefault(_SECTIONS, []).append((key, section))


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_data(subscriber_id: int, *, actor: events.Actor | None = None) -> dict[str, Any]:
    """Everything stored about one subscriber; raises TokenError if there is none.

    When staff download it (`actor`), the download is announced (audited, by the
    subscriber's id only) and committed.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise TokenError("invalid")
    data = {
        "email": subscriber.email,
        "name": subscriber.name,
        "municipality": subscriber.municipality,
        "role": subscriber.role,
        "language": subscriber.locale,
        "created_at": iso(subscriber.created_at),
        "updated_at": iso(subscriber.updated_at),
        "subscriptions": _subscriptions(subscriber),
        "mails": _mails(subscriber.id),
    }
    for key, section in current_app.extensions.get(_SECTIONS, ()):
        data[key] = section(subscriber.id)
    data["mail_stopped_at"] = iso(subscriber.hard_bounced_at)
    data["suppressed"] = suppression.is_suppressed(subscriber.email)
    if actor is not None:
        events.announce("subscriber.export", f"subscriber:{subscriber_id}", actor=actor)
        db.session.commit()
    return data


def _subscriptions(subscriber: Subscriber) -> list[dict[str, Any]]:
    subscriptions = []
    for s in sorted(subscriber.subscriptions, key=lambda s: s.newsletter.position):
        events_of = db.session.scalars(
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
                    for e in events_of
                ],
            }
        )
    return subscriptions


def _mails(subscriber_id: int) -> list[dict[str, Any]]:
    mails = db.session.scalars(
        db.select(OutboxMessage)
        .where(OutboxMessage.subscriber_id == subscriber_id)
        .order_by(OutboxMessage.id)
    )
    return [
        {
            "kind": m.kind,
            "subject": m.subject,
            "created_at": iso(m.created_at),
            "sent_at": iso(m.sent_at),
            "status": m.status.value,
        }
        for m in mails
    ]
