"""Counting opens and clicks: off by default, totals per edition and per link only, links
that lead only where the edition does, and a preference centre that says so."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import select, update

from newsletters.catalog.models import Newsletter
from newsletters.editions import engagement
from newsletters.editions.models import Edition, EditionLink
from newsletters.extensions import db
from newsletters.subscriptions import links
from newsletters.subscriptions.models import Subscriber
from tests.support.editions import confirmed_audience
from tests.test_editions import _send, _start

BODY = (
    "Læs [dagsordenen](https://www.kl.dk/dagsorden?a=1&b=2) og "
    "[referatet](https://www.kl.dk/referat)."
)


def _counting(app: Flask, on: bool, slug: str = "bestyrelse") -> None:
    with app.app_context():
        db.session.execute(
            update(Newsletter).where(Newsletter.slug == slug).values(engagement_counting=on)
        )
        db.session.commit()


def _sent(app: Flask, smtp_server, readers: int = 2) -> tuple[int, list]:
    from tests.support.editions import draft

    confirmed_audience(app, readers)
    edition_id = draft(app, body=BODY)
    _start(app, edition_id)
    _send(app)
    return edition_id, smtp_server.received


def test_off_by_default_the_mail_has_the_editions_own_links(mail_app: Flask, smtp_server):
    _edition_id, received = _sent(mail_app, smtp_server)
    html = received[0].html
    assert "https://www.kl.dk/dagsorden?a=1&amp;b=2" in html
    assert "/l/" not in html and "/o/" not in html
    with mail_app.app_context():
        assert db.session.scalar(select(EditionLink.id)) is None


def test_counting_on_every_reader_gets_the_same_counted_links(mail_app: Flask, smtp_server):
    _counting(mail_app, True)
    edition_id, received = _sent(mail_app, smtp_server)
    base = mail_app.config["PUBLIC_BASE_URL"]
    first, second = received[0].html, received[1].html
    counted = re.findall(rf'href="({re.escape(base)}/l/\d+)"', first)
    # The editor's two links, and KL's LinkedIn and X links from the layout.
    assert len(counted) == 4
    # The same for every reader: nothing in them names a person.
    assert counted == re.findall(rf'href="({re.escape(base)}/l/\d+)"', second)
    assert f'src="{base}/o/{edition_id}.gif"' in first
    # The reader's own links and the web version are not counted links.
    assert "/unsubscribe/" in first and f"/editions/{edition_id}" in first
    # The plain-text part spells out the editor's addresses.
    assert "https://www.kl.dk/referat" in received[0].text

    client = mail_app.test_client()
    for _ in range(3):
        response = client.get(counted[0].removeprefix(base))
        assert response.status_code == 302
        assert response.headers["Location"] == "https://www.kl.dk/dagsorden?a=1&b=2"
    assert client.get(counted[1].removeprefix(base)).status_code == 302
    pixel = client.get(f"/o/{edition_id}.gif")
    assert pixel.status_code == 200 and pixel.mimetype == "image/gif"
    assert pixel.data.startswith(b"GIF89a") and "no-store" in pixel.headers["Cache-Control"]
    with mail_app.app_context():
        opens, clicks = engagement.edition_counts(edition_id)
    assert opens == 1
    assert clicks[:2] == [
        ("https://www.kl.dk/dagsorden?a=1&b=2", 3),
        ("https://www.kl.dk/referat", 1),
    ]
    assert [n for _url, n in clicks[2:]] == [0, 0]


def test_links_keep_working_when_counting_is_turned_off(mail_app: Flask, smtp_server):
    _counting(mail_app, True)
    edition_id, received = _sent(mail_app, smtp_server, readers=1)
    path = re.search(r'href="[^"]*(/l/\d+)"', received[0].html).group(1)
    _counting(mail_app, False)
    client = mail_app.test_client()
    assert client.get(path).headers["Location"] == "https://www.kl.dk/dagsorden?a=1&b=2"
    assert client.get(f"/o/{edition_id}.gif").status_code == 200
    with mail_app.app_context():
        opens, clicks = engagement.edition_counts(edition_id)
    assert opens == 0 and {n for _url, n in clicks} == {0}


def test_no_open_redirect_and_no_counting_of_drafts(mail_app: Flask, smtp_server):
    from tests.support.editions import draft

    _counting(mail_app, True)
    client = mail_app.test_client()
    for path in (
        "/l/0",
        "/l/99999",
        "/l/99999999999999999999",
        "/l/https:%2F%2Fevil.example",
        "/l/1?url=https://evil.example",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
    edition_id = draft(mail_app, body=BODY)
    # A draft's picture counts nothing (the preview and a test send are not a send).
    assert client.get(f"/o/{edition_id}.gif").status_code == 200
    with mail_app.app_context():
        assert engagement.edition_counts(edition_id) == (0, [])
        edition = db.session.get(Edition, edition_id)
        assert engagement.counting(edition) is False


def test_preference_centre_says_what_is_counted(mail_app: Flask, smtp_server):
    confirmed_audience(mail_app, 1)
    with mail_app.app_context():
        subscriber = db.session.scalar(select(Subscriber))
        path = links.manage_url(subscriber).removeprefix(mail_app.config["PUBLIC_BASE_URL"])
    client = mail_app.test_client()
    page = client.get(path).get_data(as_text=True)
    assert "Det tæller vi" in page
    assert "Vi tæller ikke, om vores nyhedsbreve bliver åbnet" in page
    _counting(mail_app, True, "momentum")
    page = client.get(path).get_data(as_text=True)
    assert "For Momentum tæller vi" in page and "kun totaler" in page


def test_report_shows_the_counts(mail_app: Flask, smtp_server):
    from tests.test_staff import ADMIN, login, make_staff

    _counting(mail_app, True)
    edition_id, received = _sent(mail_app, smtp_server, readers=1)
    client = mail_app.test_client()
    path = re.search(r'href="[^"]*(/l/\d+)"', received[0].html).group(1)
    client.get(path)
    client.get(f"/o/{edition_id}.gif")
    make_staff(mail_app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    page = client.get(f"/staff/editions/{edition_id}/report").get_data(as_text=True)
    assert re.search(r'data-count="opens">\s*1<', page)
    assert "https://www.kl.dk/dagsorden?a=1&amp;b=2" in page and "Klik pr. link" in page
