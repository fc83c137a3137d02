"""PRODUCT.md invariant 8: every message is valid RFC 5322 and survives a strict server."""

from __future__ import annotations

import email
import email.policy

import pytest

from newsletters.mailing.compose import build_message, render_mail
from tests.conftest import deliver
from tests.support.flows import subscribe

LONG_DANISH = "Kommunernes økonomi, ældreområdet og børnehaver på Ærø og i Næstved. " * 60


@pytest.fixture
def long_message(app) -> bytes:
    with app.test_request_context():
        html = "<html><body><p>" + LONG_DANISH + "</p><p>" + "æøå" * 2000 + "</p></body></html>"
        return build_message(
            to="borgmester@example.dk",
            subject="Nyt fra KL's bestyrelse: økonomiaftale for 2027 og de næste års rammer",
            text=LONG_DANISH,
            html=html,
            list_id="Nyt fra KL's bestyrelse <bestyrelse.nyhedsbreve.kl.dk>",
            unsubscribe_url="https://nyhedsbreve.kl.dk/unsubscribe/" + "T" * 140,
        )


def test_lines_end_in_crlf_and_fit_998_octets(long_message):
    assert b"\n" not in long_message.replace(b"\r\n", b"")
    assert b"\r" not in long_message.replace(b"\r\n", b"")
    assert max(len(line) for line in long_message.split(b"\r\n")) <= 998
    assert all(byte < 128 for byte in long_message)  # 7-bit: no 8BITMIME needed


def test_required_headers(long_message):
    message = email.message_from_bytes(long_message, policy=email.policy.default)
    for name in ("Date", "Message-ID", "From", "To", "Subject", "List-Id"):
        assert message[name], name
    assert message["Auto-Submitted"] == "auto-generated"
    assert (
        message["List-Unsubscribe"] == "<https://nyhedsbreve.kl.dk/unsubscribe/" + "T" * 140 + ">"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Subject"].startswith("Nyt fra KL's bestyrelse: økonomiaftale")
    assert message["Message-ID"].endswith("@nyhedsbreve.kl.dk>")


def test_multipart_alternative_with_a_real_plain_text_part(long_message):
    message = email.message_from_bytes(long_message, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = message.get_body(("plain",)).get_content()
    assert "Ærø" in text and "<p>" not in text
    assert "æøå" * 2000 in message.get_body(("html",)).get_content()


def test_confirmation_mail_meets_the_invariant(client, app):
    subscribe(client, "a@example.dk", ["momentum", "bestyrelse"], name="Åse Ørsted")
    from tests.support.flows import queued_mails

    [mail] = queued_mails(app, "a@example.dk")
    raw = mail.raw.encode("ascii")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        # Typed by whoever filled in the form, not (yet) by the address's owner.
        assert "Åse Ørsted" not in part
        assert "Nyt fra KL's bestyrelse" in part
        assert app.config["CONTACT_LINE"] in part
        assert app.config["LINKEDIN_URL"] in part
        assert app.config["X_URL"] in part
    # CSS is inlined for Outlook.
    assert 'style="' in html


def test_unsubscribe_header_is_per_recipient(client, app):
    subscribe(client, "a@example.dk")
    subscribe(client, "b@example.dk")
    from tests.support.flows import header, queued_mails

    a, b = queued_mails(app, "a@example.dk")[0], queued_mails(app, "b@example.dk")[0]
    assert header(a, "List-Unsubscribe") != header(b, "List-Unsubscribe")


def test_https_base_url_gives_https_unsubscribe_links(make_app):
    app = make_app(PUBLIC_BASE_URL="https://nyhedsbreve.kl.dk")
    client = app.test_client()
    subscribe(client, "a@example.dk")
    from tests.support.flows import header, queued_mails

    [mail] = queued_mails(app, "a@example.dk")
    assert header(mail, "List-Unsubscribe").startswith("<https://nyhedsbreve.kl.dk/unsubscribe/")


def test_long_danish_html_survives_a_strict_smtp_server(mail_app, smtp_server):
    with mail_app.test_request_context():
        from newsletters.extensions import db
        from newsletters.mailing import outbox

        # A newsletter's name (set by an administrator) as the long Danish line.
        rendered = render_mail(
            "already_subscribed",
            locale="da",
            newsletters=[type("N", (), {"name": "Ærø " * 400})()],
            manage_url="https://example.dk/manage/x",
            max_age_days=30,
        )
        outbox.enqueue(kind="already_subscribed", to="x@example.dk", mail=rendered)
        db.session.commit()
    assert deliver(mail_app).sent == 1
    [received] = smtp_server.wait_for(1)
    assert ("Ærø " * 400).strip() in received.html
    assert smtp_server.handler.rejected == []
