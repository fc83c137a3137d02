"""No page has two elements with the same id (several forms on one page each rendered
`id="csrf_token"`): a label, a skip link or aria-describedby would find the wrong one.
The browser tests check every page they visit with the Nu Html Checker; this is the
fast check of the pages with several forms."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from flask import Flask
from flask.testing import FlaskClient

from newsletters.extensions import db
from newsletters.feeds import services as feeds
from newsletters.subscriptions import links
from newsletters.subscriptions.models import Subscriber
from tests.support.editions import draft
from tests.support.flows import subscribe
from tests.test_staff import ADMIN, login, make_staff

ID = re.compile(r"""\sid=["']([^"']+)["']""")


def duplicate_ids(html: str) -> list[str]:
    return sorted(i for i, n in Counter(ID.findall(html)).items() if n > 1)


@pytest.fixture
def admin_client(app: Flask) -> FlaskClient:
    make_staff(app, ADMIN, "admin")
    client = app.test_client()
    assert login(client, ADMIN).status_code == 303
    return client


def test_the_preference_centre_has_no_duplicate_ids(app: Flask, client: FlaskClient):
    subscribe(client, "a@example.dk", ["momentum", "bestyrelse"])
    with app.app_context():
        subscriber = db.session.scalar(db.select(Subscriber))
        url = links.manage_url(subscriber)
    page = client.get(url.removeprefix(app.config["PUBLIC_BASE_URL"]))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.count("<form") >= 2
    assert duplicate_ids(html) == []


def test_the_staff_pages_with_several_forms_have_no_duplicate_ids(
    app: Flask, admin_client: FlaskClient
):
    with app.app_context():
        feeds.add_feed("kl-nyheder", "https://www.kl.dk/rss/nyheder")
    edition_id = draft(app)
    for path in (
        "/staff/newsletters/kl-nyheder/feeds",
        f"/staff/editions/{edition_id}",
        f"/staff/editions/{edition_id}/send",
        "/staff/subscribers/import",
        "/staff/suppressions",
        "/",
    ):
        page = admin_client.get(path)
        html = page.get_data(as_text=True)
        assert page.status_code == 200, path
        assert duplicate_ids(html) == [], path
