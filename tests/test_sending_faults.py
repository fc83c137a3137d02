"""Sending against a misbehaving SMTP server: nothing lost, nothing sent twice."""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa

from newsletters.editions import sending
from newsletters.editions.models import Delivery
from newsletters.extensions import db
from newsletters.timeutil import utcnow
from tests.support.editions import confirmed_audience, draft, received_counts

pytestmark = pytest.mark.e2e


def _send_until_done(app, edition_id: int, rounds: int = 40) -> sending.Progress:
    with app.app_context():
        for _ in range(rounds):
            sending.send_due("fault-test-worker")
            progress = sending.progress(edition_id)
            if progress.status != "sending":
                break
            # Make retried deliveries due at once (backoff is tested elsewhere).
            db.session.execute(sa.update(Delivery).values(next_attempt_at=utcnow()))
            db.session.commit()
        db.session.remove()
        return progress


@pytest.mark.parametrize(
    ("pipelining", "connections"),
    [(True, 1), (False, 1), (True, 3)],
    ids=["pipelined", "one-command-at-a-time", "three-lanes"],
)
def test_random_421_451_and_dropped_connections(make_app, smtp_server, pipelining, connections):
    smtp_server.handler.pipelining = pipelining
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        SEND_PAUSE_AFTER_FAILURES=0,
        SEND_MAX_PER_CONNECTION=7,
        SEND_CONNECTIONS=connections,
        SEND_BATCH_SIZE=15,
    )
    audience = confirmed_audience(app, 120)
    chance = random.Random(8058)

    def answer(address):
        roll = chance.random()
        if roll < 0.08:
            return "451 4.3.0 temporary local problem"
        if roll < 0.12:
            return "421 4.7.0 too busy, closing"
        return None

    smtp_server.handler.answer = answer
    original = smtp_server.handler.handle_DATA

    async def sometimes_drop(server, session, envelope):
        if chance.random() < 0.05:
            # Gone before the message is accepted: never stored, the sender must retry.
            server.transport.close()
            return "421 4.4.2 connection dropped"
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = sometimes_drop
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
    progress = _send_until_done(app, edition_id)
    assert progress.status == "sent", progress
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}
    assert progress.sent == 120 and progress.failed == 0


def test_server_down_delays_the_send_and_loses_nothing(make_app, smtp_server):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, SEND_PAUSE_AFTER_FAILURES=3)
    audience = confirmed_audience(app, 20)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
    smtp_server.stop()
    try:
        with app.app_context():
            for _ in range(5):
                stats = sending.send_due("fault-test-worker")
                assert stats.connection_lost and stats.sent == 0
            progress = sending.progress(edition_id)
            # Delayed, not failed, not paused: a server that is away is not a bad address.
            assert progress.status == "sending"
            assert progress.failed == 0 and progress.remaining == 20
            db.session.remove()
    finally:
        smtp_server.restart()
    progress = _send_until_done(app, edition_id)
    assert progress.status == "sent"
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}


def test_concurrent_workers_send_each_recipient_once(make_app, smtp_server):
    import threading

    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, SEND_BATCH_SIZE=10)
    audience = confirmed_audience(app, 150)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)

    def work(name: str) -> None:
        with app.app_context():
            sending.send_due(name)
            db.session.remove()

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}
    with app.app_context():
        progress = sending.progress(edition_id)
    assert progress.status == "sent" and progress.possible_duplicates == 0


def test_sending_lanes_send_each_recipient_once_and_share_the_rate_limit(make_app, smtp_server):
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        SEND_CONNECTIONS=3,
        SEND_BATCH_SIZE=10,
        SEND_RATE_PER_SECOND=50,
    )
    audience = confirmed_audience(app, 90)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
        started = time.monotonic()
        stats = sending.send_due("lanes")
        elapsed = time.monotonic() - started
        progress = sending.progress(edition_id)
        lanes = set(db.session.scalars(sa.select(Delivery.leased_by).distinct()))
        db.session.remove()
    assert stats.sent == 90
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}
    assert progress.status == "sent" and progress.possible_duplicates == 0
    # Three lanes, each a worker of its own, claiming their own batches.
    assert lanes <= {"lanes/1", "lanes/2", "lanes/3"} and len(lanes) >= 2
    # One bucket for all: a burst of 50, then 50 a second, so the other 40 take 0.8 s.
    # (A bucket per lane would have let all 90 go at once.)
    assert elapsed >= 0.7
