"""A subscriber's bounces: deleted when the subscriber is erased, included in their export.

Registered in `create_app`: the subscriber side announces the erasure and asks for export
sections without knowing bounces exist.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import delete, select

from newsletters import events
from newsletters.bounces.models import Bounce
from newsletters.extensions import db
from newsletters.subscriptions import erasure, export


def init_app(app: Flask) -> None:
    events.listen(app, _forget, {erasure.ERASE})
    export.add_section(app, "bounces", _bounces_of)


def _forget(event: events.Event) -> None:
    """Delete the erased subscriber's bounces, in the erasure's transaction."""
    subscriber_id = event.data.get("subscriber_id")
    if subscriber_id is not None:
        db.session.execute(delete(Bounce).where(Bounce.subscriber_id == subscriber_id))


def _bounces_of(subscriber_id: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": b.kind.value,
            "status": b.status,
            "diagnostic": b.diagnostic,
            "source": b.source,
            "at": export.iso(b.at),
        }
        for b in db.session.scalars(
            select(Bounce).where(Bounce.subscriber_id == subscriber_id).order_by(Bounce.id)
        )
    ]
