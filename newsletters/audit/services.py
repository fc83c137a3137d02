"""Writing and reading the audit log.

Features do not call this module: they announce their changes (`newsletters.events`), and
`init_app` makes every audited event an entry in the same transaction, so an entry exists
exactly when the action it describes committed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from newsletters import events
from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from newsletters.staff.models import Staff


def init_app(app: Flask) -> None:
    """Write an audit entry for every audited event announced in `app`."""
    events.listen(app, _record_event)


def _record_event(event: events.Event) -> None:
    if not event.audited:
        return
    actor = event.actor or events.Actor()
    details = event.data
    if actor.via.startswith("api:") and "api_token" not in details:
        # A change made through the REST API names the token that made it.
        details = {**details, "api_token": actor.via.removeprefix("api:")}
    record(actor.staff_id, event.name, event.target, details, actor.ip)


def record(
    actor_id: int | None,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """Add an audit entry to the current transaction (committed with the action)."""
    actor_email = ""
    if actor_id is not None:
        actor_email = db.session.scalar(select(Staff.email).where(Staff.id == actor_id)) or ""
    entry = AuditEntry(
        actor_id=actor_id,
        actor_email=actor_email,
        action=action[:60],
        target=target[:200],
        details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
        ip=(ip or None) and ip[:64],
    )
    db.session.add(entry)
    return entry


def record_now(
    actor_id: int | None,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Record and commit at once: for actions whose own transaction has already ended
    (a service that committed, a download that is streamed)."""
    record(actor_id, action, target, details, ip)
    db.session.commit()


@dataclass
class AuditPage:
    entries: list[AuditEntry]
    page: int
    pages: int
    total: int
    actions: list[str]


def search(
    *,
    action: str = "",
    actor: str = "",
    target: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1,
    per_page: int = 50,
) -> AuditPage:
    """Audit entries, newest first, filtered; for the admins' audit page."""
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(AuditEntry.actor_email.contains(actor.strip().lower()))
    if target:
        query = query.where(AuditEntry.target == target.strip())
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    entries = list(
        db.session.scalars(
            query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    actions = list(
        db.session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
    )
    return AuditPage(entries=entries, page=page, pages=pages, total=total, actions=actions)


def details_of(entry: AuditEntry) -> dict[str, Any]:
    try:
        value = json.loads(entry.details or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
