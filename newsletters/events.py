"""Announcing a change, in its own transaction, to whoever registered at start-up.

A feature says what happened (`announce("subscriber.erase", "subscriber:7", actor=...)`)
without knowing who listens. Features higher up register listeners in `create_app`: the
audit log writes an entry for every audited event, bounces and editions remove their rows of
an erased subscriber, and outgoing webhooks (later) queue a call. A listener runs at once, in
the caller's session, so the rows it writes commit or roll back with the change they report.

This is how a lower layer calls up without importing the layer above it: the one audit
convention of the product is "the service that makes a change announces it before it
commits".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, has_app_context, has_request_context, request
from flask_login import current_user


@dataclass(frozen=True)
class Actor:
    """Who caused a change: a staff member (by id), from an address, through a channel."""

    staff_id: int | None = None
    ip: str | None = None
    # "web", "cli", "worker", "api:<token name>", ...: shown in the audit entry's details.
    via: str = ""

    @classmethod
    def of_request(cls) -> Actor:
        """The signed-in staff member (if any) and client address of the current request."""
        if not has_request_context():
            return cls(via="cli")
        staff_id = current_user.id if current_user.is_authenticated else None
        return cls(staff_id=staff_id, ip=request.remote_addr, via="web")


CLI = Actor(via="cli")
WORKER = Actor(via="worker")


@dataclass(frozen=True)
class Event:
    name: str
    target: str = ""
    actor: Actor | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # False for events that only exist to let other features react (not an audit entry).
    audited: bool = True


Listener = Callable[[Event], None]


def listen(app: Flask, listener: Listener, names: Iterable[str] | None = None) -> None:
    """Call `listener(event)` for each event announced in `app` (those in `names`, or all)."""
    wanted = frozenset(names) if names is not None else None
    app.extensions.setdefault("events.listeners", []).append((wanted, listener))


def announce(
    name: str,
    target: str = "",
    /,
    *,
    actor: Actor | None = None,
    audited: bool = True,
    **data: Any,
) -> Event:
    """Tell every listener that `name` happened to `target`, inside the current transaction.

    Call it before the commit of the change: a listener that fails rolls the change back
    with it, which is the point (no change without its audit entry). `name` and `target`
    are positional only, so the data may have keys of those names (a subscriber's name).
    """
    event = Event(name=name, target=target, actor=actor, data=data, audited=audited)
    if has_app_context():
        for wanted, listener in list(current_app.extensions.get("events.listeners", ())):
            if wanted is None or name in wanted:
                listener(event)
    return event
