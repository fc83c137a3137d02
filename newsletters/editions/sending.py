"""Sending an edition to everyone confirmed, exactly once, surviving crashes: the interface.

The work is in three modules, each read top to bottom:

- `lifecycle`: start (one INSERT ... SELECT of the deliveries), schedule, pause, resume,
  cancel, finish, and the progress of a send;
- `delivery`: the worker's loop, which claims due deliveries, marks each in flight in a
  committed transaction before its message is handed over, and records the outcome;
- `messages`: a recipient's message, assembled from the edition rendered once per
  language, and its SMTP conversation.

What the rest of the house calls is named here.
"""

from __future__ import annotations

from newsletters.editions.delivery import SendStats, send_due
from newsletters.editions.drafts import ItemInput
from newsletters.editions.lifecycle import (
    Progress,
    cancel,
    pause,
    progress,
    recipients_count,
    resume,
    schedule,
    start_scheduled,
    start_send,
    unschedule,
)
from newsletters.editions.states import EditionError, ForbiddenTransition

__all__ = [
    "EditionError",
    "ForbiddenTransition",
    "ItemInput",
    "Progress",
    "SendStats",
    "cancel",
    "pause",
    "progress",
    "recipients_count",
    "resume",
    "schedule",
    "send_due",
    "start_scheduled",
    "start_send",
    "unschedule",
]
