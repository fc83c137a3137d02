"""Editions: compose, start a send, deliver to everyone confirmed exactly once."""

from __future__ import annotations

import email
import email.policy
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, insert, select

from newsletters.editions import sending
from newsletters.editions.models import Delivery, DeliveryStatus, Edition, EditionStatus
from newsletters.editions.rendering import markdown_to_html
from newsletters.extensions import db
from newsletters.subscriptions.erasure import erase
from newsletters.subscriptions.models import Subscriber
from newsletters.timeutil import utcnow
from tests.support.editions import confirmed_audience, draft, received_counts
from tests.support.flows import subscribe, subscriptions_of


def _send(app, **kwargs) -> sending.SendStats:
    with app.app_context():
        stats = sending.send_due("test-worker", **kwargs)
        db.session.remove()
        return stats


def _start(app, edition_id: int) -> int:
    with app.app_context():
        return sending.start_send(edition_id)


def _progress(app, edition_id: int) -> sending.Progress:
    with app.app_context():
        return sending.progress(edition_id)


def test_cli_creates_a_draft_and_prints_its_id_last(runner, app, tmp_path):
    body = tmp_path / "body.md"
    body.write_text("Bestyrelsen har **vedtaget** budgettet.\n", encoding="utf-8")
    result = runner.invoke(
        args=[
            "editions",
            "create",
            "--newsletter",
            "bestyrelse",
            "--subject",
            "Nyt fra KL's bestyrelse",
            "--body-file",
            str(body),
        ]
    )
    assert result.exit_code == 0, result.output
    edition_id = int(result.output.strip().splitlines()[-1])
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        assert (edition.status, edition.newsletter.slug) == (EditionStatus.DRAFT, "bestyrelse")
    bad = runner.invoke(
        args=[
            "editions",
            "create",
            "--newsletter",
            "nope",
            "--subject",
            "x",
            "--body-file",
            str(body),
        ]
    )
    assert bad.exit_code == 1 and "no newsletter 'nope'" in bad.output


def test_start_creates_one_delivery_per_confirmed_subscriber(client, app):
    audience = confirmed_audience(app, 25)
    subscribe(client, "pending@example.dk", ["bestyrelse"])  # not confirmed: not a recipient
    confirmed_audience(app, 5, slug="momentum", prefix="other")  # another newsletter
    edition_id = draft(app)
    assert _start(app, edition_id) == len(audience)
    with app.app_context():
        assert db.session.scalar(select(func.count(Delivery.id))) == 25
        assert db.session.get(Edition, edition_id).status == EditionStatus.SENDING
        with pytest.raises(sending.EditionError, match="cannot be sent"):
            sending.start_send(edition_id)


def test_everyone_confirmed_gets_the_edition_once(mail_app, smtp_server):
    audience = confirmed_audience(mail_app, 40)
    edition_id = draft(mail_app)
    _start(mail_app, edition_id)
    stats = _send(mail_app)
    assert stats.sent == 40
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}
    assert smtp_server.handler.rejected == []
    progress = _progress(mail_app, edition_id)
    assert (progress.status, progress.sent, progress.remaining) == ("sent", 40, 0)
    assert _send(mail_app).handled == 0


def test_each_message_meets_invariant_8_and_its_links_work(mail_app, smtp_server):
    [address] = confirmed_audience(mail_app, 1)
    edition_id = draft(mail_app, body="Beslutning om **økonomiaftalen** og " + "æøå " * 400)
    _start(mail_app, edition_id)
    _send(mail_app)
    [mail] = smtp_server.wait_for(1)
    raw = mail.raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = mail.message
    for name in ("Date", "Message-ID", "From", "To", "Subject", "List-Id"):
        assert message[name], name
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Subject"] == "Nyt fra bestyrelsesmødet"
    assert message.get_content_type() == "multipart/alternative"
    text, html = mail.text, mail.html
    assert "økonomiaftalen" in text and "<strong>økonomiaftalen</strong>" in html
    assert mail_app.config["CONTACT_LINE"] in text and mail_app.config["CONTACT_LINE"] in html
    # The personal links, decoded from quoted-printable, are the subscriber's own.
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert unsubscribe in text and unsubscribe in html
    manage = mail.link("/manage/")
    client = mail_app.test_client(use_cookies=False)
    assert address in client.get(urlsplit(manage).path).get_data(as_text=True)
    client.post(urlsplit(unsubscribe).path, data={"List-Unsubscribe": "One-Click"})
    assert subscriptions_of(mail_app, address) == {"bestyrelse": "unsubscribed"}


def test_bulk_messages_decode_to_the_preview(mail_app, smtp_server):
    """The fast per-recipient assembly gives exactly what the normal renderer gives."""
    confirmed_audience(mail_app, 1)
    edition_id = draft(mail_app, body="Linje med = og æ\t\nTom linje følger  \n\n" + "x" * 300)
    _start(mail_app, edition_id)
    _send(mail_app)
    [mail] = smtp_server.wait_for(1)
    with mail_app.test_request_context():
        from newsletters.editions.rendering import render_edition

        message = mail.message
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        manage = mail.link("/manage/")
        expected = render_edition(
            db.session.get(Edition, edition_id), manage_url=manage, unsubscribe_url=unsubscribe
        )
    assert mail.text.replace("\r\n", "\n").rstrip("\n") == expected.text.rstrip("\n")
    assert mail.html.replace("\r\n", "\n").rstrip("\n") == expected.html.rstrip("\n")


def test_markdown_is_sanitised():
    html = markdown_to_html(
        "<script>alert(1)</script>\n\n[klik](javascript:alert(1)) "
        '<a href="https://kl.dk" onclick="x()">KL</a> <img src=x onerror=alert(1)>'
    )
    assert "<script" not in html and "javascript:" not in html
    assert "onclick" not in html and "onerror" not in html and "<img" not in html
    assert 'href="https://kl.dk"' in html


def test_an_unsubscribe_during_the_send_is_honoured_before_the_next_message(mail_app, smtp_server):
    audience = confirmed_audience(mail_app, 10)
    edition_id = draft(mail_app)
    _start(mail_app, edition_id)
    leaving = audience[5]
    original = smtp_server.handler.handle_DATA

    async def unsubscribe_after_first(server, session, envelope):
        reply = await original(server, session, envelope)
        if len(smtp_server.received) == 1:
            with mail_app.app_context():
                from newsletters.subscriptions.consent import RequestContext
                from newsletters.subscriptions.preferences import unsubscribe_subscriber

                subscriber_id = db.session.scalar(
                    select(Subscriber.id).where(Subscriber.email == leaving)
                )
                unsubscribe_subscriber(subscriber_id, newsletter_ids=None, ctx=RequestContext())
                db.session.remove()
        return reply

    smtp_server.handler.handle_DATA = unsubscribe_after_first
    stats = _send(mail_app)
    assert (stats.sent, stats.skipped) == (9, 1)
    assert leaving not in received_counts(smtp_server)
    assert _progress(mail_app, edition_id).counts["skipped"] == 1


def test_pause_stops_before_the_next_message_and_resume_finishes(mail_app, smtp_server):
    audience = confirmed_audience(mail_app, 10)
    edition_id = draft(mail_app)
    _start(mail_app, edition_id)
    original = smtp_server.handler.handle_DATA

    async def pause_after_three(server, session, envelope):
        reply = await original(server, session, envelope)
        if len(smtp_server.received) == 3:
            with mail_app.app_context():
                sending.pause(edition_id)
                db.session.remove()
        return reply

    smtp_server.handler.handle_DATA = pause_after_three
    _send(mail_app)
    assert len(smtp_server.received) == 3
    assert _progress(mail_app, edition_id).status == "paused"
    assert _send(mail_app).handled == 0
    smtp_server.handler.handle_DATA = original
    with mail_app.app_context():
        sending.resume(edition_id)
    _send(mail_app)
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}
    assert _progress(mail_app, edition_id).status == "sent"


def test_cancel_stops_the_rest(mail_app, smtp_server):
    confirmed_audience(mail_app, 10)
    edition_id = draft(mail_app)
    _start(mail_app, edition_id)
    with mail_app.app_context():
        assert sending.cancel(edition_id) == 10
    assert _send(mail_app).handled == 0
    assert smtp_server.received == []
    assert _progress(mail_app, edition_id).status == "cancelled"


def test_temporary_failures_are_retried_and_everyone_gets_it_once(make_app, smtp_server):
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        SEND_RETRY_BACKOFF_SECONDS=0,
        SEND_PAUSE_AFTER_FAILURES=0,
    )
    audience = confirmed_audience(app, 30)
    calls = {"n": 0}

    def flaky(address):
        calls["n"] += 1
        return "451 4.3.0 try again later" if calls["n"] % 3 == 0 else None

    smtp_server.handler.answer = flaky
    edition_id = draft(app)
    _start(app, edition_id)
    for _ in range(10):
        _send(app)
        if _progress(app, edition_id).status == "sent":
            break
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}


def test_a_5xx_fails_the_delivery_and_is_a_hard_bounce(mail_app, smtp_server):
    audience = confirmed_audience(mail_app, 5)
    gone = audience[2]
    smtp_server.handler.answer = lambda a: "550 5.1.1 no such user" if a == gone else None
    first = draft(mail_app)
    _start(mail_app, first)
    stats = _send(mail_app)
    assert (stats.sent, stats.failed) == (4, 1)
    with mail_app.app_context():
        assert (
            db.session.scalar(select(Subscriber.hard_bounced_at).where(Subscriber.email == gone))
            is not None
        )
    # Recorded as a bounce against the delivery, and the address is suppressed.
    from newsletters.bounces.models import Bounce
    from newsletters.subscriptions.models import Suppression

    with mail_app.app_context():
        bounce = db.session.scalar(select(Bounce))
        assert (bounce.kind.value, bounce.source, bounce.status) == ("hard", "smtp", "5.1.1")
        assert bounce.delivery_id is not None
        assert db.session.scalar(select(Suppression.email)) == gone
    # The next edition does not go to the bounced address.
    second = draft(mail_app, subject="Næste møde")
    assert _start(mail_app, second) == 4


def test_too_many_failures_in_a_row_pause_the_send_and_say_why(make_app, smtp_server):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, SEND_PAUSE_AFTER_FAILURES=3)
    confirmed_audience(app, 10)
    smtp_server.handler.answer = lambda a: "452 4.2.2 mailbox full"
    edition_id = draft(app)
    _start(app, edition_id)
    _send(app)
    progress = _progress(app, edition_id)
    assert progress.status == "paused"
    assert "3 failures in a row" in progress.paused_reason and "452" in progress.paused_reason


def test_web_version_is_public_once_sent_only(mail_app, smtp_server):
    confirmed_audience(mail_app, 1)
    edition_id = draft(mail_app)
    client = mail_app.test_client()
    assert client.get(f"/editions/{edition_id}").status_code == 404  # a draft
    _start(mail_app, edition_id)
    _send(mail_app)
    page = client.get(f"/editions/{edition_id}")
    assert page.status_code == 200 and "Nyt fra bestyrelsesmødet" in page.get_data(as_text=True)
    assert "/unsubscribe/" not in page.get_data(as_text=True)  # nothing personal


def test_scheduled_edition_starts_when_due(mail_app, smtp_server):
    from datetime import timedelta

    from newsletters.timeutil import utcnow

    confirmed_audience(mail_app, 2)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.schedule(edition_id, utcnow() + timedelta(hours=1))
        assert sending.start_scheduled() == 0
        sending.schedule(edition_id, utcnow() - timedelta(seconds=1))
        assert sending.start_scheduled() == 1
        assert sending.start_scheduled() == 0
    _send(mail_app)
    assert len(smtp_server.received) == 2


def test_message_ids_are_stable_per_delivery(mail_app, smtp_server):
    confirmed_audience(mail_app, 3)
    edition_id = draft(mail_app)
    _start(mail_app, edition_id)
    _send(mail_app)
    ids = {m.message["Message-ID"] for m in smtp_server.received}
    assert len(ids) == 3
    with mail_app.app_context():
        delivery_ids = db.session.scalars(select(Delivery.id)).all()
    assert ids == {f"<e{edition_id}.d{d}@nyhedsbreve.kl.dk>" for d in delivery_ids}
    assert all(
        m.message["X-Newsletters-Delivery"].startswith(f"{edition_id}.")
        for m in smtp_server.received
    )
    assert {d.status for d in _deliveries(mail_app)} == {DeliveryStatus.SENT}


def _deliveries(app):
    with app.app_context():
        rows = db.session.scalars(select(Delivery)).all()
        db.session.expunge_all()
        return rows


def test_email_module_parses_every_part(mail_app, smtp_server):
    confirmed_audience(mail_app, 1)
    _start(mail_app, draft(mail_app))
    _send(mail_app)
    [mail] = smtp_server.wait_for(1)
    parsed = email.message_from_bytes(mail.raw, policy=email.policy.strict)
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert not parsed.defects and all(not p.defects for p in parsed.iter_parts())


def test_erasing_a_subscriber_deletes_their_deliveries(mail_app, smtp_server):
    audience = confirmed_audience(mail_app, 3)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.start_send(edition_id)
        sending.send_due("erasure-test")
        gone = db.session.scalar(select(Subscriber.id).where(Subscriber.email == audience[0]))
        erase(gone)
        left = db.session.scalars(select(Delivery.subscriber_id)).all()
        db.session.remove()
    assert gone not in left and len(left) == 2


def test_a_delivery_whose_subscriber_is_gone_is_skipped_and_the_send_completes(
    mail_app, smtp_server
):
    audience = confirmed_audience(mail_app, 3)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.start_send(edition_id)
        # What a delete racing start_send's INSERT ... SELECT could leave behind.
        db.session.execute(
            insert(Delivery).values(
                edition_id=edition_id,
                subscriber_id=987654,
                status=DeliveryStatus.QUEUED,
                attempts=0,
                next_attempt_at=utcnow(),
                possible_duplicates=0,
            )
        )
        db.session.commit()
        stats = sending.send_due("orphan-test")
        progress = sending.progress(edition_id)
        db.session.remove()
    assert stats.sent == 3 and stats.skipped == 1
    assert progress.status == "sent"
    assert received_counts(smtp_server, audience) == {a: 1 for a in audience}


def test_lines_that_start_with_a_dot_arrive_as_written(mail_app, smtp_server):
    audience = confirmed_audience(mail_app, 2)
    edition_id = draft(mail_app, body=".NET-projektet er godkendt.\n\n. og et punktum alene")
    with mail_app.app_context():
        sending.start_send(edition_id)
        sending.send_due("dot-test")
        db.session.remove()
    mails = smtp_server.wait_for(2)
    assert {m.rcpt_to for m in mails} == set(audience)
    for mail in mails:
        assert ".NET-projektet er godkendt." in mail.text
        assert "\n. og et punktum alene" in mail.text
