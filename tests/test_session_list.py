"""A staff member's list of sessions (issue 14): what each is, ending one or all the others
(POST with the CSRF token), an administrator ending anyone's, each end in the audit log."""

from __future__ import annotations

import json
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from newsletters.staff import devices
from newsletters.staff.models import StaffSession
from tests.support.pages import csrf_token
from tests.test_labels import PACKAGE, _calls
from tests.test_staff import ADMIN, EDITOR, login, make_staff

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


def browser(app: Flask, user_agent: str, ip: str = "192.0.2.10") -> FlaskClient:
    client = app.test_client()
    client.environ_base.update({"HTTP_USER_AGENT": user_agent, "REMOTE_ADDR": ip})
    return client


def session_ids(app: Flask, *, open_only: bool = True) -> list[int]:
    with app.app_context():
        query = select(StaffSession.id).order_by(StaffSession.id)
        if open_only:
            query = query.where(StaffSession.ended_at.is_(None))
        ids = list(db.session.scalars(query))
        db.session.remove()
        return ids


def actions(app: Flask, name: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == name)).all()
        out = [{"target": r.target, **json.loads(r.details)} for r in rows]
        db.session.remove()
        return out


def test_the_list_shows_each_session_and_ends_another(app, clock):
    make_staff(app, EDITOR, "editor")
    laptop = browser(app, FIREFOX, "192.0.2.10")
    phone = browser(app, SAFARI, "198.51.100.20")
    assert login(laptop, EDITOR).status_code == 303
    assert login(phone, EDITOR).status_code == 303
    page = laptop.get("/staff/sessions").get_data(as_text=True)
    assert "Dine sessioner" in page
    assert "Firefox på Windows" in page and "Safari på iPhone" in page
    assert "192.0.2.10" in page and "198.51.100.20" in page
    assert "Adgangskode" in page and "(denne session)" in page
    laptop_id, phone_id = session_ids(app)

    # A GET changes nothing; a POST without the token is refused.
    assert laptop.get(f"/staff/sessions/{phone_id}/end").status_code == 405
    assert laptop.post(f"/staff/sessions/{phone_id}/end").status_code == 400
    assert session_ids(app) == [laptop_id, phone_id]

    response = laptop.post(f"/staff/sessions/{phone_id}/end", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303
    assert session_ids(app) == [laptop_id]
    assert phone.get("/staff/").status_code == 302
    assert laptop.get("/staff/").status_code == 200
    [entry] = actions(app, "staff.session_end")
    assert entry["session"] == phone_id


def test_ending_ones_own_session_logs_out(app, clock):
    make_staff(app, EDITOR, "editor")
    client = browser(app, FIREFOX)
    assert login(client, EDITOR).status_code == 303
    [own] = session_ids(app)
    token = csrf_token(client.get("/staff/sessions").data)
    response = client.post(f"/staff/sessions/{own}/end", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/staff/login"
    assert client.get("/staff/").status_code == 302


def test_end_all_other_sessions_keeps_this_one(app, clock):
    make_staff(app, EDITOR, "editor")
    clients = [browser(app, FIREFOX), browser(app, SAFARI), browser(app, FIREFOX, "192.0.2.99")]
    for client in clients:
        assert login(client, EDITOR).status_code == 303
    first = session_ids(app)[0]
    token = csrf_token(clients[0].get("/staff/sessions").data)
    response = clients[0].post("/staff/sessions/end-others", data={"csrf_token": token})
    assert response.status_code == 303
    assert session_ids(app) == [first]
    assert [e["count"] for e in actions(app, "staff.sessions_end")] == [2]


def test_nobody_ends_another_persons_session_from_their_own_list(app, clock):
    make_staff(app, EDITOR, "editor")
    make_staff(app, "anden@kl.dk", "editor")
    mine, theirs = browser(app, FIREFOX), browser(app, SAFARI)
    assert login(mine, EDITOR).status_code == 303
    assert login(theirs, "anden@kl.dk").status_code == 303
    _, their_id = session_ids(app)
    token = csrf_token(mine.get("/staff/sessions").data)
    for bad in (their_id, 0, 999999999, 2**62):
        assert mine.post(f"/staff/sessions/{bad}/end", data={"csrf_token": token}).status_code in (
            404,
        ), bad
    assert mine.post("/staff/sessions/-1/end", data={"csrf_token": token}).status_code == 404
    assert theirs.get("/staff/").status_code == 200
    # Nor see an administrator's view of them.
    assert mine.get("/staff/users/2/sessions").status_code == 403


def test_an_administrator_ends_anyones_sessions_from_the_staff_page(app, clock):
    make_staff(app, ADMIN, "admin")
    editor_id = make_staff(app, EDITOR, "editor")
    admin = browser(app, FIREFOX)
    editor = browser(app, SAFARI)
    assert login(admin, ADMIN).status_code == 303
    assert login(editor, EDITOR).status_code == 303
    users = admin.get("/staff/users").get_data(as_text=True)
    assert f'href="/staff/users/{editor_id}/sessions"' in users
    page = admin.get(f"/staff/users/{editor_id}/sessions").get_data(as_text=True)
    assert f"Sessioner for {EDITOR}" in page and "Safari på iPhone" in page
    [editor_session] = [
        int(n) for n in re.findall(rf"/staff/users/{editor_id}/sessions/(\d+)/end", page)
    ]
    response = admin.post(
        f"/staff/users/{editor_id}/sessions/{editor_session}/end",
        data={"csrf_token": csrf_token(page)},
    )
    assert response.status_code == 303
    assert editor.get("/staff/").status_code == 302
    assert admin.get("/staff/").status_code == 200
    [entry] = actions(app, "staff.session_end")
    assert entry["target"] == f"staff:{editor_id}"
    # All of them at once, too.
    assert login(editor, EDITOR).status_code == 303
    page = admin.get(f"/staff/users/{editor_id}/sessions").get_data(as_text=True)
    response = admin.post(
        f"/staff/users/{editor_id}/sessions/end", data={"csrf_token": csrf_token(page)}
    )
    assert response.status_code == 303
    assert editor.get("/staff/").status_code == 302
    assert (
        admin.post(
            "/staff/users/999999/sessions/end", data={"csrf_token": csrf_token(page)}
        ).status_code
        == 404
    )


def test_logging_out_is_audited(app, clock):
    make_staff(app, EDITOR, "editor")
    client = browser(app, FIREFOX)
    assert login(client, EDITOR).status_code == 303
    token = csrf_token(client.get("/staff/").data)
    assert client.post("/staff/logout", data={"csrf_token": token}).status_code == 303
    assert len(actions(app, "staff.logout")) == 1
    assert [e["login_method"] for e in actions(app, "staff.login")] == ["password"]


def test_devices_are_named_from_the_user_agent():
    assert devices.describe(FIREFOX) == devices.Device("Firefox", "Windows")
    assert devices.describe(SAFARI) == devices.Device("Safari", "iPhone")
    edge = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Chrome/131.0 Safari/537.36 Edg/131.0"
    assert devices.describe(edge) == devices.Device("Microsoft Edge", "macOS")
    assert devices.describe("") == devices.Device(None, None)
    assert devices.describe("\x00" * 100_000) == devices.Device(None, None)


def test_every_announced_action_has_a_label():
    from newsletters import labels

    announced = {s for s in _calls({"announce"}) if re.fullmatch(r"[a-z_]+\.[a-z_]+", s)}
    assert {"staff.login", "staff.login_failed", "staff.invite"} <= announced
    missing = sorted(a for a in announced if a not in labels.AUDIT_ACTION)
    assert missing == [], "add them to labels.AUDIT_ACTION"
    assert PACKAGE.name == "newsletters"
