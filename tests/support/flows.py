"""Steps that many tests take: subscribing through the form, reading queued mail."""

from __future__ import annotations

import email
import email.policy
import re

from flask import Flask
from flask.testing import FlaskClient

from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions.intake import process_subscribe_requests
from newsletters.subscriptions.models import Subscriber, Subscription
from tests.support.pages import csrf_token


def subscribe(
    client: FlaskClient,
    address: str,
    newsletters: list[str] | tuple[str, ...] = ("momentum",),
    *,
    process: bool = True,
    **fields: str,
):
    """Fill in and post the front-page form as a browser would (with its CSRF token),
    then let the worker carry out the request (unless `process` is False)."""
    token = csrf_token(client.get("/").data)
    data = {"csrf_token": token, "email": address, "newsletters": list(newsletters)}
    data.update(fields)
    response = client.post("/", data=data)
    if process:
        process_intake(client.application)
    return response


def process_intake(app: Flask) -> int:
    """Run the worker's intake job once: posted forms become subscriptions and mail."""
    with app.app_context():
        done = process_subscribe_requests("test-worker")
        db.session.remove()
        return done


def queued_mails(app: Flask, address: str | None = None, kind: str | None = None):
    with app.app_context():
        query = db.select(OutboxMessage).order_by(OutboxMessage.id)
        if address:
            query = query.where(OutboxMessage.to_address == address)
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def mail_text(message: OutboxMessage) -> str:
    parsed = email.message_from_string(message.raw, policy=email.policy.default)
    for part in parsed.walk():
        if part.get_content_type() == "text/plain":
            return part.get_content()
    raise AssertionError("no text part")


def link_in(message: OutboxMessage, prefix: str) -> str:
    """The path (with query) of the first link in the mail whose path starts with prefix."""
    match = re.search(r"https?://[^/\s]+(" + re.escape(prefix) + r"[^\s]*)", mail_text(message))
    if not match:
        raise AssertionError(f"no {prefix} link in mail {message.kind}")
    return match.group(1)


def header(message: OutboxMessage, name: str) -> str | None:
    return email.message_from_string(message.raw, policy=email.policy.default)[name]


def subscriptions_of(app: Flask, address: str) -> dict[str, str]:
    """{newsletter slug: status} for one address."""
    with app.app_context():
        subscriber = db.session.scalar(db.select(Subscriber).where(Subscriber.email == address))
        if subscriber is None:
            return {}
        rows = db.session.scalars(
            db.select(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
        return {s.newsletter.slug: s.status.value for s in rows}


def confirmed_subscriber(client: FlaskClient, app: Flask, address: str, newsletters=("momentum",)):
    """Subscribe and confirm through the real pages; returns the confirm path used."""
    subscribe(client, address, newsletters)
    [mail] = queued_mails(app, address, kind="confirm")[-1:]
    path = link_in(mail, "/confirm/")
    page = client.get(path)
    client.post(path, data={"csrf_token": csrf_token(page.data)})
    assert set(subscriptions_of(app, address).values()) == {"confirmed"}
    return path
