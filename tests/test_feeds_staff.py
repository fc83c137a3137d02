"""The feeds' staff pages: administrators manage feeds and digests; editors make a
digest now and pick feed items into an edition."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletters.audit.models import AuditEntry
from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.models import EditionStatus
from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.models import Feed, FeedItem
from tests.support.editions import draft
from tests.support.feedserver import undated
from tests.test_editor import edition_row, post_form
from tests.test_staff import ADMIN, EDITOR, login, make_staff


@pytest.fixture
def admin_client(client: FlaskClient, app: Flask) -> FlaskClient:
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


@pytest.fixture
def editor_client(client: FlaskClient, app: Flask) -> FlaskClient:
    make_staff(app, EDITOR, "editor")
    assert login(client, EDITOR).status_code == 303
    return client


def feeds_of(app: Flask, slug: str) -> list[Feed]:
    with app.app_context():
        rows = services.newsletter_feeds(newsletter_by_slug(slug).id)
        db.session.expunge_all()
        return rows


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


PAGE = "/staff/newsletters/kl-nyheder/feeds"


def test_editors_see_the_feeds_and_the_next_digest_but_only_administrators_manage_them(
    editor_client, app
):
    # Editors steer what goes in (the preview, filters, places); they do not add feeds.
    shown = editor_client.get(PAGE)
    assert shown.status_code == 200
    page = text(shown)
    assert 'data-field="settings-note"' in page
    assert 'name="url"' not in page and "/feeds/opml" not in page and "/digest-settings" not in page
    for path, data in [
        ("/staff/newsletters/kl-nyheder/feeds", {"url": "https://x.dk/rss"}),
        (
            "/staff/newsletters/kl-nyheder/digest-settings",
            {"mode": "auto", "cadence": "daily", "hour": "7"},
        ),
    ]:
        response = post_form(editor_client, path, data, "/staff/")
        assert response.status_code == 403, path
    assert editor_client.get("/staff/newsletters/kl-nyheder/feeds.opml").status_code == 403
    assert feeds_of(app, "kl-nyheder") == []


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_admin_adds_a_feed_and_sees_its_health(admin_client, app, feed_server):
    url = feed_server.serve("kl.xml", "rss20.xml")
    response = post_form(admin_client, PAGE, {"url": f"  {url} ", "title": "KL's nyheder"})
    assert response.status_code == 303
    [feed] = feeds_of(app, "kl-nyheder")
    assert (feed.url, feed.title, feed.created_by) == (url, "KL's nyheder", ADMIN)

    page = text(admin_client.get(PAGE))
    assert "Ikke hentet endnu" in page

    response = post_form(admin_client, f"/staff/feeds/{feed.id}/fetch", page=PAGE)
    assert response.status_code == 303
    page = text(admin_client.get(PAGE))
    assert "Feedet er hentet: 3 nye og 0 opdaterede punkter." in page
    row = re.search(r'<tr data-feed-id="\d+">(.*?)</tr>', page, re.S).group(1)
    assert "OK" in row and "(200)" in row and ">3<" in row


def test_adding_a_bad_or_duplicate_feed_says_why_in_danish(admin_client, app):
    response = post_form(admin_client, PAGE, {"url": "javascript:alert(1)"})
    assert response.status_code == 422
    assert "Skriv en adresse, der begynder med https:// eller http://." in text(response)
    response = post_form(admin_client, PAGE, {"url": ""})
    assert response.status_code == 422 and "Skriv adressen på feedet." in text(response)
    post_form(admin_client, PAGE, {"url": "https://www.kl.dk/rss"})
    response = post_form(admin_client, PAGE, {"url": "https://www.kl.dk/rss"})
    assert response.status_code == 422
    assert "KL's daglige nyhedsbreve har allerede dette feed." in text(response)
    assert len(feeds_of(app, "kl-nyheder")) == 1


def test_a_failing_feed_shows_its_error_and_can_be_disabled_and_removed(
    admin_client, app, feed_server
):
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", feed_server.serve("x.xml", status=500)).id
    post_form(admin_client, f"/staff/feeds/{feed_id}/fetch", page=PAGE)
    page = text(admin_client.get(PAGE))
    assert "Fejler" in page and "Der er en fejl på serveren (HTTP-status 500)." in page

    post_form(admin_client, f"/staff/feeds/{feed_id}/disable", page=PAGE)
    assert not feeds_of(app, "kl-nyheder")[0].enabled
    post_form(admin_client, f"/staff/feeds/{feed_id}/enable", page=PAGE)
    assert feeds_of(app, "kl-nyheder")[0].enabled
    post_form(admin_client, f"/staff/feeds/{feed_id}/remove", page=PAGE)
    assert feeds_of(app, "kl-nyheder") == []


def test_get_on_a_feed_action_changes_nothing(admin_client, app):
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", "https://www.kl.dk/rss").id
    for action in ("fetch", "disable", "remove"):
        assert admin_client.get(f"/staff/feeds/{feed_id}/{action}").status_code == 405
    assert admin_client.post(f"/staff/feeds/{feed_id}/remove").status_code == 400  # no CSRF
    assert len(feeds_of(app, "kl-nyheder")) == 1


def test_admin_changes_the_digest_settings(admin_client, app):
    settings = "/staff/newsletters/momentum/digest-settings"
    page = "/staff/newsletters/momentum/feeds"
    response = post_form(
        admin_client, settings, {"mode": "review", "cadence": "daily", "hour": "6"}, page
    )
    assert response.status_code == 303
    with app.app_context():
        momentum = newsletter_by_slug("momentum")
        assert (momentum.digest_mode, momentum.digest_cadence, momentum.digest_hour) == (
            DigestMode.REVIEW,
            DigestCadence.DAILY,
            6,
        )
    for bad in ({"hour": "24"}, {"hour": "syv"}, {"hour": ""}):
        data = {"mode": "auto", "cadence": "weekly", **bad}
        response = post_form(admin_client, settings, data, page)
        assert response.status_code == 422
        assert "Skriv et helt tal fra 0 til 23." in text(response)
    response = post_form(
        admin_client, settings, {"mode": "sometimes", "cadence": "daily", "hour": "6"}, page
    )
    assert response.status_code == 422
    with app.app_context():
        assert newsletter_by_slug("momentum").digest_mode == DigestMode.REVIEW


def test_editor_makes_the_digest_now_and_reviews_it(editor_client, app, feed_server):
    with app.app_context():
        services.update_digest_settings(
            "kl-nyheder", mode=DigestMode.REVIEW, cadence=DigestCadence.WEEKDAYS, hour=7
        )
        services.add_feed("kl-nyheder", feed_server.serve("kl.xml", body=undated("rss20.xml")))
        services.fetch_feeds()
    page = "/staff/newsletters/kl-nyheder"
    assert "Lav sammendraget af nye punkter fra feeds nu" in text(editor_client.get(page))
    response = post_form(editor_client, "/staff/newsletters/kl-nyheder/digest", page=page)
    assert response.status_code == 303
    edition_id = int(response.headers["Location"].rsplit("/", 1)[-1])
    edition = edition_row(app, edition_id)
    assert edition.status == EditionStatus.DRAFT and len(edition.items) == 3

    response = post_form(editor_client, "/staff/newsletters/kl-nyheder/digest", page=page)
    assert response.status_code == 303
    assert "Der er ingen nye punkter" in text(editor_client.get(page))

    response = post_form(editor_client, "/staff/newsletters/bestyrelse/digest", page=page)
    assert response.status_code == 303
    assert "har ingen feeds, eller dens sammendrag er slået fra" in text(
        editor_client.get("/staff/newsletters/bestyrelse")
    )


def test_board_editor_picks_recent_feed_items_into_the_edition(editor_client, app, feed_server):
    with app.app_context():
        services.add_feed("kl-nyheder", feed_server.serve("kl.xml", "rss20.xml"))
        services.add_feed("momentum", feed_server.serve("m.rdf", "rss10.rdf"))
        services.fetch_feeds()
        items = {i.title: i.id for i in db.session.scalars(select(FeedItem))}
    edition_id = draft(app, slug="bestyrelse")
    path = f"/staff/editions/{edition_id}/feed-items"
    page = text(editor_client.get(path))
    assert "Klima: Kommunerne er i mål med klimaplanerne" in page
    assert "Skolerne mangler lærere" in page

    chosen = [items["Skolerne mangler lærere"], items["KL: Økonomiaftalen giver kommunerne luft"]]
    response = post_form(editor_client, path, {"items": [str(i) for i in chosen]})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/staff/editions/{edition_id}/edit")
    edition = edition_row(app, edition_id)
    # Newest first, as the list shows them.
    assert [i.heading for i in edition.items] == [
        "Skolerne mangler lærere",
        "KL: Økonomiaftalen giver kommunerne luft",
    ]
    assert edition.items[0].link == "https://www.danskekommuner.dk/artikel/skoler"

    response = post_form(editor_client, path, {"items": []})
    assert response.status_code == 422 and "Vælg mindst ét punkt." in text(response)
    response = post_form(editor_client, path, {"items": ["999999"]})
    assert response.status_code == 422
    assert len(edition_row(app, edition_id).items) == 2


def test_every_feed_action_is_audited(admin_client, app, feed_server):
    url = feed_server.serve("x.xml", status=500)
    post_form(admin_client, PAGE, {"url": url, "title": "KL nyheder"})
    [feed] = feeds_of(app, "kl-nyheder")
    for action in ("fetch", "disable", "enable", "remove"):
        post_form(admin_client, f"/staff/feeds/{feed.id}/{action}", page=PAGE)
    post_form(
        admin_client,
        "/staff/newsletters/kl-nyheder/digest-settings",
        {"mode": "review", "cadence": "weekdays", "hour": "7"},
        PAGE,
    )
    with app.app_context():
        entries = db.session.execute(
            select(AuditEntry.action, AuditEntry.target, AuditEntry.actor_email)
        ).all()
    target = f"feed:{feed.id}"
    for action in ("feed.add", "feed.fetch", "feed.disable", "feed.enable", "feed.remove"):
        assert (action, target, ADMIN) in entries, (action, entries)
    assert ("feed.digest_settings", "newsletter:kl-nyheder", ADMIN) in entries


@pytest.mark.parametrize("url", ["http://[::1", "https://www.kl.dk:99999/rss", "http://[kl.dk]/"])
def test_a_malformed_address_is_refused_in_danish_not_a_server_error(admin_client, app, url):
    for action in ("add", "discover"):
        response = post_form(admin_client, PAGE, {"url": url, "action": action})
        assert response.status_code == 422
        assert "Skriv en adresse, der begynder med https:// eller http://." in text(response)
    assert feeds_of(app, "kl-nyheder") == []


def test_a_feed_added_by_someone_else_a_moment_ago_is_a_duplicate_not_a_500(
    admin_client, app, monkeypatch
):
    """Two administrators adding the same feed at once: the second one's check saw
    nothing, its insert meets the unique address; it is told so, nothing half-written."""
    real_check = services._attached

    def blind_once() -> None:
        """The next check of https://www.kl.dk/rss misses the feed added meanwhile."""
        missed: list[str] = []

        def check(newsletter_id: int, url: str) -> bool:
            if url == "https://www.kl.dk/rss" and not missed:
                missed.append(url)
                return False
            return real_check(newsletter_id, url)

        monkeypatch.setattr(services, "_attached", check)

    post_form(admin_client, PAGE, {"url": "https://www.kl.dk/rss"})
    blind_once()
    response = post_form(admin_client, PAGE, {"url": "https://www.kl.dk/rss"})
    assert response.status_code == 422
    assert "KL's daglige nyhedsbreve har allerede dette feed." in text(response)
    with app.app_context():
        blind_once()
        with pytest.raises(services.DuplicateFeed):
            services.add_feed("kl-nyheder", "https://www.kl.dk/rss")
        blind_once()
        outcome = services.import_opml(
            "kl-nyheder",
            b"<opml><body><outline xmlUrl='https://www.kl.dk/rss'/>"
            b"<outline xmlUrl='https://www.kl.dk/other'/></body></opml>",
        )
        # The file is taken as if the check had seen it: the rest is added.
        assert [f.url for f in outcome.added] == ["https://www.kl.dk/other"]
        assert outcome.already == ["https://www.kl.dk/rss"]
    assert [f.url for f in feeds_of(app, "kl-nyheder")] == [
        "https://www.kl.dk/rss",
        "https://www.kl.dk/other",
    ]


@pytest.mark.parametrize("when", ["before the fetch", "during the fetch"])
@pytest.mark.parametrize(
    ("lang", "said"),
    [
        (None, "Feedet findes ikke længere: det er blevet fjernet."),
        ("en", "The feed no longer exists: it has been removed."),
    ],
)
def test_fetching_a_feed_removed_meanwhile_says_so_not_a_server_error(
    admin_client, app, feed_server, monkeypatch, when, lang, said
):
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", feed_server.serve("kl.xml", "rss20.xml")).id
    if lang:
        admin_client.get(f"{PAGE}?lang={lang}")
    # Someone else removes the feed after this request has found it.
    if when == "before the fetch":
        fetch_feeds = services.fetch_feeds

        def removed_first(feed_ids, **kwargs):
            services.remove_feed(feed_ids[0])
            return fetch_feeds(feed_ids, **kwargs)

        monkeypatch.setattr(services, "fetch_feeds", removed_first)
    else:
        record_result = services.record_result

        def removed_while_fetched(result):
            services.remove_feed(result.feed_id)
            return record_result(result)

        monkeypatch.setattr(services, "record_result", removed_while_fetched)
    response = post_form(admin_client, f"/staff/feeds/{feed_id}/fetch", page=PAGE)
    assert response.status_code == 303 and response.location.endswith(PAGE)
    page = text(admin_client.get(PAGE))
    assert said in page
    assert "removed while it was fetched" not in page
    assert feeds_of(app, "kl-nyheder") == []
