"""Building editions and confirmed audiences quickly for sending tests."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from sqlalchemy import insert, select

from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import editing
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber, Subscription, SubscriptionStatus
from newsletters.timeutil import utcnow


def confirmed_audience(
    app: Flask, count: int, slug: str = "bestyrelse", prefix: str = "m"
) -> list[str]:
    """`count` subscribers confirmed for `slug` (set-based, so thousands are quick)."""
    addresses = [f"{prefix}{n:05d}@example.dk" for n in range(count)]
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        now = utcnow()
        db.session.execute(
            insert(Subscriber),
            [
                {
                    "email": a,
                    "name": "",
                    "municipality": "",
                    "role": "",
                    "locale": "da",
                    "token_version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for a in addresses
            ],
        )
        ids = db.session.scalars(select(Subscriber.id).where(Subscriber.email.in_(addresses))).all()
        db.session.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": i,
                    "newsletter_id": newsletter.id,
                    "status": SubscriptionStatus.CONFIRMED,
                    "requested_at": now,
                    "confirmed_at": now,
                }
                for i in ids
            ],
        )
        db.session.commit()
    return addresses


def draft(
    app: Flask,
    slug: str = "bestyrelse",
    subject: str = "Nyt fra bestyrelsesmødet",
    body: str = "KL's bestyrelse har i dag **besluttet** at ...",
) -> int:
    with app.app_context():
        edition = editing.create_draft(
            newsletter_slug=slug, subject=subject, body_markdown=body, created_by="test"
        )
        return edition.id


def received_counts(smtp_server, addresses=None) -> Counter:
    counts = Counter(m.rcpt_to for m in smtp_server.received)
    if addresses is not None:
        for address in addresses:
            counts.setdefault(address, 0)
    return counts
