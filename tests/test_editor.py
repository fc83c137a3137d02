"""The editors' pages: compose, preview, test send, send or schedule, follow the progress."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from newsletters.editions import editing, sending
from newsletters.editions.models import Delivery, Edition, EditionStatus
from newsletters.editions.rendering import render_edition
from newsletters.extensions import db
from newsletters.timeutil import utcnow
from tests.conftest import deliver
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import queued_mails
from tests.support.pages import csrf_token
from tests.test_staff import EDITOR, login, login_redirect_target, make_staff

# --------------------------------------------------------------------------- helpers


@pytest.fixture
def editor_client(client: FlaskClient, app: Flask) -> FlaskClient:
    make_staff(app, EDITOR, "editor")
    assert login(client, EDITOR).status_code == 303
    return client


@pytest.fixture
def mail_editor(mail_app: Flask) -> FlaskClient:
    """A logged-in editor on the app whose mail goes to the SMTP server on loopback."""
    make_staff(mail_app, EDITOR, "editor")
    client = mail_app.test_client()
    assert login(client, EDITOR).status_code == 303
    return client


def post_form(client: FlaskClient, path: str, data: dict | None = None, page: str | None = None):
    """POST as the page's form does, with that page's CSRF token."""
    token = csrf_token(client.get(page or path).data)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def edition_row(app: Flask, edition_id: int) -> Edition:
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        items = list(edition.items)
        db.session.expunge_all()
        edition.__dict__["items"] = items
        return edition


def compose_data(**fields) -> dict:
    data = {"subject": "Nyt fra bestyrelsesmødet", "preheader": "", "body": "", "action": "save"}
    data.update(fields)
    return data


def item_fields(*rows: dict) -> dict:
    """Form fields of item rows: {heading, text, link, position, remove}."""
    data = {}
    for n, row in enumerate(rows):
        for name, value in row.items():
            if name == "remove" and not value:
                continue
            data[f"items-{n}-{name}"] = "y" if value is True else value
    return data


def page_text(response) -> str:
    return response.get_data(as_text=True)


def start(app: Flask, edition_id: int) -> int:
    with app.app_context():
        return sending.start_send(edition_id)


def send_all(app: Flask) -> None:
    with app.app_context():
        sending.send_due("test-worker")
        db.session.remove()


def status_of(app: Flask, edition_id: int) -> EditionStatus:
    with app.app_context():
        return db.session.get(Edition, edition_id).status


# --------------------------------------------------------------------------- access


EDITOR_PAGES = [
    "/staff/newsletters/bestyrelse",
    "/staff/newsletters/bestyrelse/editions/new",
    "/staff/editions/{id}",
    "/staff/editions/{id}/edit",
    "/staff/editions/{id}/preview",
    "/staff/editions/{id}/preview.html",
    "/staff/editions/{id}/send",
    "/staff/editions/{id}/progress",
    "/staff/editions/{id}/progress.json",
    "/staff/editions/{id}/cancel",
]


@pytest.mark.parametrize("path", EDITOR_PAGES)
def test_anonymous_visitor_of_an_editor_page_is_sent_to_the_login(client, app, path):
    path = path.format(id=draft(app))
    assert login_redirect_target(client.get(path)) == path


def test_anonymous_post_changes_nothing(client, app):
    edition_id = draft(app)
    confirmed_audience(app, 2)
    token = csrf_token(client.get("/staff/login").data)
    for action in ("send", "test", "schedule", "edit"):
        response = client.post(f"/staff/editions/{edition_id}/{action}", data={"csrf_token": token})
        assert login_redirect_target(response) is None, action
    assert status_of(app, edition_id) is EditionStatus.DRAFT
    assert queued_mails(app) == []


@pytest.mark.parametrize(
    "action", ["edit", "test", "send", "schedule", "unschedule", "pause", "resume", "cancel"]
)
def test_post_without_csrf_token_is_refused_with_400(editor_client, app, action):
    confirmed_audience(app, 1)
    edition_id = draft(app)
    response = editor_client.post(
        f"/staff/editions/{edition_id}/{action}", data={"subject": "Ændret"}
    )
    assert response.status_code == 400
    assert status_of(app, edition_id) is EditionStatus.DRAFT
    assert edition_row(app, edition_id).subject == "Nyt fra bestyrelsesmødet"
    assert queued_mails(app) == []


def test_unknown_edition_is_404(editor_client):
    assert editor_client.get("/staff/editions/999999").status_code == 404
    assert editor_client.get("/staff/newsletters/nope").status_code == 404


# --------------------------------------------------------------------------- lists


def test_dashboard_links_to_each_newsletters_editions(editor_client):
    page = page_text(editor_client.get("/staff/"))
    assert 'href="/staff/newsletters/bestyrelse"' in page
    assert editor_client.get("/staff/newsletters/bestyrelse").status_code == 200


def test_newsletter_page_groups_drafts_sends_and_the_archive(editor_client, app):
    confirmed_audience(app, 1)
    open_id = draft(app, subject="En kladde")
    sending_id = draft(app, subject="Under udsendelse")
    sent_id = draft(app, subject="Sendt i sidste uge")
    other = draft(app, slug="momentum", subject="Momentum-kladde")
    start(app, sent_id)
    send_all(app)
    start(app, sending_id)
    page = page_text(editor_client.get("/staff/newsletters/bestyrelse"))
    sections = dict(
        re.findall(r'<h2 id="(open|sending|archive)-heading">.*?</h2>(.*?)</section>', page, re.S)
    )
    assert f"/staff/editions/{open_id}" in sections["open"]
    assert f"/staff/editions/{sending_id}/progress" in sections["sending"]
    assert f"/staff/editions/{sent_id}" in sections["archive"]
    assert f"/staff/editions/{other}" not in page
    assert "Ny udgave" in page and 'href="/staff/newsletters/bestyrelse/editions/new"' in page


# --------------------------------------------------------------------------- compose


def test_new_board_edition_form_has_a_meeting_date_and_three_empty_items(editor_client):
    page = page_text(editor_client.get("/staff/newsletters/bestyrelse/editions/new"))
    assert 'type="date"' in page and 'name="meeting_date"' in page
    assert [f"items-{n}-heading" for n in range(3)] == re.findall(
        r'name="(items-\d+-heading)"', page
    )
    assert "Tilføj flere punkter" in page
    assert "Markdown" in page  # the help text


def test_other_newsletters_have_neither_meeting_date_nor_items(editor_client):
    page = page_text(editor_client.get("/staff/newsletters/momentum/editions/new"))
    assert 'name="meeting_date"' not in page and "items-0-heading" not in page


def test_composing_saves_a_draft_with_its_items_in_order(editor_client, app):
    data = compose_data(
        subject="  Nyt   fra bestyrelsen ",
        preheader="Budget og klima",
        body="Bestyrelsen har **besluttet**:",
        meeting_date="2026-03-12",
        **item_fields(
            {"heading": "Budget 2027", "text": "Vedtaget.", "link": "https://www.kl.dk/budget"},
            {"heading": "", "text": "", "link": ""},
            {"heading": "Klima", "text": "Ny *plan*.", "link": ""},
        ),
    )
    response = post_form(editor_client, "/staff/newsletters/bestyrelse/editions/new", data)
    assert response.status_code == 303
    edition_id = int(re.fullmatch(r"/staff/editions/(\d+)", response.headers["Location"])[1])
    edition = edition_row(app, edition_id)
    assert edition.status is EditionStatus.DRAFT
    assert edition.subject == "Nyt fra bestyrelsen"
    assert edition.preheader == "Budget og klima"
    assert edition.body_markdown == "Bestyrelsen har **besluttet**:"
    assert edition.meeting_date.isoformat() == "2026-03-12"
    assert edition.created_by == EDITOR
    assert [(i.position, i.heading, i.text_markdown, i.link) for i in edition.items] == [
        (0, "Budget 2027", "Vedtaget.", "https://www.kl.dk/budget"),
        (1, "Klima", "Ny *plan*.", ""),
    ]
    assert "Udgaven er gemt." in page_text(editor_client.get(response.headers["Location"]))


def test_editing_reorders_removes_and_adds_items(editor_client, app):
    edition_id = draft(app)
    path = f"/staff/editions/{edition_id}/edit"
    post_form(
        editor_client,
        path,
        compose_data(
            **item_fields({"heading": "A"}, {"heading": "B"}, {"heading": "C"}),
        ),
    )
    page = page_text(editor_client.get(path))
    # The three items and three empty rows, numbered.
    assert re.findall(r'name="items-\d+-position"[^>]*value="(\d*)"', page) == [
        "1",
        "2",
        "3",
        "",
        "",
        "",
    ]
    assert len(re.findall(r'name="items-\d+-heading"', page)) == 6
    response = post_form(
        editor_client,
        path,
        compose_data(
            subject="Ændret emne",
            **item_fields(
                {"heading": "A", "position": "3"},
                {"heading": "B", "position": "2", "remove": True},
                {"heading": "C", "position": "1"},
                {"heading": "D (ny)", "position": ""},
            ),
        ),
    )
    assert response.status_code == 303
    edition = edition_row(app, edition_id)
    assert edition.subject == "Ændret emne"
    assert [i.heading for i in edition.items] == ["C", "A", "D (ny)"]
    assert [i.position for i in edition.items] == [0, 1, 2]


def test_add_more_items_saves_and_shows_three_more_rows(editor_client, app):
    edition_id = draft(app)
    path = f"/staff/editions/{edition_id}/edit"
    data = compose_data(
        action="more-items",
        **item_fields({"heading": "A"}, {"heading": ""}, {"heading": ""}),
    )
    response = post_form(editor_client, path, data)
    assert response.status_code == 303
    assert [i.heading for i in edition_row(app, edition_id).items] == ["A"]
    page = page_text(editor_client.get(response.headers["Location"]))
    # One item, the two empty rows that were there and three more.
    assert len(re.findall(r'name="items-\d+-heading"', page)) == 6


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"subject": "   "}, "Indtast et emne."),
        ({"subject": "x" * 301}, "højst 300 tegn"),
        (
            item_fields({"heading": "", "text": "Tekst uden overskrift"}),
            "Giv punktet en overskrift",
        ),
        (item_fields({"heading": "Link", "link": "javascript:alert(1)"}), "https://"),
        (item_fields({"heading": "Nummer", "position": "først"}), "Indtast et helt tal."),
        ({"meeting_date": "12/3"}, "Indtast en dato"),
    ],
)
def test_bad_input_is_refused_in_danish_and_nothing_is_saved(editor_client, app, fields, message):
    edition_id = draft(app)
    response = post_form(
        editor_client, f"/staff/editions/{edition_id}/edit", compose_data(**fields)
    )
    assert response.status_code == 422
    page = page_text(response)
    assert message in html.unescape(page)
    assert 'id="error-summary"' in page
    edition = edition_row(app, edition_id)
    assert edition.subject == "Nyt fra bestyrelsesmødet" and edition.items == []


def test_update_draft_refuses_links_that_are_not_http(app):
    edition_id = draft(app)
    with app.app_context(), pytest.raises(sending.EditionError, match="http"):
        editing.update_draft(
            edition_id,
            subject="x",
            body_markdown="",
            items=[sending.ItemInput(heading="h", link="javascript:alert(1)")],
        )


@pytest.mark.parametrize("status", ["sending", "sent", "cancelled"])
def test_an_edition_no_longer_a_draft_cannot_be_edited(editor_client, app, status):
    confirmed_audience(app, 1)
    edition_id = draft(app)
    start(app, edition_id)
    if status == "sent":
        send_all(app)
    elif status == "cancelled":
        with app.app_context():
            sending.cancel(edition_id)
    assert status_of(app, edition_id).value == status
    path = f"/staff/editions/{edition_id}/edit"
    page = editor_client.get(path)
    assert page.status_code == 409
    assert "kan ikke længere ændres" in page_text(page)
    token = csrf_token(editor_client.get(f"/staff/editions/{edition_id}").data)
    response = editor_client.post(path, data={"csrf_token": token, **compose_data(subject="Nyt")})
    assert response.status_code == 409
    assert edition_row(app, edition_id).subject == "Nyt fra bestyrelsesmødet"
    with app.app_context(), pytest.raises(editing.NotEditable):
        editing.update_draft(edition_id, subject="Nyt", body_markdown="")


def test_a_scheduled_edition_can_still_be_edited(editor_client, app):
    edition_id = draft(app)
    with app.app_context():
        sending.schedule(edition_id, utcnow() + timedelta(days=1))
    response = post_form(
        editor_client, f"/staff/editions/{edition_id}/edit", compose_data(subject="Rettet")
    )
    assert response.status_code == 303
    edition = edition_row(app, edition_id)
    assert (edition.subject, edition.status) == ("Rettet", EditionStatus.SCHEDULED)


def test_a_change_made_elsewhere_is_seen_although_the_edition_was_loaded_before(app):
    """A view loads the edition, then calls the service: the service's locked read must
    see a send started meanwhile by another request or the scheduler."""
    edition_id = draft(app)
    with app.app_context():
        assert db.session.get(Edition, edition_id).status is EditionStatus.DRAFT
        with db.engine.begin() as elsewhere:
            elsewhere.execute(
                update(Edition).where(Edition.id == edition_id).values(status="sending")
            )
        with pytest.raises(editing.NotEditable):
            editing.update_draft(edition_id, subject="Nyt", body_markdown="")
        with pytest.raises(sending.EditionError):
            sending.schedule(edition_id, utcnow() + timedelta(hours=1))
        with pytest.raises(sending.EditionError):
            sending.start_send(edition_id)
        db.session.rollback()
    assert status_of(app, edition_id) is EditionStatus.SENDING


# --------------------------------------------------------------------------- preview


def test_preview_shows_exactly_the_text_a_subscriber_gets(mail_app, mail_editor, smtp_server):
    confirmed_audience(mail_app, 1)
    edition_id = draft(mail_app, body="Linje med **fed** og [et link](https://www.kl.dk)\n\næøå")
    with mail_app.app_context():
        editing.update_draft(
            edition_id,
            subject="Nyt fra bestyrelsesmødet",
            body_markdown="Linje med **fed** og [et link](https://www.kl.dk)\n\næøå",
            items=[sending.ItemInput(heading="Budget", text_markdown="Vedtaget.")],
        )
    page = page_text(mail_editor.get(f"/staff/editions/{edition_id}/preview"))
    shown = html.unescape(re.search(r'<pre[^>]*id="preview-text"[^>]*>(.*?)</pre>', page, re.S)[1])
    start(mail_app, edition_id)
    send_all(mail_app)
    [mail] = smtp_server.wait_for(1)
    received = mail.text.replace("\r\n", "\n")
    manage, unsubscribe = mail.link("/manage/"), mail.link("/unsubscribe/")
    sample = "http://localhost/manage"
    assert received.replace(manage, sample).replace(unsubscribe, sample) == shown
    assert "Budget" in shown and "et link (https://www.kl.dk)" in shown


def test_html_preview_is_the_subscribers_html_under_a_strict_policy(editor_client, app):
    edition_id = draft(app, body="<script>alert(1)</script>Hej")
    response = editor_client.get(f"/staff/editions/{edition_id}/preview.html")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    with app.test_request_context():
        edition = db.session.get(Edition, edition_id)
        expected = render_edition(
            edition, manage_url="http://localhost/manage", unsubscribe_url="http://localhost/manage"
        )
    assert response.get_data(as_text=True) == expected.html
    assert "<script>" not in expected.html


# --------------------------------------------------------------------------- test send


def test_test_send_goes_to_the_editor_and_the_listed_addresses_only(
    mail_app, mail_editor, smtp_server
):
    audience = confirmed_audience(mail_app, 3)
    edition_id = draft(mail_app)
    response = post_form(
        mail_editor,
        f"/staff/editions/{edition_id}/test",
        {"addresses": "Kollega@KL.dk, anden@kl.dk\nredaktoer@kl.dk\n"},
        page=f"/staff/editions/{edition_id}",
    )
    assert response.status_code == 303
    assert "Testen er på vej" in page_text(mail_editor.get(response.headers["Location"]))
    queued = queued_mails(mail_app, kind=editing.TEST_KIND)
    assert sorted(m.to_address for m in queued) == ["anden@kl.dk", "kollega@kl.dk", EDITOR]
    assert {m.subject for m in queued} == {"[TEST] Nyt fra bestyrelsesmødet"}
    # A test is not a send: no deliveries, and the edition is still a draft.
    with mail_app.app_context():
        assert db.session.scalar(select(func.count(Delivery.id))) == 0
    assert status_of(mail_app, edition_id) is EditionStatus.DRAFT
    deliver(mail_app)
    mails = smtp_server.wait_for(3)
    assert sorted(m.rcpt_to for m in mails) == ["anden@kl.dk", "kollega@kl.dk", EDITOR]
    assert not set(audience) & {m.rcpt_to for m in mails}
    mail = mails[0]
    assert mail.message["Subject"] == "[TEST] Nyt fra bestyrelsesmødet"
    assert "besluttet" in mail.text and "besluttet" in mail.html
    assert "/unsubscribe/" not in mail.text and mail.message["List-Unsubscribe"] is None


def test_test_send_with_a_bad_address_sends_nothing_and_says_which(editor_client, app):
    edition_id = draft(app)
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/test",
        {"addresses": "god@kl.dk, ikke-en-adresse, også@forkert"},
        page=f"/staff/editions/{edition_id}",
    )
    assert response.status_code == 422
    page = html.unescape(page_text(response))
    assert "ikke-en-adresse" in page and "også@forkert" in page
    assert "Intet er sendt" in page
    assert queued_mails(app) == []


def test_test_send_takes_at_most_five_more_addresses(editor_client, app):
    edition_id = draft(app)
    addresses = ", ".join(f"kollega{n}@kl.dk" for n in range(6))
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/test",
        {"addresses": addresses},
        page=f"/staff/editions/{edition_id}",
    )
    assert response.status_code == 422
    assert "højst 5 adresser" in page_text(response)
    assert queued_mails(app) == []


def test_test_sends_are_rate_limited_per_editor(make_app):
    app = make_app(RATELIMIT_TEST_SEND="2 per hour")
    make_staff(app, EDITOR, "editor")
    client = app.test_client()
    login(client, EDITOR)
    edition_id = draft(app)
    path = f"/staff/editions/{edition_id}/test"
    page = f"/staff/editions/{edition_id}"
    # Refused input does not use up the allowance.
    assert post_form(client, path, {"addresses": "nope"}, page=page).status_code == 422
    assert post_form(client, path, page=page).status_code == 303
    assert post_form(client, path, page=page).status_code == 303
    response = post_form(client, path, page=page)
    assert response.status_code == 429
    assert len(queued_mails(app, kind=editing.TEST_KIND)) == 2


# --------------------------------------------------------------------------- send, schedule


def test_send_confirmation_states_the_number_of_recipients(editor_client, app):
    confirmed_audience(app, 1234)
    confirmed_audience(app, 7, slug="momentum", prefix="other")
    edition_id = draft(app)
    page = page_text(editor_client.get(f"/staff/editions/{edition_id}/send"))
    assert "1.234 modtagere" in page
    assert "Nyt fra KL&#39;s bestyrelse" in page or "Nyt fra KL's bestyrelse" in page
    assert "Send nu" in page and 'type="datetime-local"' in page
    # Showing the confirmation changes nothing.
    assert status_of(app, edition_id) is EditionStatus.DRAFT


def test_send_now_starts_the_send_and_shows_its_progress(editor_client, app):
    confirmed_audience(app, 4)
    edition_id = draft(app)
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/send",
        page=f"/staff/editions/{edition_id}/send",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/staff/editions/{edition_id}/progress"
    assert status_of(app, edition_id) is EditionStatus.SENDING
    with app.app_context():
        assert db.session.scalar(select(func.count(Delivery.id))) == 4
    page = page_text(editor_client.get(response.headers["Location"]))
    assert "Udsendelsen er startet: 4 modtager(e)." in page
    assert 'src="/static/progress.js"' in page and 'aria-live="polite"' in page
    # Pressing the button again does not send twice; it shows the send.
    again = post_form(
        editor_client, f"/staff/editions/{edition_id}/send", page=f"/staff/editions/{edition_id}"
    )
    assert again.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(func.count(Delivery.id))) == 4


def test_a_sent_edition_cannot_be_sent_again(editor_client, app):
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
        sending.cancel(edition_id)
    page = editor_client.get(f"/staff/editions/{edition_id}/send")
    assert page.status_code == 409
    assert "kan ikke sendes" in page_text(page)


def test_scheduling_in_the_past_is_refused(editor_client, app, clock):
    edition_id = draft(app)
    past = (clock.local_now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/schedule",
        {"scheduled_at": past},
        page=f"/staff/editions/{edition_id}/send",
    )
    assert response.status_code == 422
    assert "Vælg et tidspunkt i fremtiden." in page_text(response)
    assert status_of(app, edition_id) is EditionStatus.DRAFT


def test_scheduling_takes_danish_time_and_can_be_undone(editor_client, app, clock):
    edition_id = draft(app)
    local = (clock.local_now() + timedelta(days=2)).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/schedule",
        {"scheduled_at": local.strftime("%Y-%m-%dT%H:%M")},
        page=f"/staff/editions/{edition_id}/send",
    )
    assert response.status_code == 303
    edition = edition_row(app, edition_id)
    assert edition.status is EditionStatus.SCHEDULED
    assert edition.scheduled_at == local.astimezone(UTC)
    assert "09.30" in page_text(editor_client.get(f"/staff/editions/{edition_id}")) or "09:30" in (
        page_text(editor_client.get(f"/staff/editions/{edition_id}"))
    )
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/unschedule",
        page=f"/staff/editions/{edition_id}",
    )
    assert response.status_code == 303
    edition = edition_row(app, edition_id)
    assert (edition.status, edition.scheduled_at) == (EditionStatus.DRAFT, None)


def test_unschedule_only_takes_scheduled_editions(app):
    edition_id = draft(app)
    with app.app_context():
        with pytest.raises(sending.EditionError, match="not scheduled"):
            sending.unschedule(edition_id)
        sending.schedule(edition_id, utcnow() + timedelta(hours=1))
        sending.unschedule(edition_id)
        # No longer due: the scheduler leaves it alone.
        db.session.get(Edition, edition_id).scheduled_at = utcnow() - timedelta(hours=1)
        db.session.commit()
        assert sending.start_scheduled() == 0
        assert db.session.get(Edition, edition_id).status is EditionStatus.DRAFT


def test_a_time_that_does_not_exist_in_denmark_is_refused(editor_client, app, clock):
    edition_id = draft(app)
    year = clock.local_now().year + 1
    # The last Sunday of March: the clocks go from 02:00 to 03:00.
    last_sunday = max(
        datetime(year, 3, day) for day in range(25, 32) if datetime(year, 3, day).weekday() == 6
    )
    response = post_form(
        editor_client,
        f"/staff/editions/{edition_id}/schedule",
        {"scheduled_at": last_sunday.strftime("%Y-%m-%dT02:30")},
        page=f"/staff/editions/{edition_id}/send",
    )
    assert response.status_code == 422
    assert status_of(app, edition_id) is EditionStatus.DRAFT


# --------------------------------------------------------------------------- progress


def test_progress_json_counts_the_send(mail_app, mail_editor, smtp_server):
    confirmed_audience(mail_app, 5)
    edition_id = draft(mail_app)
    start(mail_app, edition_id)
    path = f"/staff/editions/{edition_id}/progress.json"
    before = mail_editor.get(path).get_json()
    assert before["status"] == "sending" and before["status_label"] == "Sender"
    assert (before["recipients"], before["sent"], before["remaining"]) == (5, 0, 5)
    send_all(mail_app)
    after = mail_editor.get(path).get_json()
    assert after["status"] == "sent"
    assert {k: after[k] for k in ("recipients", "sent", "failed", "skipped", "remaining")} == {
        "recipients": 5,
        "sent": 5,
        "failed": 0,
        "skipped": 0,
        "remaining": 0,
    }
    assert after["possible_duplicates"] == 0 and after["rate_per_second"] > 0
    assert after["display"]["status"] == "Sendt"


def test_pause_resume_and_cancel_from_the_progress_page(editor_client, app):
    confirmed_audience(app, 3)
    edition_id = draft(app)
    start(app, edition_id)
    base = f"/staff/editions/{edition_id}"
    page = page_text(editor_client.get(f"{base}/progress"))
    assert f'action="{base}/pause"' in page and f'href="{base}/cancel"' in page

    assert post_form(editor_client, f"{base}/pause", page=f"{base}/progress").status_code == 303
    assert status_of(app, edition_id) is EditionStatus.PAUSED
    page = page_text(editor_client.get(f"{base}/progress"))
    assert "Udsendelsen er sat på pause" in page and f'action="{base}/resume"' in page

    # Pausing again is refused with a clear message, not an error page.
    response = post_form(editor_client, f"{base}/pause", page=f"{base}/progress")
    assert response.status_code == 303
    assert "kunne ikke sættes på pause" in page_text(editor_client.get(f"{base}/progress"))

    assert post_form(editor_client, f"{base}/resume", page=f"{base}/progress").status_code == 303
    assert status_of(app, edition_id) is EditionStatus.SENDING

    # Cancelling asks first; the question changes nothing.
    question = page_text(editor_client.get(f"{base}/cancel"))
    assert "Ja, annuller udsendelsen" in question
    assert status_of(app, edition_id) is EditionStatus.SENDING
    assert post_form(editor_client, f"{base}/cancel", page=f"{base}/cancel").status_code == 303
    assert status_of(app, edition_id) is EditionStatus.CANCELLED
    with app.app_context():
        assert sending.progress(edition_id).counts == {"cancelled": 3}
    assert editor_client.get(f"{base}/cancel").status_code == 409


# --------------------------------------------------------------------------- archive


def test_a_sent_edition_is_archived_and_readable(mail_app, mail_editor, smtp_server):
    confirmed_audience(mail_app, 2)
    edition_id = draft(mail_app)
    start(mail_app, edition_id)
    send_all(mail_app)
    page = page_text(mail_editor.get(f"/staff/editions/{edition_id}"))
    assert "Nyt fra bestyrelsesmødet" in page and "Sendt" in page
    assert "test" in page  # created_by of tests.support.editions.draft
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert facts["Modtagere"] == "2" and facts["Sendt"] == "2" and facts["Fejlet"] == "0"
    assert f'href="/editions/{edition_id}"' in page
    assert f'href="/staff/editions/{edition_id}/preview"' in page
    assert f'href="/staff/editions/{edition_id}/edit"' not in page
    assert mail_editor.get(f"/editions/{edition_id}").status_code == 200
    listing = page_text(mail_editor.get("/staff/newsletters/bestyrelse"))
    assert f"/staff/editions/{edition_id}" in listing.split('id="archive-heading"')[1]
