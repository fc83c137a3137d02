"""The SMTP transport: pipelined and one command at a time, handed over in steps, and
nothing delivered before the end of a message."""

from __future__ import annotations

import pytest

from newsletters.mailing.transport import DeliveryFailure, SmtpTransport
from tests.support.smtp import SMTPServer

pytestmark = pytest.mark.e2e


def _message(to: str, body: str = "Hej") -> bytes:
    return (
        f"From: KL <nyhedsbreve@kl.dk>\r\nTo: {to}\r\nSubject: Test\r\n"
        f"Date: Mon, 30 Nov 2026 08:00:00 +0000\r\nMessage-ID: <{to}@test>\r\n\r\n{body}\r\n"
    ).encode("ascii")


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def server(request, smtp_server: SMTPServer) -> SMTPServer:
    smtp_server.handler.pipelining = request.param
    return smtp_server


@pytest.fixture
def transport(make_app, server: SMTPServer):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, SEND_MAX_PER_CONNECTION=0)
    with app.app_context():
        transport = SmtpTransport()
        yield transport
        transport.close()


def test_steps_with_the_next_envelope_in_the_same_packet_deliver_each_message_once(
    transport, server
):
    recipients = [f"r{n}@example.dk" for n in range(5)]
    for n, to in enumerate(recipients):
        if not transport.envelope_open:  # without PIPELINING, finish() opens none
            transport.open_envelope("bounces@kl.dk", to, 100)
        transport.envelope_ready()
        transport.write_body(_message(to))
        following = recipients[n + 1] if n + 1 < len(recipients) else None
        transport.finish(("bounces@kl.dk", following, 100) if following else None)
        transport.accepted()
    server.wait_for(5)
    assert [m.rcpt_to for m in server.received] == recipients


def test_a_message_abandoned_before_its_end_is_not_delivered(transport, server):
    transport.open_envelope("bounces@kl.dk", "gone@example.dk")
    transport.envelope_ready()
    transport.write_body(_message("gone@example.dk"))
    transport.abandon()
    transport.send("bounces@kl.dk", "next@example.dk", _message("next@example.dk"))
    server.wait_for(1)
    assert [m.rcpt_to for m in server.received] == ["next@example.dk"]


def test_a_refused_recipient_fails_alone_and_the_connection_goes_on(transport, server):
    server.handler.answer = lambda a: "550 5.1.1 no such user" if a.startswith("bad") else None
    with pytest.raises(DeliveryFailure) as refused:
        transport.send("bounces@kl.dk", "bad@example.dk", _message("bad@example.dk"))
    assert refused.value.permanent and refused.value.code == 550
    transport.send("bounces@kl.dk", "good@example.dk", _message("good@example.dk"))
    server.wait_for(1)
    assert [m.rcpt_to for m in server.received] == ["good@example.dk"]


def test_a_temporary_refusal_is_not_permanent(transport, server):
    server.handler.answer = lambda a: "451 4.3.0 try again later"
    with pytest.raises(DeliveryFailure) as refused:
        transport.send("bounces@kl.dk", "later@example.dk", _message("later@example.dk"))
    assert not refused.value.permanent and refused.value.code == 451


def test_leading_dots_and_bare_line_feeds_arrive_intact(transport, server):
    body = ".first line starts with a dot\r\n..two dots\r\nbare\nline feed\r\n."
    transport.send("bounces@kl.dk", "dots@example.dk", _message("dots@example.dk", body))
    mail = server.wait_for(1)[0]
    assert not server.handler.rejected
    assert b"\r\n.first line starts with a dot\r\n..two dots\r\nbare\r\nline feed\r\n.\r\n" in (
        mail.raw + b"\r\n"
    )


def test_a_line_break_in_an_address_is_refused_before_anything_is_sent(transport, server):
    with pytest.raises(DeliveryFailure) as refused:
        transport.send("bounces@kl.dk", "a@example.dk>\r\nRCPT TO:<b@example.dk", b"x")
    assert refused.value.permanent
    transport.send("bounces@kl.dk", "ok@example.dk", _message("ok@example.dk"))
    assert [m.rcpt_to for m in server.wait_for(1)] == ["ok@example.dk"]
