"""A subscriber's deliveries: deleted when the subscriber is erased, included in their
export (the editions they received).

Registered in `create_app`: the subscriber side announces the erasure and asks for export
sections without knowing editions exist.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import delete, select

from newsletters import events
from newsletters.catalog.models import Newsletter
from newsletters.editions import summaries
from newsletters.editions.models import Delivery, Edition
from newsletters.extensions import db
from newsletters.subscriptions import erasure, export


def init_app(app: Flask) -> None:
    events.listen(app, _forget, {erasure.ERASE})
    export.add_section(app, "editions_received", _editions_received)


def _forget(event: events.Event) -> None:
    """Delete the erased subscriber's deliveries, in the erasure's transaction, and take
    them off the figures kept of finished sends."""
    subscriber_id = event.data.get("subscriber_id")
    if subscriber_id is not None:
        summaries.forget(subscriber_id)
        db.session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber_id))


def _editions_received(subscriber_id: int) -> list[dict[str, Any]]:
    rows = db.session.execute(
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
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    )
    return [
        {
            "newsletter": slug,
            "edition": edition_id,
            "subject": subject,
            "status": status.value,
            "sent_at": export.iso(sent_at),
            "attempts": attempts,
            "last_error": last_error,
        }
        for edition_id, slug, subject, status, sent_at, attempts, last_error in rows
    ]
