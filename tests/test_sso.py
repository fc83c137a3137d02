"""Staff sign-in by OpenID Connect (issue 14), against a real provider on loopback
(tests/support/oidc.py): code flow with PKCE, state and nonce, roles from a claim,
invitations, role changes at the next sign-in, refusals with a Danish page and an audit
entry, and LOCAL_LOGIN_ENABLED."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletters import ConfigurationError, create_app
from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from newsletters.staff import oidc, services
from newsletters.staff.models import Staff, StaffInvitation, StaffRole, StaffSession
from tests.conftest import base_config
from tests.support.oidc import CLIENT_ID, CLIENT_SECRET, Provider
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, PASSWORD, login, make_staff

ADMIN_ROLE = "Nyhedsbreve.Admin"
EDITOR_ROLE = "Nyhedsbreve.Redaktør"


@pytest.fixture
def provider() -> Iterator[Provider]:
    oidc.forget_provider()
    server = Provider().start()
    yield server
    server.stop()
    oidc.forget_provider()


def sso_config(provider: Provider, **extra) -> dict:
    config = {
        "OIDC_ISSUER": provider.url,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_ADMIN_ROLES": [ADMIN_ROLE],
        # As it comes from the environment: comma-separated.
        "OIDC_EDITOR_ROLES": f"Andet, {EDITOR_ROLE}",
        "OIDC_PROVIDER_NAME": "Microsoft",
    }
    config.update(extra)
    return config


@pytest.fixture
def app(make_app: Callable[..., Flask], provider: Provider, clock) -> Flask:
    return make_app(**sso_config(provider))


def start(client: FlaskClient, next_url: str = "") -> str:
    """Press "Log ind med ..." on the login page: the provider's URL it sends us to."""
    page = client.get("/staff/login")
    assert "Log ind med Microsoft" in page.get_data(as_text=True)
    response = client.post(
        "/staff/login/sso", data={"csrf_token": csrf_token(page.data), "next": next_url}
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"]


def back(client: FlaskClient, callback_url: str):
    """The browser comes back from the provider to our callback."""
    parts = urlsplit(callback_url)
    assert parts.path == "/staff/login/sso/callback", callback_url
    return client.get(f"{parts.path}?{parts.query}")


def sso_login(client: FlaskClient, provider: Provider, sub: str, next_url: str = ""):
    return back(client, provider.authorize(start(client, next_url), sub))


def staff_of(app: Flask, sub: str) -> Staff | None:
    with app.app_context():
        staff = db.session.scalar(select(Staff).where(Staff.oidc_subject == sub))
        if staff is not None:
            db.session.expunge(staff)
        db.session.remove()
        return staff


def audit(app: Flask, action: str) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        ).all()
        out = [(row.target, json.loads(row.details)) for row in rows]
        db.session.remove()
        return out


def assert_logged_in(client: FlaskClient) -> None:
    assert client.get("/staff/").status_code == 200


def assert_not_logged_in(client: FlaskClient) -> None:
    response = client.get("/staff/")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# --------------------------------------------------------------------------- signing in


def test_sign_in_with_a_role_in_the_claim_makes_the_account_and_a_session(app, client, provider):
    provider.set_user(
        "anna-sub", {"email": "Anna@KL.dk", "name": "Anna Jensen", "roles": [EDITOR_ROLE]}
    )
    url = start(client)
    query = parse_qs(urlsplit(url).query)
    # The code flow with PKCE (S256), state and nonce.
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert query["state"][0] and query["nonce"][0] and query["code_challenge"][0]
    response = back(client, provider.authorize(url, "anna-sub"))
    assert response.status_code == 303 and response.headers["Location"] == "/staff/"
    assert_logged_in(client)
    assert provider.pkce.verified == 1

    staff = staff_of(app, "anna-sub")
    assert (staff.email, staff.name, staff.role) == ("anna@kl.dk", "Anna Jensen", StaffRole.EDITOR)
    assert staff.oidc_issuer == provider.url and staff.role_from_provider
    with app.app_context():
        [row] = db.session.scalars(select(StaffSession)).all()
        assert row.login_method == "oidc" and row.staff_id == staff.id
    assert audit(app, "staff.login") == [(f"staff:{staff.id}", {"login_method": "oidc"})]
    [(_, created)] = audit(app, "staff.create")
    assert created["via"] == "oidc" and created["role"] == "editor"
    assert not created["invited"]


def test_an_admin_role_in_the_claim_makes_an_administrator(app, client, provider):
    provider.set_user("bo", {"email": "bo@kl.dk", "roles": ["Andet", ADMIN_ROLE, EDITOR_ROLE]})
    assert sso_login(client, provider, "bo").status_code == 303
    assert staff_of(app, "bo").role is StaffRole.ADMIN
    assert client.get("/staff/users").status_code == 200


def test_next_page_is_kept_through_the_provider(app, client, provider):
    provider.set_user("bo", {"email": "bo@kl.dk", "roles": [ADMIN_ROLE]})
    response = sso_login(client, provider, "bo", next_url="/staff/users")
    assert response.headers["Location"] == "/staff/users"


def test_an_open_redirect_in_next_is_dropped(app, client, provider):
    provider.set_user("bo", {"email": "bo@kl.dk", "roles": [ADMIN_ROLE]})
    response = sso_login(client, provider, "bo", next_url="//evil.example/x")
    assert response.headers["Location"] == "/staff/"


def test_an_unknown_person_without_a_role_gets_no_account(app, client, provider):
    provider.set_user("eve", {"email": "eve@kl.dk", "roles": ["Noget.Andet"]})
    response = sso_login(client, provider, "eve")
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Du har ikke adgang" in page and "Traceback" not in page
    assert staff_of(app, "eve") is None
    assert_not_logged_in(client)
    [(target, details)] = audit(app, "staff.login_failed")
    assert target == "staff:unknown"
    assert details["reason"] == "unknown_person" and details["login_method"] == "oidc"


def test_an_invited_person_is_admitted_with_the_invitations_role(app, make_app, client, provider):
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    page = admin.get("/staff/users").get_data(as_text=True)
    assert "Invitationer til single sign-on" in page
    response = admin.post(
        "/staff/invitations",
        data={"csrf_token": csrf_token(page), "email": " Carl@KL.dk ", "role": "admin"},
    )
    assert response.status_code == 303
    assert "carl@kl.dk" in admin.get("/staff/users").get_data(as_text=True)
    [(_, invited)] = audit(app, "staff.invite")
    assert invited == {"email": "carl@kl.dk", "role": "admin"}

    provider.set_user("carl", {"email": "carl@kl.dk"})  # no roles claim at all
    assert sso_login(client, provider, "carl").status_code == 303
    staff = staff_of(app, "carl")
    assert staff.role is StaffRole.ADMIN and not staff.role_from_provider
    with app.app_context():
        assert db.session.scalars(select(StaffInvitation)).all() == []
    created = audit(app, "staff.create")[-1][1]
    assert created["invited"] is True
    # The role stays this app's: a later sign-in without a role claim keeps it.
    client2 = app.test_client()
    assert sso_login(client2, provider, "carl").status_code == 303
    assert staff_of(app, "carl").role is StaffRole.ADMIN


def test_invitations_are_refused_for_existing_accounts_and_bad_addresses(app, provider):
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    for email in (ADMIN, "ikke en adresse", "a@kl.dk\r\nBcc: x@evil.example", "x" * 400):
        token = csrf_token(admin.get("/staff/users").data)
        response = admin.post(
            "/staff/invitations", data={"csrf_token": token, "email": email, "role": "editor"}
        )
        assert response.status_code == 422, email
    token = csrf_token(admin.get("/staff/users").data)
    bad_role = admin.post(
        "/staff/invitations", data={"csrf_token": token, "email": "d@kl.dk", "role": "root"}
    )
    assert bad_role.status_code == 422
    assert admin.post("/staff/invitations", data={"email": "d@kl.dk"}).status_code == 400
    with app.app_context():
        assert db.session.scalars(select(StaffInvitation)).all() == []


def test_an_invitation_can_be_withdrawn(app, provider):
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    token = csrf_token(admin.get("/staff/users").data)
    admin.post(
        "/staff/invitations", data={"csrf_token": token, "email": "d@kl.dk", "role": "editor"}
    )
    with app.app_context():
        [invitation] = db.session.scalars(select(StaffInvitation)).all()
        invitation_id = invitation.id
    token = csrf_token(admin.get("/staff/users").data)
    assert admin.get(f"/staff/invitations/{invitation_id}/withdraw").status_code == 405
    response = admin.post(
        f"/staff/invitations/{invitation_id}/withdraw", data={"csrf_token": token}
    )
    assert response.status_code == 303
    response = admin.post(
        f"/staff/invitations/{invitation_id}/withdraw", data={"csrf_token": token}
    )
    assert response.status_code == 404
    assert len(audit(app, "staff.invite_withdraw")) == 1
    provider.set_user("d", {"email": "d@kl.dk"})
    assert sso_login(app.test_client(), provider, "d").status_code == 403


def _admin(app: Flask) -> FlaskClient:
    """A fresh administrator's login (a moved clock ends an idle one)."""
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    return admin


def _invite(admin: FlaskClient, email: str, role: str = "editor"):
    token = csrf_token(admin.get("/staff/users").data)
    return admin.post(
        "/staff/invitations", data={"csrf_token": token, "email": email, "role": role}
    )


def test_an_invitation_expires_after_seven_days_with_a_danish_refusal(app, client, provider, clock):
    assert app.config["STAFF_INVITATION_MAX_AGE_DAYS"] == 7
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    invited_at = clock()
    assert _invite(admin, "dora@kl.dk").status_code == 303
    page = admin.get("/staff/users").get_data(as_text=True)
    assert "En invitation udløber efter 7 dage" in page and "Udløbet" not in page

    clock.set(invited_at + timedelta(days=7, seconds=1))
    admin = _admin(app)
    page = admin.get("/staff/users").get_data(as_text=True)
    assert "Udløbet" in page and "dora@kl.dk" in page
    provider.set_user("dora", {"email": "dora@kl.dk"})
    response = sso_login(client, provider, "dora")
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "Din invitation til nyhedsbrevenes medarbejdersider er udløbet" in text
    assert "Traceback" not in text
    assert staff_of(app, "dora") is None
    assert_not_logged_in(client)
    [(target, details)] = audit(app, "staff.login_failed")
    assert details["reason"] == "invitation_expired"
    with app.app_context():
        # Refused, not used up: it stays on the page, shown as expired.
        assert [i.email for i in db.session.scalars(select(StaffInvitation))] == ["dora@kl.dk"]

    # Inviting the address again renews it.
    assert _invite(admin, "dora@kl.dk").status_code == 303
    assert "Udløbet" not in admin.get("/staff/users").get_data(as_text=True)
    assert sso_login(app.test_client(), provider, "dora").status_code == 303
    assert staff_of(app, "dora").role is StaffRole.EDITOR


def test_an_invitation_admits_until_the_last_moment_of_its_days(make_app, provider, clock):
    app = make_app(**sso_config(provider, STAFF_INVITATION_MAX_AGE_DAYS=2))
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    invited_at = clock()
    _invite(admin, "eva@kl.dk")
    assert "En invitation udløber efter 2 dage" in admin.get("/staff/users").get_data(as_text=True)
    clock.set(invited_at + timedelta(days=2) - timedelta(seconds=5))
    provider.set_user("eva", {"email": "eva@kl.dk"})
    assert sso_login(app.test_client(), provider, "eva").status_code == 303


@pytest.mark.parametrize("days", [0, -1, 366, 1.5, "7", True, None])
def test_an_invitation_lifetime_that_is_not_whole_days_is_refused_at_start(
    days, database_url, provider
):
    config = {**base_config(database_url), **sso_config(provider)}
    with pytest.raises(ConfigurationError, match="STAFF_INVITATION_MAX_AGE_DAYS"):
        create_app({**config, "STAFF_INVITATION_MAX_AGE_DAYS": days})


def test_a_role_in_the_claim_admits_even_with_an_expired_invitation(app, provider, clock):
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    invited_at = clock()
    _invite(admin, "finn@kl.dk", "editor")
    clock.set(invited_at + timedelta(days=30))
    provider.set_user("finn", {"email": "finn@kl.dk", "roles": [ADMIN_ROLE]})
    assert sso_login(app.test_client(), provider, "finn").status_code == 303
    assert staff_of(app, "finn").role is StaffRole.ADMIN
    with app.app_context():
        assert db.session.scalars(select(StaffInvitation)).all() == []


def test_an_expired_invitation_of_another_address_admits_nobody(app, provider, clock):
    # Hostile: the invited address in another case, with CRLF, or an absurd one.
    make_staff(app, ADMIN, "admin")
    admin = app.test_client()
    assert login(admin, ADMIN).status_code == 303
    invited_at = clock()
    _invite(admin, "gry@kl.dk")
    clock.set(invited_at + timedelta(days=8))
    for sub, email in (
        ("g1", "GRY@KL.DK"),
        ("g2", "gry@kl.dk\r\nBcc: x@evil.example"),
        ("g3", "x" * 400 + "@kl.dk"),
    ):
        provider.set_user(sub, {"email": email})
        response = sso_login(app.test_client(), provider, sub)
        assert response.status_code == 403, email
        assert staff_of(app, sub) is None


def test_a_role_change_in_the_claim_takes_effect_at_the_next_sign_in(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    assert sso_login(client, provider, "anna").status_code == 303
    assert client.get("/staff/users").status_code == 403

    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [ADMIN_ROLE]})
    # Not before the next sign-in: the session goes on with the old role.
    assert client.get("/staff/users").status_code == 403
    other = app.test_client()
    assert sso_login(other, provider, "anna").status_code == 303
    assert staff_of(app, "anna").role is StaffRole.ADMIN
    assert other.get("/staff/users").status_code == 200
    # The session granted for the old role has ended.
    assert_not_logged_in(client)
    [(_, change)] = audit(app, "staff.role_change")
    assert change["old"] == "editor" and change["new"] == "admin" and change["sessions"] == 1


def test_a_role_taken_away_in_the_claim_refuses_the_next_sign_in(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    assert sso_login(client, provider, "anna").status_code == 303
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": []})
    response = sso_login(app.test_client(), provider, "anna")
    assert response.status_code == 403 and "taget fra dig" in response.get_data(as_text=True)
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "no_role"


def test_a_changed_address_follows_the_person_not_a_second_account(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    assert sso_login(client, provider, "anna").status_code == 303
    provider.set_user("anna", {"email": "anna.jensen@kl.dk", "roles": [EDITOR_ROLE]})
    assert sso_login(app.test_client(), provider, "anna").status_code == 303
    with app.app_context():
        [staff] = db.session.scalars(select(Staff)).all()
        assert staff.email == "anna.jensen@kl.dk"


def test_a_cli_account_is_linked_by_its_address(app, client, provider):
    staff_id = make_staff(app, EDITOR, "editor")
    provider.set_user("red", {"email": EDITOR})
    assert sso_login(client, provider, "red").status_code == 303
    staff = staff_of(app, "red")
    assert staff.id == staff_id and staff.role is StaffRole.EDITOR
    assert len(audit(app, "staff.sso_link")) == 1
    # Another person at the provider with that address later takes nothing over.
    provider.set_user("mallory", {"email": EDITOR, "roles": [ADMIN_ROLE]})
    response = sso_login(app.test_client(), provider, "mallory")
    assert response.status_code == 403
    assert staff_of(app, "mallory") is None
    assert staff_of(app, "red").role is StaffRole.EDITOR


def test_an_unverified_address_links_nothing(app, client, provider):
    make_staff(app, ADMIN, "admin")
    provider.set_user("mallory", {"email": ADMIN, "email_verified": False})
    assert sso_login(client, provider, "mallory").status_code == 403
    assert staff_of(app, "mallory") is None


def test_a_deactivated_account_cannot_sign_in_by_sso(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    assert sso_login(client, provider, "anna").status_code == 303
    make_staff(app, ADMIN, "admin")
    with app.app_context():
        services.deactivate(staff_of(app, "anna").id)
    response = sso_login(app.test_client(), provider, "anna")
    assert response.status_code == 403 and "deaktiveret" in response.get_data(as_text=True)
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "deactivated"


# --------------------------------------------------------------------------- refusals


def test_denied_consent_shows_a_danish_page(app, client, provider):
    callback = provider.authorize(start(client), None, deny=True)
    response = back(client, callback)
    assert response.status_code == 403
    assert "afbrudt" in response.get_data(as_text=True)
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "denied"
    assert_not_logged_in(client)


def test_a_forged_state_is_refused(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    callback = provider.authorize(start(client), "anna")
    response = back(client, with_query(callback, state="forged"))
    assert response.status_code == 400
    assert "Start forfra" in response.get_data(as_text=True)
    assert staff_of(app, "anna") is None
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "bad_state"
    # The flow is used up: the genuine callback after it is refused too.
    assert back(client, callback).status_code == 400


def test_a_callback_from_another_browser_is_refused(app, client, provider):
    """Login CSRF: an attacker's code and state, planted in the victim's browser."""
    provider.set_user("mallory", {"email": "m@kl.dk", "roles": [EDITOR_ROLE]})
    attacker = app.test_client()
    callback = provider.authorize(start(attacker), "mallory")
    assert back(client, callback).status_code == 400
    assert_not_logged_in(client)


def test_a_replayed_code_is_refused(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    callback = provider.authorize(start(client), "anna")
    assert back(client, callback).status_code == 303
    # The same code again, with a fresh, valid flow of another browser.
    other = app.test_client()
    fresh = parse_qs(urlsplit(start(other)).query)["state"][0]
    response = back(other, with_query(callback, state=fresh))
    assert response.status_code == 400
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "token_refused"
    assert_not_logged_in(other)


def test_a_wrong_nonce_is_refused(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    callback = provider.authorize(start(client), "anna")
    with client.session_transaction() as session:
        session["oidc_flow"] = {**session["oidc_flow"], "nonce": "another-nonce"}
    response = back(client, callback)
    assert response.status_code == 400
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "bad_token"
    assert staff_of(app, "anna") is None


def test_a_wrong_code_verifier_is_refused_by_the_provider(app, client, provider):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    callback = provider.authorize(start(client), "anna")
    with client.session_transaction() as session:
        session["oidc_flow"] = {**session["oidc_flow"], "verifier": "x" * 64}
    assert back(client, callback).status_code == 400
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "token_refused"


def test_an_old_flow_is_refused(app, client, provider, clock):
    provider.set_user("anna", {"email": "anna@kl.dk", "roles": [EDITOR_ROLE]})
    callback = provider.authorize(start(client), "anna")
    clock.advance(minutes=11)
    assert back(client, callback).status_code == 400
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "expired"


def test_a_provider_that_does_not_answer_gives_a_danish_page(make_app, clock):
    from tests.support.smtp import free_port

    oidc.forget_provider()
    app = make_app(
        OIDC_ISSUER=f"http://127.0.0.1:{free_port()}",
        OIDC_CLIENT_ID=CLIENT_ID,
        OIDC_TIMEOUT_SECONDS=2,
    )
    client = app.test_client()
    page = client.get("/staff/login")
    response = client.post("/staff/login/sso", data={"csrf_token": csrf_token(page.data)})
    text = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "svarer ikke" in text and "Traceback" not in text
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "provider_unavailable"


def test_starting_a_sign_in_needs_a_post_with_the_csrf_token(app, client):
    assert client.get("/staff/login/sso").status_code == 405
    assert client.post("/staff/login/sso").status_code == 400


def test_hostile_callbacks_get_a_clear_page_never_a_500(app, client, provider):
    start(client)
    for query in (
        {"code": "x" * 10000, "state": "s"},
        {"code": "a\r\nb", "state": "\x00"},
        {"error": "access_denied\r\nSet-Cookie: x=y"},
        {},
        {"state": "ä" * 5000},
    ):
        response = client.get("/staff/login/sso/callback?" + urlencode(query))
        assert response.status_code in (400, 403, 502), query
        assert "Traceback" not in response.get_data(as_text=True)
        assert "x=y" not in response.headers.get("Set-Cookie", "")


def test_crlf_in_claims_is_not_stored(app, client, provider):
    provider.set_user(
        "anna",
        {"email": "anna@kl.dk", "name": "Anna\r\nBcc: x@evil.example", "roles": [EDITOR_ROLE]},
    )
    assert sso_login(client, provider, "anna").status_code == 303
    assert staff_of(app, "anna").name == ""
    provider.set_user("bo", {"email": "bo@kl.dk\r\nBcc: x@evil.example", "roles": [EDITOR_ROLE]})
    response = sso_login(app.test_client(), provider, "bo")
    assert response.status_code == 403
    assert staff_of(app, "bo") is None
    provider.set_user("a\r\nb", {"email": "ab@kl.dk", "roles": [EDITOR_ROLE]})
    response = sso_login(app.test_client(), provider, "a\r\nb")
    assert response.status_code in (400, 403)
    with app.app_context():
        assert db.session.scalar(select(Staff).where(Staff.email == "ab@kl.dk")) is None


def test_huge_claims_are_handled(app, client, provider):
    # Many long roles and a name far too long: admitted, the name not kept.
    roles = [f"gruppe-{i}-" + "x" * 100 for i in range(200)] + [EDITOR_ROLE]
    provider.set_user("anna", {"email": "anna@kl.dk", "name": "A" * 5000, "roles": roles})
    assert sso_login(client, provider, "anna").status_code == 303
    assert staff_of(app, "anna").name == ""
    # An ID token beyond what joserfc reads (128 KiB): refused, cleanly.
    provider.set_user("bo", {"email": "bo@kl.dk", "blob": "y" * 150_000, "roles": [EDITOR_ROLE]})
    response = sso_login(app.test_client(), provider, "bo")
    assert response.status_code == 400 and "Traceback" not in response.get_data(as_text=True)
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "bad_token"
    # A token endpoint answer beyond what we read at all: the provider's error.
    provider.set_user("cy", {"email": "cy@kl.dk", "blob": "y" * 600_000, "roles": [EDITOR_ROLE]})
    response = sso_login(app.test_client(), provider, "cy")
    assert response.status_code == 502
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "provider_error"
    assert staff_of(app, "bo") is None and staff_of(app, "cy") is None


# --------------------------------------------------------------------------- settings


def test_without_local_login_the_password_form_is_refused(make_app, provider, clock):
    app = make_app(**sso_config(provider, LOCAL_LOGIN_ENABLED=False))
    staff_id = make_staff(app, EDITOR, "editor")
    client = app.test_client()
    page = client.get("/staff/login").get_data(as_text=True)
    assert 'name="password"' not in page and "Log ind med Microsoft" in page
    response = client.post(
        "/staff/login",
        data={"csrf_token": csrf_token(page), "email": EDITOR, "password": PASSWORD},
    )
    assert response.status_code == 403
    assert "slået fra" in response.get_data(as_text=True)
    assert_not_logged_in(client)
    assert audit(app, "staff.login_failed")[-1][1]["reason"] == "local_login_disabled"
    # The account made with the CLI still signs in by SSO.
    provider.set_user("red", {"email": EDITOR})
    assert sso_login(client, provider, "red").status_code == 303
    assert staff_of(app, "red").id == staff_id
    assert_logged_in(client)


def test_the_login_page_has_no_sso_button_when_not_configured(make_app):
    client = make_app().test_client()
    page = client.get("/staff/login").get_data(as_text=True)
    assert "Log ind med" not in page and 'name="password"' in page
    assert client.get("/staff/login/sso/callback?code=x&state=y").status_code == 404


def test_settings_come_from_the_environment_as_comma_separated_lists(monkeypatch, database_url):
    monkeypatch.setenv("NEWSLETTERS_OIDC_ISSUER", "https://login.example/tenant/v2.0/")
    monkeypatch.setenv("NEWSLETTERS_OIDC_CLIENT_ID", "abc")
    monkeypatch.setenv("NEWSLETTERS_OIDC_ADMIN_ROLES", "Nyhedsbreve.Admin, Andet ")
    monkeypatch.setenv("NEWSLETTERS_OIDC_EDITOR_ROLES", '["Nyhedsbreve.Redaktør"]')
    monkeypatch.setenv("NEWSLETTERS_LOCAL_LOGIN_ENABLED", "false")
    app = create_app(base_config(database_url))
    settings = oidc.settings(app.config)
    assert settings.issuer == "https://login.example/tenant/v2.0"
    assert settings.admin_roles == {"Nyhedsbreve.Admin", "Andet"}
    assert settings.editor_roles == {"Nyhedsbreve.Redaktør"}
    assert settings.roles_claim == "roles"
    assert app.config["LOCAL_LOGIN_ENABLED"] is False


def test_no_local_login_and_no_provider_refuses_to_start(database_url):
    with pytest.raises((ConfigurationError, ValueError), match="nobody could log in"):
        create_app({**base_config(database_url), "LOCAL_LOGIN_ENABLED": False})


def test_the_login_page_lets_its_sso_form_go_to_the_provider_and_nowhere_else(
    app, client, provider
):
    policy = client.get("/staff/login").headers["Content-Security-Policy"]
    assert f"form-action 'self' {provider.url};" in policy
    assert "form-action 'self';" in client.get("/staff/").headers["Content-Security-Policy"]
