"""An edition's states and the moves between them, defined once.

    draft --schedule--> scheduled --unschedule--> draft
    draft, scheduled --start--> sending --pause--> paused --resume--> sending
    sending --finish--> sent
    scheduled, sending, paused --cancel--> cancelled
    draft, scheduled --edit--> (the same state: the content changes, not the state)

The staff pages, the CLI, the worker and the digests ask this module what an edition may
do; the services move an edition only through `transition`, so a forbidden move is one
error everywhere (`ForbiddenTransition`, which the API answers with 409).
"""

from __future__ import annotations

import enum
from typing import Protocol


class EditionStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class _HasState(Protocol):
    """An edition, as far as its state goes (models.Edition)."""

    id: int
    status: EditionStatus


class EditionError(ValueError):
    """The edition cannot do what was asked (wrong state, unknown id, bad input)."""


class Action(enum.StrEnum):
    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    FINISH = "finish"
    EDIT = "edit"


_DRAFT, _SCHEDULED = EditionStatus.DRAFT, EditionStatus.SCHEDULED
_SENDING, _PAUSED = EditionStatus.SENDING, EditionStatus.PAUSED
_SENT, _CANCELLED = EditionStatus.SENT, EditionStatus.CANCELLED

# (state, action) -> the state after it. Anything not here is forbidden.
TRANSITIONS: dict[tuple[EditionStatus, Action], EditionStatus] = {
    (_DRAFT, Action.SCHEDULE): _SCHEDULED,
    (_SCHEDULED, Action.SCHEDULE): _SCHEDULED,  # a new time
    (_SCHEDULED, Action.UNSCHEDULE): _DRAFT,
    (_DRAFT, Action.START): _SENDING,
    (_SCHEDULED, Action.START): _SENDING,
    (_SENDING, Action.PAUSE): _PAUSED,
    (_PAUSED, Action.RESUME): _SENDING,
    (_SENDING, Action.FINISH): _SENT,
    (_SCHEDULED, Action.CANCEL): _CANCELLED,
    (_SENDING, Action.CANCEL): _CANCELLED,
    (_PAUSED, Action.CANCEL): _CANCELLED,
    (_DRAFT, Action.EDIT): _DRAFT,
    (_SCHEDULED, Action.EDIT): _SCHEDULED,
}

# The groups the pages show editions in.
OPEN = frozenset({_DRAFT, _SCHEDULED})  # still being written; may change
IN_PROGRESS = frozenset({_SENDING, _PAUSED})  # being sent
FINISHED = frozenset({_SENT, _CANCELLED})  # the archive
# Subscribers have (or are getting) it: its public page exists.
PUBLISHED = frozenset({_SENDING, _PAUSED, _SENT})

# How a refusal reads, per action (the CLI and the pages show it).
_REFUSED = {
    Action.SCHEDULE: "it cannot be scheduled",
    Action.UNSCHEDULE: "not scheduled",
    Action.START: "it cannot be sent",
    Action.PAUSE: "not sending",
    Action.RESUME: "not paused",
    Action.CANCEL: "it cannot be cancelled",
    Action.FINISH: "not sending",
    Action.EDIT: "it cannot be changed",
}


class ForbiddenTransition(EditionError):
    """The edition's state does not allow the action (a conflict, not bad input)."""

    def __init__(self, edition_id: int | None, status: EditionStatus, action: Action) -> None:
        super().__init__(f"edition {edition_id} is {status.value}, {_REFUSED[action]}")
        self.edition_id = edition_id
        self.status = status
        self.action = action


class NotEditable(ForbiddenTransition):
    """The edition is being sent or has been: it can no longer be changed."""


def allowed(state: EditionStatus | str, action: Action) -> bool:
    """Whether an edition in `state` may do `action`."""
    return (EditionStatus(state), action) in TRANSITIONS


def allowed_actions(state: EditionStatus | str) -> list[Action]:
    """Every action an edition in `state` may do, in the order of `Action`."""
    return [action for action in Action if allowed(state, action)]


def states_allowing(action: Action) -> frozenset[EditionStatus]:
    """The states from which `action` is allowed (for a bulk UPDATE's WHERE)."""
    return frozenset(state for state, a in TRANSITIONS if a is action)


def target(state: EditionStatus | str, action: Action, *, edition_id: int | None = None):
    """The state after `action`; ForbiddenTransition if it is not allowed."""
    state = EditionStatus(state)
    after = TRANSITIONS.get((state, action))
    if after is None:
        refusal = NotEditable if action is Action.EDIT else ForbiddenTransition
        raise refusal(edition_id, state, action)
    return after


def check(edition: _HasState, action: Action) -> None:
    """Raise ForbiddenTransition unless `edition` may do `action` now."""
    target(edition.status, action, edition_id=edition.id)


def transition(edition: _HasState, action: Action) -> EditionStatus:
    """Move `edition` (held locked by the caller) by `action`; its new state.

    Changes only the state: the service that calls it sets the times and counts that go
    with the move, and commits.
    """
    edition.status = target(edition.status, action, edition_id=edition.id)
    return edition.status
