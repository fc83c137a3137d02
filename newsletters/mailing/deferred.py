"""Mails whose bytes are written when they are sent, not when they are queued.

An import that invites 100 000 people would store 100 000 whole messages of 6.7 kB (670
MB written in the import's transaction, most of its time). Instead each outbox row holds
what is personal in it (`OutboxMessage.fills`, JSON: the person's link key, language,
the Date, Message-ID and MIME boundary) and the feature that queued it registers, at
start-up, the composer that writes the message from them (`register`). The row is still
written in the transaction of the action that causes it, so the mail exists exactly when
the action committed; only the rendering moves to the worker.

A composer must give the same message for a row on every call (a retry sends the same
message): what would vary between calls (Date, Message-ID, boundary) is in the fills;
only the time inside a link's signature is that of the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app

# (an OutboxMessage) -> its message. Not imported here: the model reads its message
# through this module.
Composer = Callable[[Any], str]

_EXTENSION = "newsletters.outbox_composers"


def register(app: Flask, kind: str, composer: Composer) -> None:
    """Write outbox rows of `kind` that have fills (and no raw) with `composer`."""
    app.extensions.setdefault(_EXTENSION, {})[kind] = composer


def compose(message: Any) -> str:
    """The message of a row that holds fills, written by its kind's composer."""
    composer = current_app.extensions.get(_EXTENSION, {}).get(message.kind)
    if composer is None or message.fills is None:
        raise LookupError(f"outbox {message.id}: no message and no composer for {message.kind!r}")
    return composer(message)
