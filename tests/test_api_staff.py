"""The administrators' page of API tokens: the same tokens as `flask api-tokens`, shown
once, audited with the staff member who acted, closed to editors, hostile input refused."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from newsletters.api.models import ApiToken
from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from tests.support.api import bearer
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, login, make_staff

PAGE = "/staff/api-tokens/"


@pytest.fixture
def admin_client(app):
    staff_id = make_staff(app, ADMIN, "admin")
    client = app.test_client()
    assert login(client, ADMIN).status_code == 303
    client.staff_id = staff_id
    return client


def _make(client, name="kl-web", scopes=("subscriptions:write",), token=None):
    token = token or csrf_token(client.get(PAGE).data)
    return client.post(PAGE, data={"csrf_token": token, "name": name, "scopes": list(scopes)})


def test_an_administrator_makes_a_token_that_is_shown_once_and_works(app, admin_client):
    page = _make(admin_client, scopes=("subscribers:read", "editions:read"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    plain = re.search(r'<code id="new-token"[^>]*>(nlt_[A-Za-z0-9_-]{43})</code>', html).group(1)
    assert "no-store" in page.headers["Cache-Control"]
    assert "Set-Cookie" not in page.headers or plain not in page.headers["Set-Cookie"]
    listing = admin_client.get(PAGE).get_data(as_text=True)
    assert "kl-web" in listing and plain not in listing
    assert app.test_client().get("/api/v1/subscribers", headers=bearer(plain)).status_code == 200
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        assert token.created_by == ADMIN and token.scope_list == [
            "subscribers:read",
            "editions:read",
        ]
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "api_token.create"))
        assert entry.actor_id == admin_client.staff_id
        assert json.loads(entry.details)["scopes"] == ["subscribers:read", "editions:read"]


def test_revoking_on_the_page_closes_the_api_to_the_token(app, admin_client):
    html = _make(admin_client).get_data(as_text=True)
    plain = re.search(r"(nlt_[A-Za-z0-9_-]{43})", html).group(1)
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id))
    token = csrf_token(admin_client.get(PAGE).data)
    response = admin_client.post(f"{PAGE}{token_id}/revoke", data={"csrf_token": token})
    assert response.status_code == 303
    assert app.test_client().get("/api/v1/newsletters", headers=bearer(plain)).status_code == 401
    again = admin_client.post(f"{PAGE}{token_id}/revoke", data={"csrf_token": token})
    assert again.status_code == 303
    assert admin_client.post(f"{PAGE}99999/revoke", data={"csrf_token": token}).status_code == 404
    assert admin_client.post(f"{PAGE}{token_id}/revoke", data={}).status_code == 400


@pytest.mark.parametrize(
    "name,scopes",
    [
        ("", ("editions:read",)),
        ("a b", ("editions:read",)),
        ("a\r\nb", ("editions:read",)),
        ("a\x00b", ("editions:read",)),
        ("x" * 5000, ("editions:read",)),
        ("<script>", ("editions:read",)),
        ("ok", ()),
        ("ok", ("root",)),
        ("ok", ("editions:read\r\n",)),
    ],
)
def test_hostile_names_and_scopes_make_no_token(app, admin_client, name, scopes):
    response = _make(admin_client, name=name, scopes=scopes)
    assert response.status_code in (400, 422)
    with app.app_context():
        assert db.session.scalar(select(ApiToken.id)) is None


def test_a_taken_name_is_refused_on_the_page(app, admin_client):
    _make(admin_client)
    assert _make(admin_client).status_code == 422


def test_without_csrf_nothing_is_made(app, admin_client):
    response = admin_client.post(PAGE, data={"name": "x", "scopes": ["editions:read"]})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(ApiToken.id)) is None


def test_editors_cannot_see_or_make_tokens(app):
    make_staff(app, EDITOR, "editor")
    client = app.test_client()
    login(client, EDITOR)
    assert client.get(PAGE).status_code == 403
    token = csrf_token(client.get("/staff/").data)
    response = client.post(
        PAGE, data={"csrf_token": token, "name": "x", "scopes": ["editions:read"]}
    )
    assert response.status_code == 403
