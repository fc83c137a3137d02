"""An edition's states and moves (newsletters/editions/states.py): every allowed move is
made by the service that makes it, every forbidden one is refused with one error, the
same everywhere (the pages, the CLI, the worker, the API's 409)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters import events, timeutil
from newsletters.editions import editing, lifecycle, states
from newsletters.editions.models import Edition, EditionStatus
from newsletters.editions.states import (
    Action,
    EditionError,
    ForbiddenTransition,
    NotEditable,
    allowed,
)
from newsletters.extensions import db
from tests.support.editions import draft

S = EditionStatus

ALLOWED = {
    (S.DRAFT, Action.SCHEDULE): S.SCHEDULED,
    (S.SCHEDULED, Action.SCHEDULE): S.SCHEDULED,
    (S.SCHEDULED, Action.UNSCHEDULE): S.DRAFT,
    (S.DRAFT, Action.START): S.SENDING,
    (S.SCHEDULED, Action.START): S.SENDING,
    (S.SENDING, Action.PAUSE): S.PAUSED,
    (S.PAUSED, Action.RESUME): S.SENDING,
    (S.SENDING, Action.FINISH): S.SENT,
    (S.SCHEDULED, Action.CANCEL): S.CANCELLED,
    (S.SENDING, Action.CANCEL): S.CANCELLED,
    (S.PAUSED, Action.CANCEL): S.CANCELLED,
    (S.DRAFT, Action.EDIT): S.DRAFT,
    (S.SCHEDULED, Action.EDIT): S.SCHEDULED,
}
EVERY = [(state, action) for state in S for action in Action]
FORBIDDEN = [pair for pair in EVERY if pair not in ALLOWED]


def test_the_table_is_the_one_written_down():
    assert states.TRANSITIONS == ALLOWED


@pytest.mark.parametrize(("state", "action"), list(ALLOWED), ids=lambda v: str(v))
def test_an_allowed_move_leads_where_it_should(state, action):
    assert allowed(state, action)
    assert allowed(state.value, action)  # as stored, as a string
    assert states.target(state, action) is ALLOWED[(state, action)]
    assert action in states.allowed_actions(state)


@pytest.mark.parametrize(("state", "action"), FORBIDDEN, ids=lambda v: str(v))
def test_a_forbidden_move_is_refused_with_one_error(state, action):
    assert not allowed(state, action)
    with pytest.raises(ForbiddenTransition) as refused:
        states.target(state, action, edition_id=7)
    error = refused.value
    assert isinstance(error, EditionError)
    assert (error.edition_id, error.status, error.action) == (7, state, action)
    assert str(error).startswith(f"edition 7 is {state.value}, ")
    assert isinstance(error, NotEditable) == (action is Action.EDIT)


def test_sent_and_cancelled_are_the_end():
    assert states.allowed_actions(S.SENT) == []
    assert states.allowed_actions(S.CANCELLED) == []


def test_the_groups_cover_every_state_once():
    assert set(S) == states.OPEN | states.IN_PROGRESS | states.FINISHED
    assert not (states.OPEN & states.IN_PROGRESS or states.IN_PROGRESS & states.FINISHED)
    assert states.states_allowing(Action.EDIT) == states.OPEN
    assert states.IN_PROGRESS | {S.SENT} == states.PUBLISHED


def test_transition_changes_only_the_state():
    class Row:
        id = 3
        status = S.PAUSED

    row = Row()
    assert states.transition(row, Action.RESUME) is S.SENDING
    assert row.status is S.SENDING
    with pytest.raises(ForbiddenTransition):
        states.transition(row, Action.RESUME)
    assert row.status is S.SENDING


# --------------------------------------------------------------------------- the services


def _put(app: Flask, edition_id: int, status: S) -> None:
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        edition.status = status
        if status is S.SCHEDULED:
            edition.scheduled_at = timeutil.utcnow() + timedelta(days=1)
        db.session.commit()


def _status(app: Flask, edition_id: int) -> S:
    with app.app_context():
        return db.session.scalar(select(Edition.status).where(Edition.id == edition_id))


def _act(edition_id: int, action: Action) -> None:
    if action is Action.SCHEDULE:
        lifecycle.schedule(edition_id, timeutil.utcnow() + timedelta(hours=2))
    elif action is Action.UNSCHEDULE:
        lifecycle.unschedule(edition_id)
    elif action is Action.START:
        lifecycle.start_send(edition_id)
    elif action is Action.PAUSE:
        lifecycle.pause(edition_id)
    elif action is Action.RESUME:
        lifecycle.resume(edition_id)
    elif action is Action.CANCEL:
        lifecycle.cancel(edition_id)
    elif action is Action.EDIT:
        editing.update_draft(edition_id, subject="Changed", body_markdown="x")
    elif action is Action.FINISH:
        lifecycle.finish_complete_editions()


@pytest.mark.parametrize(("state", "action"), EVERY, ids=lambda v: str(v))
def test_the_services_move_only_as_the_table_allows(app: Flask, state, action):
    edition_id = draft(app)
    _put(app, edition_id, state)
    with app.app_context():
        if (state, action) in ALLOWED:
            _act(edition_id, action)
        elif action is Action.FINISH:
            # The worker's bulk finish passes over what it may not finish.
            assert edition_id not in lifecycle.finish_complete_editions()
        else:
            with pytest.raises(ForbiddenTransition):
                _act(edition_id, action)
            db.session.rollback()
        db.session.remove()
    expected = ALLOWED.get((state, action), state)
    assert _status(app, edition_id) is expected


def test_the_send_announces_what_it_did(app: Flask):
    heard: list[events.Event] = []
    events.listen(app, heard.append, ["edition.started", "edition.paused", "edition.finished"])
    edition_id = draft(app, subject="Nyt fra mødet")
    with app.app_context():
        lifecycle.start_send(edition_id, actor=events.CLI)
        lifecycle.pause(edition_id, actor=events.CLI)
        lifecycle.resume(edition_id, actor=events.CLI)
        assert lifecycle.finish_complete_editions() == [edition_id]  # nobody to send to
    names = [(e.name, e.audited) for e in heard]
    assert names == [
        ("edition.started", False),
        ("edition.paused", False),
        ("edition.finished", True),
    ]
    started, paused, finished = heard
    assert started.data == {
        "edition_id": edition_id,
        "newsletter": "bestyrelse",
        "subject": "Nyt fra mødet",
        "recipients": 0,
    }
    assert started.actor == events.CLI
    assert paused.data["reason"] is None
    assert finished.data["sent"] == 0 and finished.actor == events.WORKER
