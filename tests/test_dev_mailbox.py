"""The dev mailbox (/dev/mail, only without a mail server): every message the app sends,
editions included, readable as the reader gets it, with working links."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletters.editions import sending
from newsletters.extensions import db
from newsletters.mailing.models import CapturedMail
from newsletters.subscriptions import erasure
from newsletters.subscriptions.models import Subscriber
from newsletters.worker import Worker
from tests.conftest import deliver
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import subscribe, subscriptions_of
from tests.support.pages import csrf_token
from tests.test_staff import EDITOR, login, make_staff


@pytest.fixture
def dev_app(make_app) -> Flask:
    return make_app(DEV_MAILBOX=True, PUBLIC_BASE_URL="http://localhost")


def run_worker(app: Flask) -> None:
    """What the worker does on its rounds (intake, outbox, editions), until idle."""
    with app.app_context():
        worker = Worker(app, "test-worker")
        while worker.run_once():
            pass
        db.session.remove()


def captured(app: Flask) -> list[CapturedMail]:
    with app.app_context():
        rows = list(db.session.scalars(select(CapturedMail).order_by(CapturedMail.id)))
        db.session.expunge_all()
        return rows


def mailbox_ids(client: FlaskClient) -> list[int]:
    page = client.get("/dev/mail/").get_data(as_text=True)
    return [int(n) for n in re.findall(r'href="/dev/mail/(\d+)"', page)]


def test_an_edition_sent_from_the_staff_pages_is_in_the_dev_mailbox_with_its_headers(
    dev_app: Flask,
):
    [reader] = confirmed_audience(dev_app, 1)
    # A line that starts with a dot: SMTP doubles it, the reader sees one.
    edition_id = draft(dev_app, body="KL's bestyrelse har besluttet:\n\n.NET-platformen udfases")
    make_staff(dev_app, EDITOR, "editor")
    staff = dev_app.test_client()
    assert login(staff, EDITOR).status_code == 303
    page = staff.get(f"/staff/editions/{edition_id}/send")
    assert (
        staff.post(
            f"/staff/editions/{edition_id}/send",
            data={"csrf_token": csrf_token(page.data)},
        ).status_code
        == 303
    )
    run_worker(dev_app)
    with dev_app.app_context():
        assert sending.progress(edition_id).sent == 1

    [mail] = captured(dev_app)
    assert mail.to_address == reader
    assert "\r\n" in mail.raw and "\n" not in mail.raw.replace("\r\n", "")
    message = email.message_from_string(mail.raw, policy=email.policy.default)
    assert message["Subject"] == "Nyt fra bestyrelsesmødet"
    assert message["Message-ID"].startswith(f"<e{edition_id}.d")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()
    assert "\n.NET-platformen udfases" in text and "..NET" not in text

    reader_client = dev_app.test_client()
    assert mailbox_ids(reader_client) == [mail.id]
    shown = reader_client.get(f"/dev/mail/{mail.id}").get_data(as_text=True)
    for header in ("List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "Message-ID"):
        assert f">{header}</th>" in shown
    assert "Nyt fra KL&#39;s bestyrelse" in shown or "Nyt fra KL's bestyrelse" in shown

    # The manage link of the text part opens the reader's preference centre.
    manage = re.search(r'href="http://localhost(/manage/[^"?]+)', shown).group(1)
    assert reader in reader_client.get(manage).get_data(as_text=True)
    # The one-click button posts what a mail provider posts (RFC 8058), and it works.
    action = re.search(r'<form method="post" action="(/unsubscribe/[^"]+)"', shown).group(1)
    reply = reader_client.post(action.replace("&amp;", "&"), data={"List-Unsubscribe": "One-Click"})
    assert reply.status_code == 200
    assert subscriptions_of(dev_app, reader) == {"bestyrelse": "unsubscribed"}


def test_outbox_mail_is_in_the_dev_mailbox_as_sent(dev_app: Flask):
    client = dev_app.test_client()
    subscribe(client, "laeser@example.dk", ["momentum"])
    deliver(dev_app)
    [mail] = captured(dev_app)
    message = email.message_from_string(mail.raw, policy=email.policy.default)
    assert message["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
    shown = client.get(f"/dev/mail/{mail.id}").get_data(as_text=True)
    confirm = re.search(r'href="http://localhost(/confirm/[^"?]+)', shown).group(1)
    assert client.get(confirm).status_code == 200
    assert client.get(f"/dev/mail/{mail.id}.eml").get_data(as_text=True) == mail.raw
    html_part = client.get(f"/dev/mail/{mail.id}.html")
    assert "default-src 'none'" in html_part.headers["Content-Security-Policy"]
    assert "/confirm/" in html_part.get_data(as_text=True)


def test_an_imports_invitations_are_in_the_dev_mailbox_in_danish(dev_app: Flask, tmp_path):
    """An import's invitations are written when the worker sends them (mailing.deferred):
    each is captured whole, in Danish, its confirm link good; the composer's reading of
    the database must not hold SQLite's write lock while the capture writes."""
    people = ["mette@aarhus.dk", "borgmester@ærø.dk", "jens@odense.dk"]
    path = tmp_path / "people.csv"
    path.write_text("email\n" + "\n".join(people) + "\n", encoding="utf-8")
    result = dev_app.test_cli_runner().invoke(
        args=["subscribers", "import", str(path), "--newsletter", "momentum"]
    )
    assert result.exit_code == 0, result.output
    run_worker(dev_app)
    mails = captured(dev_app)
    assert sorted(m.to_address for m in mails) == sorted(
        ["mette@aarhus.dk", "borgmester@xn--r-3fa9c.dk", "jens@odense.dk"]
    )
    client = dev_app.test_client()
    for mail in mails:
        message = email.message_from_string(mail.raw, policy=email.policy.default)
        assert message["Subject"] == "Bekræft din tilmelding til KL's nyhedsbreve"
        assert message.get_body(("plain",)).get_content().startswith("Hej\r\n")
        shown = client.get(f"/dev/mail/{mail.id}").get_data(as_text=True)
        confirm = re.search(r'href="http://localhost(/confirm/[^"?]+)', shown).group(1)
        page = client.get(confirm)
        assert page.status_code == 200 and "Bekræft" in page.get_data(as_text=True)


def test_the_dev_mailbox_pages_are_danish_and_english_on_request(dev_app: Flask):
    client = dev_app.test_client()
    subscribe(client, "a@example.dk")
    deliver(dev_app)
    [mail] = captured(dev_app)
    inbox = client.get("/dev/mail/").get_data(as_text=True)
    assert '<html lang="da">' in inbox and "Udviklerpostkasse" in inbox
    assert "Dev mailbox" not in inbox and "No mail yet" not in inbox
    shown = client.get(f"/dev/mail/{mail.id}").get_data(as_text=True)
    assert "Tekstdel" in shown and "Afmeld med ét klik" in shown
    english = client.get("/dev/mail/?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in english and "Dev mailbox" in english
    assert "Udviklerpostkasse" not in english


def test_nothing_is_kept_when_the_dev_mailbox_is_off(make_app):
    app = make_app()
    assert app.config["DEV_MAILBOX"] is False
    subscribe(app.test_client(), "a@example.dk")
    assert deliver(app).captured == 1
    assert captured(app) == []


def test_erasing_a_subscriber_deletes_their_captured_mail(dev_app: Flask):
    client = dev_app.test_client()
    subscribe(client, "a@example.dk")
    subscribe(client, "b@example.dk")
    deliver(dev_app)
    assert {m.to_address for m in captured(dev_app)} == {"a@example.dk", "b@example.dk"}
    with dev_app.app_context():
        subscriber_id = db.session.scalar(
            select(Subscriber.id).where(Subscriber.email == "a@example.dk")
        )
        assert erasure.erase(subscriber_id)
        assert db.session.scalar(select(func.count()).select_from(CapturedMail)) == 1
    assert {m.to_address for m in captured(dev_app)} == {"b@example.dk"}


@pytest.mark.parametrize(
    "path", ["/dev/mail/999999999", "/dev/mail/abc", "/dev/mail/99999999999999999999.eml"]
)
def test_an_unknown_message_is_a_plain_404(dev_app: Flask, path: str):
    response = dev_app.test_client().get(path)
    assert response.status_code == 404
    assert "Traceback" not in response.get_data(as_text=True)
