"""The public archive of a newsletter: sent editions only, newest first, paged, an Atom feed,
nothing personal, and a setting per newsletter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import feedparser
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from newsletters.catalog.models import Newsletter
from newsletters.editions.models import Edition, EditionStatus
from newsletters.extensions import db
from tests.support.editions import draft
from tests.test_editor import post_form
from tests.test_staff import ADMIN, login, make_staff

SENT_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def mark(app: Flask, edition_id: int, status: EditionStatus, finished_at=None) -> None:
    """Put an edition in a state directly (the send itself is tested elsewhere)."""
    with app.app_context():
        db.session.execute(
            update(Edition)
            .where(Edition.id == edition_id)
            .values(status=status, started_at=finished_at, finished_at=finished_at)
        )
        db.session.commit()


def sent(app: Flask, subject: str, at: datetime, slug: str = "bestyrelse", **kw) -> int:
    edition_id = draft(app, slug=slug, subject=subject, **kw)
    mark(app, edition_id, EditionStatus.SENT, at)
    return edition_id


def set_archive(app: Flask, slug: str, public: bool) -> None:
    with app.app_context():
        db.session.execute(
            update(Newsletter).where(Newsletter.slug == slug).values(archive_public=public)
        )
        db.session.commit()


def test_lists_sent_editions_newest_first_and_nothing_else(app: Flask, client: FlaskClient):
    old = sent(app, "Bestyrelsesmøde i oktober", SENT_AT - timedelta(days=30))
    new = sent(app, "Bestyrelsesmøde i november", SENT_AT)
    for status in (EditionStatus.SENDING, EditionStatus.PAUSED, EditionStatus.CANCELLED):
        mark(app, draft(app, subject=f"Ikke færdig {status.value}"), status, SENT_AT)
    draft(app, subject="Et udkast")
    sent(app, "Momentum nr. 1", SENT_AT, slug="momentum")

    response = client.get("/newsletters/bestyrelse/archive")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="da">' in page
    assert "Arkiv for" in page and "2 udsendte udgaver" in page
    assert page.index("i november") < page.index("i oktober")
    assert f'href="/editions/{new}"' in page and f'href="/editions/{old}"' in page
    assert "20. november 2026" in page
    for absent in ("Ikke færdig", "Et udkast", "Momentum nr. 1"):
        assert absent not in page
    # Each listed web version answers.
    assert client.get(f"/editions/{new}").status_code == 200


def test_pages_of_twenty(app: Flask, client: FlaskClient):
    for n in range(23):
        sent(app, f"Udgave {n:02d}", SENT_AT + timedelta(hours=n))
    first = client.get("/newsletters/bestyrelse/archive").get_data(as_text=True)
    assert "Udgave 22" in first and "Udgave 03" in first and "Udgave 02" not in first
    assert "Side 1 af 2" in first and 'rel="next"' in first and 'rel="prev"' not in first
    second = client.get("/newsletters/bestyrelse/archive?page=2").get_data(as_text=True)
    assert "Udgave 02" in second and "Udgave 00" in second and "Udgave 03" not in second
    assert 'rel="prev"' in second and 'rel="next"' not in second


@pytest.mark.parametrize(
    "query",
    ["page=-1", "page=0", "page=abc", "page=99999999999999999999", "page=%00", "page=2%0d%0a"],
)
def test_absurd_page_numbers_show_a_page(app: Flask, client: FlaskClient, query: str):
    sent(app, "Eneste udgave", SENT_AT)
    response = client.get(f"/newsletters/bestyrelse/archive?{query}")
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert "Eneste udgave" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/newsletters/no-such/archive",
        "/newsletters/no-such/archive.atom",
        "/newsletters/bestyrelse%0d%0aX-Evil:%201/archive",
        "/newsletters/" + "a" * 5000 + "/archive",
    ],
)
def test_unknown_newsletter_is_404(app: Flask, client: FlaskClient, path: str):
    response = client.get(path)
    assert response.status_code == 404
    assert "X-Evil" not in response.headers


def test_an_archive_turned_off_is_404_and_not_linked(app: Flask, client: FlaskClient):
    sent(app, "Hemmelig", SENT_AT)
    assert 'href="/newsletters/bestyrelse/archive"' in client.get("/").get_data(as_text=True)
    set_archive(app, "bestyrelse", False)
    assert client.get("/newsletters/bestyrelse/archive").status_code == 404
    assert client.get("/newsletters/bestyrelse/archive.atom").status_code == 404
    assert 'href="/newsletters/bestyrelse/archive"' not in client.get("/").get_data(as_text=True)


def test_atom_feed_of_sent_editions(app: Flask, client: FlaskClient):
    sent(app, "Oktober & <mere>", SENT_AT - timedelta(days=30))
    newest = sent(app, "November", SENT_AT)
    with app.app_context():
        db.session.execute(update(Edition).where(Edition.id == newest).values(preheader="Kort"))
        db.session.commit()
    response = client.get("/newsletters/bestyrelse/archive.atom")
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    feed = feedparser.parse(response.data)
    assert not feed.bozo, feed.bozo_exception
    base = app.config["PUBLIC_BASE_URL"]
    assert feed.feed.links[0].href == f"{base}/newsletters/bestyrelse/archive.atom"
    assert [e.title for e in feed.entries] == ["November", "Oktober & <mere>"]
    assert feed.entries[0].link == f"{base}/editions/{newest}"
    assert feed.entries[0].summary == "Kort"
    assert feed.entries[0].published_parsed[:5] == (2026, 11, 20, 9, 30)
    # The page announces the feed to feed readers.
    page = client.get("/newsletters/bestyrelse/archive").get_data(as_text=True)
    assert 'type="application/atom+xml"' in page


def test_an_empty_archive_says_so(app: Flask, client: FlaskClient):
    page = client.get("/newsletters/momentum/archive").get_data(as_text=True)
    assert "Der er ikke sendt nogen udgaver endnu." in page
    feed = feedparser.parse(client.get("/newsletters/momentum/archive.atom").data)
    assert not feed.bozo and feed.entries == []


def test_nothing_personal_on_the_archive(app: Flask, client: FlaskClient):
    from tests.support.editions import confirmed_audience

    confirmed_audience(app, 3)
    sent(app, "Nyt fra mødet", SENT_AT)
    for path in ("/newsletters/bestyrelse/archive", "/newsletters/bestyrelse/archive.atom"):
        body = client.get(path).get_data(as_text=True)
        for personal in ("/unsubscribe/", "/manage/", "/confirm/", "@example.dk", "Set-Cookie"):
            assert personal not in body


def test_english_archive(app: Flask, client: FlaskClient):
    sent(app, "Board news", SENT_AT)
    page = client.get("/newsletters/bestyrelse/archive?lang=en").get_data(as_text=True)
    assert "Archive of" in page and "1 sent edition" in page


def test_archive_follows_is_public_for_a_new_newsletter(app: Flask):
    with app.app_context():
        db.session.add(Newsletter(slug="intern", name="Intern", is_public=False))
        db.session.add(Newsletter(slug="aaben", name="Åben"))
        db.session.commit()
        by_slug = {n.slug: n for n in db.session.scalars(db.select(Newsletter))}
        assert by_slug["intern"].archive_public is False
        assert by_slug["aaben"].archive_public is True


def test_administrator_turns_the_archive_off(app: Flask, client: FlaskClient):
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    form = {
        "name": "Nyt fra KL's bestyrelse",
        "description_da": "Beskrivelse.",
        "cadence_da": "Efter hvert møde",
        "position": "0",
        "is_public": "y",
        # archive_public unticked
    }
    page = "/staff/newsletters/bestyrelse/settings"
    assert "Udsendte udgaver på en offentlig arkivside" in client.get(page).get_data(as_text=True)
    response = post_form(client, page, form, page=page)
    assert response.status_code == 303
    assert app.test_client().get("/newsletters/bestyrelse/archive").status_code == 404
    response = post_form(client, page, {**form, "archive_public": "y"}, page=page)
    assert response.status_code == 303
    assert app.test_client().get("/newsletters/bestyrelse/archive").status_code == 200
