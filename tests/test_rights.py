"""Rights per newsletter: an administrator limits an editor to some newsletters; every
other newsletter's pages answer 403 with an audit entry, and lists show only the allowed."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from newsletters.feeds import services as feed_services
from newsletters.feeds.models import Feed
from newsletters.staff import access, rights, services
from newsletters.staff.models import StaffNewsletter
from tests.support.editions import draft
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, login, make_staff


def refusals(app: Flask) -> list[tuple[int | None, str, dict]]:
    with app.app_context():
        rows = [
            (e.actor_id, e.target, json.loads(e.details))
            for e in db.session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "newsletter.access_refused")
                .order_by(AuditEntry.id)
            )
        ]
        db.session.remove()
        return rows


def limit(app: Flask, email: str, slugs: list[str] | None) -> None:
    with app.app_context():
        rights.set_newsletters(services.staff_by_email(email).id, slugs)
        db.session.remove()


@pytest.fixture
def editor_id(app: Flask) -> int:
    return make_staff(app, EDITOR, "editor")


@pytest.fixture
def editor(client: FlaskClient, app: Flask, editor_id: int) -> FlaskClient:
    assert login(client, EDITOR).status_code == 303
    return client


def test_without_rows_an_editor_works_on_every_newsletter(editor, app):
    page = editor.get("/staff/").get_data(as_text=True)
    for slug in ("bestyrelse", "kl-nyheder", "momentum", "danske-kommuner"):
        assert f"/staff/newsletters/{slug}" in page
        assert editor.get(f"/staff/newsletters/{slug}").status_code == 200
    assert refusals(app) == []


def test_a_limited_editor_is_refused_other_newsletters_with_403_and_an_entry(editor, app):
    other = draft(app, "bestyrelse")
    own = draft(app, "momentum")
    limit(app, EDITOR, ["momentum"])
    dashboard = editor.get("/staff/").get_data(as_text=True)
    assert "/staff/newsletters/momentum" in dashboard
    assert "/staff/newsletters/bestyrelse" not in dashboard
    assert editor.get("/staff/newsletters/momentum").status_code == 200
    assert editor.get(f"/staff/editions/{own}").status_code == 200
    for path in (
        "/staff/newsletters/bestyrelse",
        "/staff/newsletters/bestyrelse/editions/new",
        f"/staff/editions/{other}",
        f"/staff/editions/{other}/preview.html",
        f"/staff/editions/{other}/progress.json",
        f"/staff/editions/{other}/feed-items",
    ):
        response = editor.get(path)
        assert response.status_code == 403, path
        assert "Adgang nægtet" in response.get_data(as_text=True) or response.is_json is False
    token = csrf_token(editor.get("/staff/").data)
    for path in (
        f"/staff/editions/{other}/send",
        f"/staff/editions/{other}/test",
        "/staff/newsletters/bestyrelse/digest",
        "/staff/newsletters/bestyrelse/editions/new",
    ):
        assert editor.post(path, data={"csrf_token": token}).status_code == 403, path
    editor_id = db_id(app, EDITOR)
    found = refusals(app)
    assert len(found) == 10
    assert {target for _, target, _ in found} == {"newsletter:bestyrelse"}
    assert all(actor == editor_id for actor, _, _ in found)
    assert found[0][2] == {"method": "GET", "path": "/staff/newsletters/bestyrelse"}
    # Nothing was sent or changed on the refused newsletter.
    from newsletters.editions.models import Edition, EditionStatus

    with app.app_context():
        assert db.session.get(Edition, other).status is EditionStatus.DRAFT


def db_id(app: Flask, email: str) -> int:
    with app.app_context():
        staff_id = services.staff_by_email(email).id
        db.session.remove()
        return staff_id


def test_a_limited_editor_is_refused_the_feed_pages_of_other_newsletters(editor, app):
    with app.app_context():
        feed = feed_services.add_feed("kl-nyheder", "http://127.0.0.1:9/feed.xml", by="test")
        feed_id = feed.id
        db.session.remove()
    limit(app, EDITOR, ["momentum"])
    # The feeds pages are an administrator's; the editor's refusal comes first anyway.
    token = csrf_token(editor.get("/staff/").data)
    response = editor.post("/staff/newsletters/kl-nyheder/digest", data={"csrf_token": token})
    assert response.status_code == 403
    assert refusals(app)[-1][1] == "newsletter:kl-nyheder"
    assert (
        editor.post(f"/staff/feeds/{feed_id}/fetch", data={"csrf_token": token}).status_code == 403
    )
    # The pages editors may open (issue 16): not for a newsletter they may not work on.
    for path in [
        "/staff/newsletters/kl-nyheder/feeds",
        "/staff/newsletters/kl-nyheder/digest/preview",
        f"/staff/feeds/{feed_id}/filter",
    ]:
        assert editor.get(path).status_code == 403, path
    for path, data in [
        (f"/staff/feeds/{feed_id}/filter", {"include": "x", "action": "save"}),
        (f"/staff/feeds/{feed_id}/position", {"position": "3"}),
        ("/staff/newsletters/kl-nyheder/digest/draft", {}),
    ]:
        assert editor.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    with app.app_context():
        feed = db.session.get(Feed, feed_id)
        assert (feed.filter_include, feed.position) == ("", 0)
    assert editor.get("/staff/newsletters/momentum/feeds").status_code == 200


def test_administrators_are_never_limited(client, app):
    make_staff(app, ADMIN, "admin")
    limit(app, ADMIN, ["momentum"])  # stored, but an administrator sees everything
    assert login(client, ADMIN).status_code == 303
    assert client.get("/staff/newsletters/bestyrelse").status_code == 200
    assert client.get("/staff/newsletters/bestyrelse/settings").status_code == 200
    assert refusals(app) == []


def test_an_administrator_limits_an_editor_on_the_staff_page(client, app, editor_id):
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    users = client.get("/staff/users").get_data(as_text=True)
    assert f"/staff/users/{editor_id}/newsletters" in users
    page = client.get(f"/staff/users/{editor_id}/newsletters")
    assert page.status_code == 200 and "Nyhedsbreve for redaktoer@kl.dk" in page.get_data(
        as_text=True
    )
    token = csrf_token(page.data)
    response = client.post(
        f"/staff/users/{editor_id}/newsletters",
        data={"csrf_token": token, "newsletters": ["momentum", "kl-nyheder"]},
    )
    assert response.status_code == 303
    with app.app_context():
        assert rights.slugs_of(services.staff_by_id(editor_id)) == ["kl-nyheder", "momentum"]
        [entry] = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "staff.newsletters")
        ).all()
        assert entry.target == f"staff:{editor_id}"
        assert json.loads(entry.details)["to"] == ["kl-nyheder", "momentum"]
        db.session.remove()
    users = client.get("/staff/users").get_data(as_text=True)
    assert "KL&#39;s daglige nyhedsbreve, Momentum" in users or "Momentum" in users
    # None ticked: every newsletter again.
    response = client.post(f"/staff/users/{editor_id}/newsletters", data={"csrf_token": token})
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(StaffNewsletter.staff_id)) is None


@pytest.mark.parametrize(
    "value", ["no-such", "momentum\r\nX: 1", "x" * 10_000, "' OR 1=1 --", "momentum\x00"]
)
def test_the_rights_form_refuses_what_is_no_newsletter(client, app, editor_id, value):
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    token = csrf_token(client.get(f"/staff/users/{editor_id}/newsletters").data)
    response = client.post(
        f"/staff/users/{editor_id}/newsletters",
        data={"csrf_token": token, "newsletters": ["momentum", value]},
    )
    assert response.status_code in (400, 422)
    with app.app_context():
        assert db.session.scalar(select(StaffNewsletter.staff_id)) is None


def test_only_administrators_change_rights(editor, app, editor_id):
    token = csrf_token(editor.get("/staff/").data)
    response = editor.post(
        f"/staff/users/{editor_id}/newsletters", data={"csrf_token": token, "newsletters": []}
    )
    assert response.status_code == 403
    assert editor.get("/staff/users/999999999/newsletters").status_code == 403


def test_absurd_ids_are_404_for_an_administrator(client, app):
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    assert client.get("/staff/users/999999999/newsletters").status_code == 404
    assert client.get("/staff/users/99999999999999999999999/newsletters").status_code == 404


def test_the_check_is_one_function_the_api_can_use(app, editor_id):
    limit(app, EDITOR, ["momentum"])
    with app.app_context():
        staff = services.staff_by_id(editor_id)
        assert [n.slug for n in access.allowed_newsletters(staff)] == ["momentum"]
        momentum = next(n for n in access.allowed_newsletters(staff))
        assert rights.may_use(staff, momentum.id)
        assert not rights.may_use(staff, momentum.id + 1000)


# --------------------------------------------------------------------------- the CLI


def test_cli_shows_and_changes_the_newsletters_of_an_editor(runner, app, editor_id):
    result = runner.invoke(args=["staff", "newsletters", EDITOR])
    assert result.exit_code == 0 and "may work on every newsletter" in result.output
    result = runner.invoke(args=["staff", "newsletters", EDITOR, "--only", "momentum, kl-nyheder"])
    assert result.exit_code == 0, result.output
    assert "may work on: kl-nyheder, momentum" in result.output
    result = runner.invoke(args=["staff", "newsletters", EDITOR, "--only", "momentum,nope"])
    assert result.exit_code == 1 and "no newsletter nope" in result.output
    assert "the newsletters were not changed" in result.output
    result = runner.invoke(args=["staff", "newsletters", EDITOR, "--all"])
    assert result.exit_code == 0 and "every newsletter" in result.output
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "staff.newsletters")
        ).all()
        assert [json.loads(d)["to"] for d in actions] == [["kl-nyheder", "momentum"], "all"]
        db.session.remove()


def test_cli_newsletters_of_an_unknown_account_fails_clearly(runner, app):
    result = runner.invoke(args=["staff", "newsletters", "ingen@kl.dk", "--all"])
    assert result.exit_code == 1
    assert "there is no staff account for ingen@kl.dk" in result.output
