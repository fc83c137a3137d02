"""The intake: the form writes one row; the worker carries it out exactly once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from newsletters import jobs
from newsletters.extensions import db
from newsletters.subscriptions.models import (
    ConsentEvent,
    Subscriber,
    SubscribeRequest,
    Subscription,
)
from newsletters.timeutil import utcnow
from tests.support.flows import process_intake, queued_mails, subscribe, subscriptions_of


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_the_form_only_records_the_request(client, app):
    client.environ_base.update(REMOTE_ADDR="192.0.2.44", HTTP_USER_AGENT="Mayor's phone")
    response = subscribe(
        client,
        "A@Example.dk",
        ["momentum", "bestyrelse"],
        process=False,
        name="Anna",
        municipality="Odder",
    )
    assert response.status_code == 303
    with app.app_context():
        [row] = db.session.scalars(select(SubscribeRequest))
        assert (row.email, row.newsletters, row.name, row.municipality) == (
            "a@example.dk",
            "momentum,bestyrelse",
            "Anna",
            "Odder",
        )
        assert (row.ip, row.user_agent, row.locale) == ("192.0.2.44", "Mayor's phone", "da")
    assert _count(app, Subscriber) == 0 and queued_mails(app) == []


def test_processing_carries_out_the_request_and_removes_it(client, app):
    subscribe(client, "a@example.dk", ["momentum"], process=False)
    with app.app_context():
        posted_at = db.session.scalar(select(SubscribeRequest.requested_at))
    assert process_intake(app) == 1
    assert _count(app, SubscribeRequest) == 0
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}
    assert [m.kind for m in queued_mails(app)] == ["confirm"]
    with app.app_context():
        event = db.session.scalar(select(ConsentEvent))
        # Consent is dated when the person asked, not when the worker got to it.
        assert abs(event.at - posted_at) < timedelta(milliseconds=1)
    assert process_intake(app) == 0  # nothing is carried out twice


def test_a_failing_request_leaves_nothing_half_done_and_is_retried(client, app, monkeypatch, clock):
    # The standing clock: the retry's backoff (50 ms in tests) must not run out before
    # the assertion on a loaded machine.
    from newsletters.subscriptions import mails

    subscribe(client, "a@example.dk", ["momentum"], process=False)

    def broken(*args, **kwargs):
        raise RuntimeError("mail template missing")

    monkeypatch.setattr(mails, "queue_confirmation", broken)
    assert process_intake(app) == 0
    assert _count(app, Subscriber) == 0 and _count(app, Subscription) == 0
    with app.app_context():
        row = db.session.scalar(select(SubscribeRequest))
        assert row.attempts == 1 and "mail template missing" in row.last_error
        assert row.next_attempt_at > utcnow() and row.leased_by is None
    monkeypatch.undo()
    with app.app_context():
        db.session.execute(update(SubscribeRequest).values(next_attempt_at=utcnow()))
        db.session.commit()
    assert process_intake(app) == 1
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}


def test_a_dead_workers_requests_are_taken_over(client, app):
    subscribe(client, "a@example.dk", process=False)
    with app.app_context():
        assert jobs.claim(SubscribeRequest, "dead-worker", 10) != []
    assert process_intake(app) == 0  # still leased
    with app.app_context():
        db.session.execute(
            update(SubscribeRequest).values(leased_until=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert process_intake(app) == 1
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}


def test_many_requests_for_one_address_make_one_subscriber(client, app):
    for slugs in (["momentum"], ["kl-nyheder"], ["momentum", "bestyrelse"]):
        subscribe(client, "a@example.dk", slugs, process=False)
    assert process_intake(app) == 3
    assert _count(app, Subscriber) == 1
    assert subscriptions_of(app, "a@example.dk") == {
        "momentum": "pending",
        "kl-nyheder": "pending",
        "bestyrelse": "pending",
    }
    # One confirmation per request, each listing everything still waiting.
    assert len(queued_mails(app, kind="confirm")) == 3
