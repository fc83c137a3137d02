"""Staff sessions the server can end (issue 18, finding 9): a cookie captured before a
logout, a new password, a new role or a deactivation opens nothing afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletters.editions.models import Edition
from newsletters.extensions import db
from newsletters.staff import access, services
from newsletters.staff.models import StaffSession
from tests.support.appclock import AppClock, controlled_clock
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, login, login_redirect_target, make_staff

PASSWORD = "rigtig-hest-batteri-hæfteklamme"


@pytest.fixture
def clock() -> Iterator[AppClock]:
    yield from controlled_clock()


def _captured(client: FlaskClient, app: Flask) -> FlaskClient:
    """Another client holding a copy of `client`'s cookies (what an attacker captured)."""
    thief = app.test_client()
    for cookie in client._cookies.values():
        thief.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return thief


def _new_edition(client: FlaskClient, token: str):
    return client.post(
        "/staff/newsletters/momentum/editions/new",
        data={"csrf_token": token, "subject": "Skrevet med en stjålen cookie", "body": "Tekst"},
    )


def _editions(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Edition))


@pytest.fixture
def editor_id(app: Flask) -> int:
    return make_staff(app, EDITOR, "editor")


@pytest.fixture
def logged_in(client: FlaskClient, editor_id: int) -> FlaskClient:
    assert login(client, EDITOR).status_code == 303
    return client


def test_a_cookie_captured_before_logout_opens_nothing_after_it(logged_in, app):
    thief = _captured(logged_in, app)
    token = csrf_token(thief.get("/staff/newsletters/momentum/editions/new").data)
    assert _new_edition(thief, token).status_code == 303
    assert _editions(app) == 1
    logout = csrf_token(logged_in.get("/staff/").data)
    assert logged_in.post("/staff/logout", data={"csrf_token": logout}).status_code == 303

    assert login_redirect_target(thief.get("/staff/")) == "/staff/"
    response = _new_edition(thief, token)
    assert response.status_code in (302, 303, 400)
    assert response.status_code == 400 or "/staff/login" in response.headers["Location"]
    assert _editions(app) == 1
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert row.ended_at is not None and row.end_reason == "logout"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda staff_id: services.set_password(staff_id, "et-helt-nyt-kodeord-2026"),
            "password_changed",
        ),
        (lambda staff_id: services.set_role(staff_id, "admin"), "role"),
        (lambda staff_id: services.deactivate(staff_id), "deactivated"),
    ],
    ids=["password", "role", "deactivation"],
)
def test_a_captured_cookie_stops_working_at_once(logged_in, app, editor_id, change, reason):
    thief = _captured(logged_in, app)
    assert thief.get("/staff/").status_code == 200
    make_staff(app, ADMIN, "admin")
    with app.app_context():
        change(editor_id)
    for client in (thief, logged_in):
        assert login_redirect_target(client.get("/staff/")) == "/staff/"
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert row.end_reason == reason


def test_only_the_session_logged_out_ends(client, app, editor_id):
    other = app.test_client()
    assert login(client, EDITOR).status_code == 303
    assert login(other, EDITOR).status_code == 303
    token = csrf_token(client.get("/staff/").data)
    client.post("/staff/logout", data={"csrf_token": token})
    assert client.get("/staff/").status_code == 302
    assert other.get("/staff/").status_code == 200


def test_idle_time_and_lifetime_are_the_servers_not_the_cookies(make_app, clock):
    app = make_app(STAFF_IDLE_MINUTES=30)
    make_staff(app)
    client = app.test_client()
    login(client, EDITOR)
    # Nothing the cookie says about times counts: rewriting it does not help.
    with client.session_transaction() as session:
        session["staff_seen_at"] = 10**12
        session["_fresh"] = True
    clock.advance(minutes=31)
    assert client.get("/staff/").status_code == 302
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert row.end_reason == "idle"


def test_a_forged_session_secret_opens_nothing(logged_in, app):
    with logged_in.session_transaction() as session:
        session[access.SESSION_KEY] = "x" * 43
    assert logged_in.get("/staff/").status_code == 302
    for value in (None, 12, ["a"], "", "\x00" * 10000):
        with logged_in.session_transaction() as session:
            session["_user_id"] = "1:1"
            session[access.SESSION_KEY] = value
        assert logged_in.get("/staff/").status_code == 302


def test_a_session_of_one_account_does_not_open_another(client, app, editor_id):
    admin_id = make_staff(app, ADMIN, "admin")
    login(client, EDITOR)
    with client.session_transaction() as session:
        session["_user_id"] = f"{admin_id}:1"
    assert client.get("/staff/users").status_code == 302


def test_the_database_keeps_no_usable_secret(logged_in, app):
    with logged_in.session_transaction() as session:
        secret = session[access.SESSION_KEY]
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert secret not in row.secret_hash and len(row.secret_hash) == 64
        assert row.ip == "127.0.0.1"


def test_sessions_can_be_listed_and_ended_by_their_owner_or_an_administrator(
    client, app, editor_id, clock
):
    other = app.test_client()
    other.environ_base["HTTP_USER_AGENT"] = "Firefox på arbejdet"
    login(client, EDITOR)
    login(other, EDITOR)
    admin_id = make_staff(app, ADMIN, "admin")
    with app.app_context():
        sessions = services.active_sessions(editor_id)
        assert [s.user_agent for s in sessions][0] == "Firefox på arbejdet"
        assert len(sessions) == 2
        assert {s.staff_id for s in services.active_sessions()} == {editor_id}
        first = sessions[1].id
        # Another account cannot end it as its own.
        assert services.end_session(first, owner_id=admin_id) is False
        assert services.end_session(first, owner_id=editor_id) is True
        assert services.end_session(first, owner_id=editor_id) is False
    assert client.get("/staff/").status_code == 302
    assert other.get("/staff/").status_code == 200
    with app.app_context():
        assert services.end_sessions(editor_id) == 1
    assert other.get("/staff/").status_code == 302
    # Idle ones are not listed as active.
    login(client, EDITOR)
    clock.advance(minutes=61)
    with app.app_context():
        assert services.active_sessions(editor_id) == []


def test_the_last_administrator_keeps_their_role(app):
    admin_id = make_staff(app, ADMIN, "admin")
    with app.app_context(), pytest.raises(services.LastAdmin):
        services.set_role(admin_id, "editor")


def test_cli_set_role_ends_the_sessions(runner, app, logged_in):
    result = runner.invoke(args=["staff", "set-role", EDITOR, "admin"])
    assert result.exit_code == 0, result.output
    assert "is now admin" in result.output
    assert logged_in.get("/staff/").status_code == 302
    # An administrator now: two factors must be set up before anything else.
    response = login(logged_in, EDITOR)
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/two-factor/setup"
    assert logged_in.get("/staff/users").status_code == 302
    result = runner.invoke(args=["staff", "set-role", "ingen@kl.dk", "editor"])
    assert result.exit_code == 1 and "no staff account" in result.output


def test_a_new_address_keeps_the_session_and_a_new_browser_ends_it(logged_in, app):
    # Phones change networks and dual-stack machines alternate IPv4 and IPv6 mid-session.
    logged_in.environ_base["REMOTE_ADDR"] = "2001:db8::7"
    assert logged_in.get("/staff/").status_code == 200
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert row.ip == "2001:db8::7" and row.ended_at is None
    logged_in.environ_base["HTTP_USER_AGENT"] = "curl/8.0"
    assert logged_in.get("/staff/").status_code == 302
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert row.ended_at is not None and row.end_reason == "other_client"
