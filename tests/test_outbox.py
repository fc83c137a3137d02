"""The durable outbox: written with the action, sent by a worker, retried, never lost."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.models import OutboxMessage, OutboxStatus
from newsletters.subscriptions.models import Subscriber
from newsletters.timeutil import utcnow
from newsletters.worker import Worker
from tests.conftest import deliver
from tests.support.flows import queued_mails, subscribe
from tests.support.smtp import free_port


def _statuses(app) -> list[str]:
    return [m.status.value for m in queued_mails(app)]


def test_subscribe_does_not_wait_for_the_mail_server(make_app, clock):
    # The standing clock keeps the 50 ms test backoff from running out before the assert.
    # No SMTP server listens on this port: the request must still succeed at once.
    from tests.conftest import ALLOWED_SMTP_PORTS

    port = free_port()
    ALLOWED_SMTP_PORTS.add(port)
    try:
        app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
        assert subscribe(app.test_client(), "a@example.dk").status_code == 303
        assert _statuses(app) == ["queued"]
        stats = deliver(app)
        assert stats.connection_lost and stats.sent == 0
        [message] = queued_mails(app)
        assert message.status == OutboxStatus.QUEUED
        assert message.next_attempt_at > utcnow()
        assert "connect" in message.last_error
    finally:
        ALLOWED_SMTP_PORTS.discard(port)


def test_mail_is_written_only_if_the_action_commits(app):
    with app.test_request_context():
        from newsletters.mailing.compose import RenderedMail

        outbox.enqueue(kind="confirm", to="a@example.dk", mail=RenderedMail("s", "t", "<p>h</p>"))
        db.session.rollback()
    assert queued_mails(app) == []


def test_worker_sends_queued_mail_to_the_smtp_server(mail_app, smtp_server):
    subscribe(mail_app.test_client(), "a@example.dk")
    assert deliver(mail_app).sent == 1
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_to == "a@example.dk"
    assert received.mail_from == "nyhedsbreve@kl.dk"
    assert _statuses(mail_app) == ["sent"]
    assert deliver(mail_app).handled == 0  # nothing is sent twice


def test_without_mail_server_mail_is_captured_locally(app):
    subscribe(app.test_client(), "a@example.dk")
    assert deliver(app).captured == 1
    assert _statuses(app) == ["captured"]


def test_temporary_failure_is_retried_with_growing_backoff(mail_app, smtp_server, clock):
    # The standing clock: the delays are compared with the time the worker saw, not with
    # however long a loaded machine took to get to the assertion.
    answers = iter(["451 4.3.0 try later", "421 4.7.0 busy", None])
    smtp_server.handler.answer = lambda address: next(answers)
    subscribe(mail_app.test_client(), "a@example.dk")
    assert deliver(mail_app).retried == 1
    [first] = queued_mails(mail_app)
    assert first.status == OutboxStatus.QUEUED and first.attempts == 1
    assert "451" in first.last_error
    first_delay = first.next_attempt_at - utcnow()
    # Not due yet: a worker tick now sends nothing.
    assert deliver(mail_app).handled == 0
    _make_due(mail_app)
    assert deliver(mail_app).retried == 1
    [second] = queued_mails(mail_app)
    assert second.attempts == 2
    assert second.next_attempt_at - utcnow() > first_delay - timedelta(milliseconds=30)
    _make_due(mail_app)
    assert deliver(mail_app).sent == 1
    assert len(smtp_server.wait_for(1)) == 1
    assert _statuses(mail_app) == ["sent"]


def test_permanent_failure_is_recorded_and_not_retried(mail_app, smtp_server):
    smtp_server.handler.answer = lambda address: "550 5.1.1 no such user"
    subscribe(mail_app.test_client(), "gone@example.dk")
    assert deliver(mail_app).failed == 1
    [message] = queued_mails(mail_app)
    assert message.status == OutboxStatus.FAILED
    assert message.last_error.startswith("550")
    _make_due(mail_app)
    assert deliver(mail_app).handled == 0


def test_server_down_then_back_loses_nothing(make_app, smtp_server):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    client = app.test_client()
    for n in range(5):
        subscribe(client, f"m{n}@example.dk")
    smtp_server.stop()
    try:
        stats = deliver(app)
        assert stats.connection_lost and stats.sent == 0
        assert _statuses(app) == ["queued"] * 5
    finally:
        smtp_server.restart()
    _make_due(app)
    assert deliver(app).sent == 5
    assert sorted(m.rcpt_to for m in smtp_server.wait_for(5)) == [
        f"m{n}@example.dk" for n in range(5)
    ]


def test_a_dead_workers_lease_is_taken_over(mail_app, smtp_server):
    subscribe(mail_app.test_client(), "a@example.dk")
    with mail_app.app_context():
        assert outbox.claim_due("dead-worker", 10) != []
    assert deliver(mail_app).handled == 0  # leased to the dead worker
    with mail_app.app_context():
        db.session.execute(
            update(OutboxMessage).values(leased_until=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert deliver(mail_app).sent == 1
    assert len(smtp_server.wait_for(1)) == 1


def test_concurrent_workers_send_each_message_once(make_app, smtp_server):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, WORKER_BATCH_SIZE=3)
    client = app.test_client()
    addresses = [f"w{n}@example.dk" for n in range(30)]
    for address in addresses:
        subscribe(client, address)
    workers = [Worker(app, worker_id=f"w{n}") for n in range(3)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    mails = smtp_server.wait_for(30)
    assert sorted(m.rcpt_to for m in mails) == sorted(addresses)
    assert set(_statuses(app)) == {"sent"}


def test_in_process_worker_wakes_on_new_mail(make_app, smtp_server):
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        WORKER_IN_PROCESS=True,
        WORKER_POLL_SECONDS=30,
    )
    client = app.test_client()
    subscribe(client, "a@example.dk")  # the first request starts the worker thread
    [mail] = smtp_server.wait_for(1, timeout=5)
    assert mail.rcpt_to == "a@example.dk"


def test_deleted_subscriber_mail_is_not_sent(mail_app, smtp_server):
    subscribe(mail_app.test_client(), "a@example.dk")
    with mail_app.app_context():
        from newsletters.subscriptions.erasure import erase

        erase(db.session.scalar(select(Subscriber.id)))
    assert deliver(mail_app).handled == 0
    assert smtp_server.received == []


def _make_due(app) -> None:
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()


def test_idn_address_is_sent_in_its_ascii_form(mail_app, smtp_server):
    subscribe(mail_app.test_client(), "borgmester@ærø.dk")
    assert deliver(mail_app).sent == 1
    [received] = smtp_server.wait_for(1)
    ascii_form = "borgmester@" + "ærø.dk".encode("idna").decode()  # xn--r-3fa9c.dk
    assert received.rcpt_to == ascii_form
    assert received.message["To"] == ascii_form
    # People see and manage the address as they wrote it.
    with mail_app.app_context():
        assert db.session.scalar(select(Subscriber.email)) == "borgmester@ærø.dk"


def test_a_message_that_cannot_be_sent_does_not_block_the_others(mail_app, smtp_server):
    client = mail_app.test_client()
    for address in ("a@example.dk", "b@example.dk", "c@example.dk"):
        subscribe(client, address)
    with mail_app.app_context():
        poisoned = db.session.scalar(
            select(OutboxMessage).where(OutboxMessage.to_address == "b@example.dk")
        )
        poisoned.raw = poisoned.raw + "ø"  # not 7-bit: cannot be encoded for SMTP
        db.session.commit()
    stats = deliver(mail_app)
    assert (stats.sent, stats.failed) == (2, 1)
    assert sorted(m.rcpt_to for m in smtp_server.wait_for(2)) == ["a@example.dk", "c@example.dk"]
    [failed] = [m for m in queued_mails(mail_app) if m.status == OutboxStatus.FAILED]
    assert "unexpected error" in failed.last_error
