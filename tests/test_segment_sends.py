"""Sending to part of a newsletter's readers (a segment), end to end: the send page's count,
the send, the schedule, the CLI's --where, what the edition, progress and report pages and
the audit log show. And the unsubscribe links of a send, which name the edition so its
report counts who left through them."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from newsletters.audit.models import AuditEntry
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import sending
from newsletters.editions.models import Delivery, Edition, EditionStatus
from newsletters.extensions import db
from newsletters.reports.editions import edition_report
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow
from newsletters.tokens import SubscriberLink, TokenError
from tests.support.editions import draft, received_counts
from tests.support.pages import csrf_token
from tests.test_staff import EDITOR, login, make_staff

SEGMENT = "region=Hovedstaden AND role=borgmester"
# Who reads "bestyrelse" (address, municipality, role); the first two match SEGMENT.
READERS = [
    ("kk@example.dk", "København", "borgmester"),
    ("frb@example.dk", "Frederiksberg", "Borgmester"),  # roles compare without case
    ("kk-dir@example.dk", "København", "direktør"),
    ("aarhus@example.dk", "Aarhus", "borgmester"),  # Region Midtjylland
    ("unknown@example.dk", "", "borgmester"),  # no municipality: in no region
]
MATCHING = ["kk@example.dk", "frb@example.dk"]


def readers(app: Flask, rows=READERS, slug: str = "bestyrelse") -> list[str]:
    """Confirmed readers of `slug` with the municipal facts given."""
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        now = utcnow()
        db.session.execute(
            insert(Subscriber),
            [
                {
                    "email": email,
                    "name": "",
                    "municipality": municipality,
                    "role": role,
                    "locale": "da",
                    "token_version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for email, municipality, role in rows
            ],
        )
        emails = [r[0] for r in rows]
        ids = db.session.scalars(select(Subscriber.id).where(Subscriber.email.in_(emails))).all()
        db.session.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": i,
                    "newsletter_id": newsletter.id,
                    "status": SubscriptionStatus.CONFIRMED,
                    "requested_at": now,
                    "confirmed_at": now,
                }
                for i in ids
            ],
        )
        db.session.commit()
    return emails


def _deliver(app: Flask) -> sending.SendStats:
    with app.app_context():
        stats = sending.send_due("test-worker")
        db.session.remove()
        return stats


def _state(app: Flask, edition_id: int) -> tuple[EditionStatus, str | None, int]:
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        deliveries = db.session.scalar(
            select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id)
        )
        state = (edition.status, edition.segment, deliveries)
        db.session.remove()
        return state


def _audit(app: Flask, action: str) -> dict:
    with app.app_context():
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id.desc())
        ).first()
        return json.loads(entry.details)


@pytest.fixture
def editor(app: Flask, client: FlaskClient) -> FlaskClient:
    make_staff(app, EDITOR, "editor")
    assert login(client, EDITOR).status_code == 303
    return client


def _post(client: FlaskClient, path: str, data: dict, page: str) -> object:
    token = csrf_token(client.get(page).data)
    return client.post(path, data={"csrf_token": token, **data})


# --------------------------------------------------------------------------- the service


def test_a_segmented_send_reaches_exactly_the_matching_readers(mail_app, smtp_server):
    audience = readers(mail_app)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        counted = sending.recipients_count(edition_id, SEGMENT)
        assert sending.recipients_count(edition_id) == len(audience)  # nothing stored yet
        started = sending.start_send(edition_id, segment="  region=hovedstaden OG rolle=BORGMESTER")
    assert counted == started == 2
    stats = _deliver(mail_app)
    assert stats.sent == counted
    assert received_counts(smtp_server, audience) == {
        a: (1 if a in MATCHING else 0) for a in audience
    }
    assert _state(mail_app, edition_id) == (EditionStatus.SENT, SEGMENT, 2)


def test_a_scheduled_send_keeps_its_segment(mail_app, smtp_server):
    readers(mail_app)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.schedule(edition_id, utcnow() - timedelta(seconds=1), segment=SEGMENT)
        assert sending.start_scheduled() == 1
    _deliver(mail_app)
    assert sorted(m.rcpt_to for m in smtp_server.received) == sorted(MATCHING)
    assert _state(mail_app, edition_id) == (EditionStatus.SENT, SEGMENT, 2)
    assert _audit(mail_app, "edition.schedule")["segment"] == SEGMENT


def test_the_segment_is_one_condition_of_the_single_enqueue(app):
    readers(app)
    edition_id = draft(app)
    statements: list[str] = []
    with app.app_context():
        from sqlalchemy import event

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            sending.start_send(edition_id, segment=SEGMENT)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    # On PostgreSQL the INSERT is inside a WITH ... RETURNING that counts what it wrote.
    inserts = [s for s in statements if "INSERT INTO DELIVERIES" in s.upper()]
    assert len(inserts) == 1 and "municipality" in inserts[0] and "lower(" in inserts[0]
    # No subscriber was read into Python: no SELECT of the subscribers' addresses.
    assert not [s for s in statements if "subscribers.email AS" in s]


# --------------------------------------------------------------------------- the CLI


def test_cli_send_where_sends_to_the_segment_and_audits_it(app):
    readers(app)
    edition_id = draft(app)
    result = app.test_cli_runner().invoke(
        args=["editions", "send", str(edition_id), "--where", SEGMENT]
    )
    assert result.exit_code == 0, result.output
    assert f"sending to 2 recipient(s) matching {SEGMENT}" in result.output
    assert _state(app, edition_id) == (EditionStatus.SENDING, SEGMENT, 2)
    assert _audit(app, "edition.send") == {"recipients": 2, "segment": SEGMENT}


@pytest.mark.parametrize(
    "where",
    [
        "region=Atlantis",
        "region=Hovedstaden AND",
        "kommune=Aarhus\r\nrole=x",
        "role=borg\x00mester",
        "role=" + "x" * 10_000,
        "region=Hovedstaden'; DROP TABLE subscribers; --",
        "email=a@example.dk",
    ],
)
def test_cli_send_with_a_bad_where_changes_nothing(app, where):
    readers(app)
    edition_id = draft(app)
    result = app.test_cli_runner().invoke(
        args=["editions", "send", str(edition_id), "--where", where]
    )
    assert result.exit_code != 0
    assert "not sent: --where:" in result.output
    assert "Traceback" not in result.output
    assert _state(app, edition_id) == (EditionStatus.DRAFT, None, 0)


# --------------------------------------------------------------------------- the pages


def test_the_send_page_counts_a_segment_before_the_send(editor, app):
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    shown = editor.get(page).get_data(as_text=True)
    assert "Send kun til" in shown and "Tæl modtagere" in shown and "5 modtagere" in shown
    response = _post(
        editor, f"{page}/count", {"segment": "region=hovedstaden og rolle=borgmester"}, page
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "2 modtagere" in text and SEGMENT in text
    assert _state(app, edition_id) == (EditionStatus.DRAFT, None, 0)  # counting changes nothing


HOSTILE = [
    ("kommune=Aarhus\r\nrole=x", "én linje"),
    ("role=" + "x" * 10_000, "for lang"),
    ("region=Hovedstaden'; DROP TABLE subscribers; --", "er ikke en region"),
    ("region=Atlantis", "er ikke en region"),
    ("((((role=x", "parentes"),
]


@pytest.mark.parametrize("segment, message", HOSTILE)
@pytest.mark.parametrize("action", ["send/count", "send", "schedule"])
def test_a_bad_segment_is_refused_in_danish_and_changes_nothing(
    editor, app, segment, message, action
):
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    data = {"segment": segment, "scheduled_at": "2099-01-05T09:30"}
    response = _post(editor, f"/staff/editions/{edition_id}/{action}", data, page)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in text.replace("&#34;", '"'), text[:3000]
    assert "Traceback" not in text
    assert _state(app, edition_id) == (EditionStatus.DRAFT, None, 0)
    with app.app_context():
        assert db.session.scalar(select(func.count(Subscriber.id))) == len(READERS)


@pytest.mark.parametrize("action", ["send/count", "send", "schedule"])
def test_a_nul_in_the_segment_is_refused_like_every_nul(editor, app, action):
    # The house rule (newsletters/inputs.py): a NUL anywhere in a form is a 400.
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    data = {"segment": "role=borg\x00mester", "scheduled_at": "2099-01-05T09:30"}
    response = _post(editor, f"/staff/editions/{edition_id}/{action}", data, page)
    assert response.status_code == 400
    assert _state(app, edition_id) == (EditionStatus.DRAFT, None, 0)


def test_sql_in_a_quoted_role_is_only_a_value(editor, app):
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    segment = 'role="x\'; DROP TABLE subscribers; --"'
    response = _post(editor, f"{page}/count", {"segment": segment}, page)
    assert response.status_code == 200 and "0 modtagere" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Subscriber.id))) == len(READERS)


def test_send_from_the_page_stores_the_segment_and_every_page_shows_it(editor, app):
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    response = _post(editor, page, {"segment": SEGMENT}, page)
    assert response.status_code == 303
    assert _state(app, edition_id) == (EditionStatus.SENDING, SEGMENT, 2)
    progress = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert "Udsendelsen er startet: 2 modtager(e)" in progress and SEGMENT in progress
    assert SEGMENT in editor.get(f"/staff/editions/{edition_id}").get_data(as_text=True)
    report = editor.get(f"/staff/editions/{edition_id}/report").get_data(as_text=True)
    assert SEGMENT in report
    assert _audit(app, "edition.send") == {"recipients": 2, "segment": SEGMENT}


def test_schedule_from_the_page_keeps_the_segment_for_the_send(editor, app, clock):
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    when = (clock.local_now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = _post(
        editor,
        f"/staff/editions/{edition_id}/schedule",
        {"segment": SEGMENT, "scheduled_at": when},
        page,
    )
    assert response.status_code == 303
    assert _state(app, edition_id) == (EditionStatus.SCHEDULED, SEGMENT, 0)
    # The page shows the stored segment, counted.
    shown = editor.get(page).get_data(as_text=True)
    assert "2 modtagere" in shown and f'value="{SEGMENT}"' in shown
    clock.advance(hours=3)
    with app.app_context():
        assert sending.start_scheduled() == 1
    assert _state(app, edition_id) == (EditionStatus.SENDING, SEGMENT, 2)


def test_an_empty_segment_sends_to_everyone(editor, app):
    readers(app)
    edition_id = draft(app)
    page = f"/staff/editions/{edition_id}/send"
    assert _post(editor, page, {"segment": "  "}, page).status_code == 303
    assert _state(app, edition_id) == (EditionStatus.SENDING, None, len(READERS))
    assert _audit(app, "edition.send") == {"recipients": len(READERS)}


# --------------------------------------------------------------------------- who left


def _token(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def _payload_part(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_the_report_counts_who_left_through_the_editions_links(mail_app, smtp_server):
    audience = readers(mail_app)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.start_send(edition_id)
    _deliver(mail_app)
    mails = {m.rcpt_to: m for m in smtp_server.wait_for(len(audience))}
    one_click_url = mails[audience[0]].message["List-Unsubscribe"].strip("<>")
    footer_url = mails[audience[1]].link("/unsubscribe/")
    assert _payload_part(_token(footer_url))["e"] == edition_id
    assert len(_token(footer_url)) < 110  # short enough for any mail program
    reader = mail_app.test_client(use_cookies=False)
    assert (
        reader.post(
            urlsplit(one_click_url).path, data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 200
    )
    footer = urlsplit(footer_url).path
    assert reader.get(footer).status_code == 200  # the page, then its button
    assert reader.post(footer).status_code == 200
    reader.post(footer)  # twice: still one withdrawal
    with mail_app.app_context():
        events = db.session.execute(
            select(ConsentEvent.method, ConsentEvent.edition_id).where(
                ConsentEvent.action == ConsentAction.WITHDRAWN
            )
        ).all()
        assert sorted(events) == [("one_click", edition_id), ("unsubscribe_page", edition_id)]
        assert edition_report(edition_id).unsubscribed == 2


def test_a_tampered_edition_id_is_refused_like_any_bad_token(mail_app, smtp_server):
    audience = readers(mail_app, READERS[:1])
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.start_send(edition_id)
    _deliver(mail_app)
    [mail] = smtp_server.wait_for(1)
    url = mail.link("/unsubscribe/")
    token = _token(url)
    payload = _payload_part(token)
    payload["e"] = edition_id + 1
    forged = (
        base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
    )
    tampered = ".".join([forged, *token.split(".")[1:]])
    client = mail_app.test_client(use_cookies=False)
    for response in (
        client.get(f"/unsubscribe/{tampered}"),
        client.post(f"/unsubscribe/{tampered}", data={"List-Unsubscribe": "One-Click"}),
    ):
        assert response.status_code == 400
    with mail_app.app_context():
        assert db.session.scalar(select(func.count(ConsentEvent.id))) == 0
    assert audience


@pytest.mark.parametrize("edition_id", ["7", -1, 0, 2**31, 1.5, True, [1], None])
def test_a_signed_link_with_an_odd_edition_id_is_invalid(edition_id):
    payload = {"k": "A" * 22, "v": 1, "n": [1], "e": edition_id}
    if edition_id is None:
        assert SubscriberLink.from_payload(payload).edition_id is None  # an old-style link
        return
    with pytest.raises(TokenError):
        SubscriberLink.from_payload(payload)


def test_links_without_an_edition_still_work_and_count_nowhere(client, app):
    from newsletters.subscriptions import links

    readers(app, READERS[:1])
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber))
        url = links.unsubscribe_url(subscriber, newsletter_by_slug("bestyrelse").id)
    assert "e" not in _payload_part(_token(url))
    assert client.post(urlsplit(url).path).status_code == 200
    with app.app_context():
        event = db.session.scalar(select(ConsentEvent))
        assert (event.action, event.edition_id) == (ConsentAction.WITHDRAWN, None)
