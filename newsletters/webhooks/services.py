"""Webhook endpoints (add, list, remove, enable) and the events queued for them.

The API, the CLI and the staff page all call these functions. Events come from what the
lower layers announce (`newsletters.events`): `init_app` registers a listener that turns
each matching announcement into one delivery row per enabled endpoint that subscribed to
its type, in the caller's session, so the row commits or rolls back with the change it
reports. The worker delivers the rows (`newsletters.webhooks.delivery`).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select, update

from newsletters import events, jobs, outbound
from newsletters.extensions import db
from newsletters.timeutil import utcnow
from newsletters.webhooks.models import MAX_URL_LENGTH, WebhookDelivery, WebhookEndpoint

# The event types an endpoint may subscribe to, in the order the pages list them.
EVENT_TYPES: tuple[str, ...] = (
    "subscription.requested",
    "subscription.confirmed",
    "subscription.unsubscribed",
    "subscriber.erased",
    "bounce.recorded",
    "edition.started",
    "edition.finished",
    "edition.paused",
)

# Announcement (newsletters.events) -> event type sent. The erasure is announced as an
# action ("subscriber.erase", audited); the rest under the name they are sent as.
ANNOUNCEMENTS: dict[str, str] = {
    "subscription.requested": "subscription.requested",
    "subscription.confirmed": "subscription.confirmed",
    "subscription.unsubscribed": "subscription.unsubscribed",
    "subscriber.erase": "subscriber.erased",
    "bounce.recorded": "bounce.recorded",
    "edition.started": "edition.started",
    "edition.finished": "edition.finished",
    "edition.paused": "edition.paused",
}

# Keys of an event's data that may stay in a queued or stored payload once the person
# it is about was erased: everything else (address, name, municipality, a bounce's
# diagnostic that quotes the address) goes.
KEPT_AFTER_ERASURE = frozenset(
    {
        "subscriber_id",
        "never_again",
        "newsletter",
        "method",
        "at",
        "kind",
        "status",
        "source",
        "mail_stopped",
    }
)


class WebhookError(ValueError):
    """Input that cannot make an endpoint; the message says why (shown as it is), and
    `field` which input is at fault ("url" or "events")."""

    def __init__(self, message: object, field: str = "url") -> None:
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------- input


def check_url(url: str, *, allow_private: bool | None = None) -> str:
    """`url` if it may receive webhooks; WebhookError saying why not."""
    if allow_private is None:
        allow_private = bool(current_app.config["WEBHOOKS_ALLOW_PRIVATE"])
    if not isinstance(url, str) or not url:
        raise WebhookError(_l("Give the endpoint's URL."))
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(_l("The URL is longer than %(n)s characters.", n=MAX_URL_LENGTH))
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise WebhookError(_l("The URL may not contain spaces, line breaks or control characters."))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError(_l("The URL cannot be read.")) from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise WebhookError(_l("The URL must begin with https://."))
    if not parts.hostname:
        raise WebhookError(_l("The URL has no host name."))
    if parts.username is not None or parts.password is not None:
        raise WebhookError(_l("The URL may not carry a user name or password."))
    if port == 0:
        raise WebhookError(_l("The URL's port cannot be 0."))
    reason = outbound.host_refusal(url, allow_private=allow_private)
    if reason:
        raise WebhookError(
            _l(
                "Webhooks may only go to public addresses, not to %(reason)s "
                "(WEBHOOKS_ALLOW_PRIVATE).",
                reason=reason,
            )
        )
    return url


def parse_events(values: str | Iterable[str]) -> list[str]:
    """Event types from "a,b" or ["a", "b"], checked and without repeats."""
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise WebhookError(_l("Event names are text."), "events")
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in EVENT_TYPES:
                shown = name if name.isprintable() and len(name) <= 60 else repr(name[:60])
                raise WebhookError(
                    _l(
                        "Unknown event %(name)s; the events are: %(known)s.",
                        name=shown,
                        known=", ".join(EVENT_TYPES),
                    ),
                    "events",
                )
            if name not in names:
                names.append(name)
    if not names:
        raise WebhookError(
            _l("Choose at least one event: %(known)s.", known=", ".join(EVENT_TYPES)), "events"
        )
    return names


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# --------------------------------------------------------------------------- endpoints


def add_endpoint(
    url: str, event_types: str | Iterable[str], *, actor: events.Actor | None = None
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; (the endpoint, its secret). The secret is shown once by the
    caller: nothing shows it again. One transaction, audited (`webhook.add`)."""
    url = check_url(url)
    names = parse_events(event_types)
    secret = new_secret()
    creator = ""
    if actor is not None:
        creator = actor.via + (f":{actor.staff_id}" if actor.staff_id else "")
    endpoint = WebhookEndpoint(url=url, events=",".join(names), secret=secret, created_by=creator)
    db.session.add(endpoint)
    db.session.flush()
    events.announce(
        "webhook.add", f"webhook:{endpoint.id}", actor=actor, endpoint=url, events=",".join(names)
    )
    db.session.commit()
    return endpoint, secret


def list_endpoints() -> list[WebhookEndpoint]:
    """Every endpoint, oldest first."""
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def get_endpoint(endpoint_id: int) -> WebhookEndpoint | None:
    return db.session.get(WebhookEndpoint, endpoint_id)


def remove_endpoint(endpoint_id: int, *, actor: events.Actor | None = None) -> bool:
    """Delete an endpoint and its deliveries (queued ones are not sent); False if none."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        db.session.rollback()
        return False
    url = endpoint.url
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
    db.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    events.announce("webhook.remove", f"webhook:{endpoint_id}", actor=actor, endpoint=url)
    db.session.commit()
    db.session.expunge_all()
    return True


def enable_endpoint(endpoint_id: int, *, actor: events.Actor | None = None) -> bool:
    """Enable a disabled endpoint again; its waiting deliveries are due at once. False
    if there is no such endpoint."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        db.session.rollback()
        return False
    if endpoint.enabled:
        db.session.rollback()
        return True
    now = utcnow()
    endpoint.enabled = True
    endpoint.disabled_reason = None
    endpoint.failing_since = None
    db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.failed_at.is_(None),
        )
        .values(next_attempt_at=now, leased_until=None, leased_by=None)
        .execution_options(synchronize_session=False)
    )
    events.announce("webhook.enable", f"webhook:{endpoint_id}", actor=actor, endpoint=endpoint.url)
    jobs.queued_work()
    db.session.commit()
    return True


def disable_endpoint(endpoint_id: int, reason: str, *, actor: events.Actor | None = None) -> None:
    """Stop delivering to an endpoint (part of the caller's transaction), saying why."""
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:1000])
        .execution_options(synchronize_session=False)
    )
    events.announce(
        "webhook.disable", f"webhook:{endpoint_id}", actor=actor or events.WORKER, reason=reason
    )


def recent_deliveries(limit: int = 50, *, endpoint_id: int | None = None) -> list[WebhookDelivery]:
    """The latest deliveries (newest first), of one endpoint or all."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(db.session.scalars(query))


# --------------------------------------------------------------------------- events


def init_app(app: Flask) -> None:
    """Queue a delivery for every announcement that is a webhook event."""
    events.listen(app, _on_announcement, ANNOUNCEMENTS)


def _on_announcement(event: events.Event) -> None:
    event_type = ANNOUNCEMENTS[event.name]
    data = dict(event.data)
    subscriber_id = _subscriber_of(event)
    if event_type == "subscriber.erased":
        if subscriber_id is not None:
            scrub_subscriber(subscriber_id)
            data["subscriber_id"] = subscriber_id
        data = {key: value for key, value in data.items() if key in KEPT_AFTER_ERASURE}
    queue_event(event_type, data, subscriber_id=subscriber_id)


def _subscriber_of(event: events.Event) -> int | None:
    """The subscriber an announcement is about: its data's subscriber_id, else its
    target ("subscriber:7")."""
    value = event.data.get("subscriber_id")
    if value is None and event.target.startswith("subscriber:"):
        value = event.target.removeprefix("subscriber:")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def queue_event(
    event_type: str, data: dict[str, Any], *, subscriber_id: int | None = None
) -> str | None:
    """Queue `event_type` for every enabled endpoint that wants it, in the current
    transaction; the event's id (None when no endpoint wants it)."""
    wanted = [
        endpoint_id
        for endpoint_id, names in db.session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.events).where(
                WebhookEndpoint.enabled.is_(True)
            )
        )
        if event_type in names.split(",")
    ]
    if not wanted:
        return None
    now = utcnow()
    event_id = f"msg_{uuid.uuid4().hex}"
    payload = envelope(event_id, event_type, now.isoformat().replace("+00:00", "Z"), data)
    db.session.execute(
        WebhookDelivery.__table__.insert(),
        [
            {
                "endpoint_id": endpoint_id,
                "event_id": event_id,
                "event_type": event_type,
                "payload": payload,
                "subscriber_id": subscriber_id,
                "created_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for endpoint_id in wanted
        ],
    )
    jobs.queued_work()
    return event_id


def envelope(event_id: str, event_type: str, timestamp: str, data: dict[str, Any]) -> str:
    """The JSON body sent (and signed): id, type, timestamp, data."""
    return json.dumps(
        {"id": event_id, "type": event_type, "timestamp": timestamp, "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


def scrub_subscriber(subscriber_id: int) -> int:
    """Remove a subscriber's personal data from every stored payload about them (queued
    or sent): an erased person's address is never sent again. The number of rows."""
    rows = db.session.execute(
        select(WebhookDelivery.id, WebhookDelivery.payload).where(
            WebhookDelivery.subscriber_id == subscriber_id
        )
    ).all()
    for delivery_id, payload in rows:
        try:
            body = json.loads(payload)
            body["data"] = {
                key: value
                for key, value in (body.get("data") or {}).items()
                if key in KEPT_AFTER_ERASURE
            }
            scrubbed = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
        except (ValueError, AttributeError, TypeError):
            scrubbed = "{}"
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(payload=scrubbed)
            .execution_options(synchronize_session=False)
        )
    return len(rows)
