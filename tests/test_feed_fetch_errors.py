"""Why a feed or a page could not be fetched, told to staff in their language (Danish
first): a translated sentence per kind of failure, never the fetcher's English, which
stays for the log and the CLI."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.fetching import FetchErrorKind
from newsletters.feeds.models import Feed
from newsletters.feeds.routes import fetch_error_text
from tests.support.feedserver import FeedServer
from tests.test_editor import post_form
from tests.test_staff import ADMIN, login, make_staff

PAGE = "/staff/newsletters/kl-nyheder/feeds"

# The fetcher's English, which no page may show.
ENGLISH_DETAIL = ("could not be reached", "HTTP 500 Internal", "too large (", "more than 5 redi")


@pytest.fixture
def app(make_app) -> Flask:
    # A deadline short enough for the slow server to miss, long enough that a loaded
    # machine still answers the other addresses in time (0.5 s was not, in a CI run);
    # a small size cap.
    return make_app(FEEDS_TIMEOUT_SECONDS=2, FEEDS_MAX_BYTES=10_000, FEEDS_PARSE_PROCESSES=0)


@pytest.fixture
def admin_client(client: FlaskClient, app: Flask) -> FlaskClient:
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def _failing(server: FeedServer) -> dict[str, str]:
    """An address for each kind of failure."""
    server.redirect("loop-a.xml", server.url("loop-b.xml"))
    return {
        "unreachable": server.serve("slow.xml", "rss20.xml", delay=6),
        "http_500": server.serve("broken.xml", status=500),
        "http_404": server.url("nowhere.xml"),
        "too_large": server.serve("huge.xml", body=b"<rss>" + b"x" * 50_000, stream=True),
        "redirects": server.redirect("loop-b.xml", server.url("loop-a.xml")),
        "not_a_feed": server.serve("garbage.txt", "garbage.txt", content_type="text/plain"),
    }


DANISH = {
    "unreachable": (
        "Serveren kunne ikke nås, eller den svarede ikke færdigt inden for 2 sekunder."
    ),
    "http_500": "Der er en fejl på serveren (HTTP-status 500).",
    "http_404": "Der er intet på adressen (HTTP-status 404).",
    "too_large": "Dokumentet på adressen er for stort: over 10 KB.",
    "redirects": "Adressen viderestiller mere end 5 gange.",
    "not_a_feed": "Adressen fører ikke til et RSS- eller Atom-feed, der kan læses.",
}
ENGLISH = {
    "unreachable": "The server could not be reached, or did not answer in full within 2 seconds.",
    "http_500": "The server has an error (HTTP status 500).",
    "http_404": "There is nothing at the address (HTTP status 404).",
    "too_large": "The document at the address is too large: more than 10 KB.",
    "redirects": "The address redirects more than 5 times.",
    "not_a_feed": "The address does not lead to an RSS or Atom feed that can be read.",
}


def _page(response) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize("lang", [None, "en"])
def test_fetching_a_feed_now_says_why_it_failed_in_the_readers_language(
    admin_client, app, feed_server, lang
):
    said, head = (ENGLISH, "The feed could not be fetched. ") if lang else (DANISH, "")
    if lang:
        admin_client.get(f"{PAGE}?lang={lang}")
    else:
        head = "Feedet kunne ikke hentes. "
    for kind, url in _failing(feed_server).items():
        with app.app_context():
            feed_id = services.add_feed("kl-nyheder", url).id
        response = post_form(admin_client, f"/staff/feeds/{feed_id}/fetch", page=PAGE)
        assert response.status_code == 303
        page = _page(admin_client.get(PAGE))
        assert head + said[kind] in page, kind
        # The feeds table says the stored last error in the reader's language too.
        row = re.search(rf'<tr data-feed-id="{feed_id}">(.*?)</tr>', page, re.S).group(1)
        assert said[kind] in row, kind
        if not lang:
            assert not any(detail in page for detail in ENGLISH_DETAIL), kind
        with app.app_context():
            services.remove_feed(feed_id)


@pytest.mark.parametrize("lang", [None, "en"])
def test_discovery_says_why_the_page_could_not_be_fetched_in_the_readers_language(
    admin_client, feed_server, lang
):
    said, head = (ENGLISH, "The page could not be fetched. ") if lang else (DANISH, "")
    if lang:
        admin_client.get(f"{PAGE}?lang={lang}")
    else:
        head = "Siden kunne ikke hentes. "
    for kind, url in _failing(feed_server).items():
        if kind == "not_a_feed":
            continue  # a page that is no feed is read for its links
        response = post_form(admin_client, PAGE, {"url": url, "action": "discover"})
        assert response.status_code == 422, kind
        page = _page(response)
        assert head + said[kind] in page, kind
        if not lang:
            assert not any(detail in page for detail in ENGLISH_DETAIL), kind


def test_the_cli_and_the_log_keep_the_english_detail(app, feed_server):
    failing = _failing(feed_server)
    with app.app_context():
        ids = {kind: services.add_feed("kl-nyheder", url).id for kind, url in failing.items()}
        outcomes = {o.feed_id: o for o in services.fetch_feeds(list(ids.values()))}
    kinds = {kind: outcomes[feed_id].error_kind for kind, feed_id in ids.items()}
    assert kinds == {
        "unreachable": FetchErrorKind.UNREACHABLE,
        "http_500": FetchErrorKind.HTTP_STATUS,
        "http_404": FetchErrorKind.HTTP_STATUS,
        "too_large": FetchErrorKind.TOO_LARGE,
        "redirects": FetchErrorKind.TOO_MANY_REDIRECTS,
        "not_a_feed": FetchErrorKind.NOT_A_FEED,
    }
    described = outcomes[ids["unreachable"]].describe()
    assert "error: the server could not be reached" in described
    assert "HTTP 500" in outcomes[ids["http_500"]].describe()


@pytest.mark.parametrize("limit", [5_000_000, 999])
@pytest.mark.parametrize("kind", [*FetchErrorKind, None, "a-kind-not-yet-known"])
def test_every_kind_of_failure_has_a_danish_text(app, kind, limit):
    params = {"seconds": 10, "status": 418, "limit": limit, "count": 5}
    with app.test_request_context("/"):
        danish = fetch_error_text(kind, params)
    with app.test_request_context("/", query_string={"lang": "en"}):
        english = fetch_error_text(kind, params)
    assert danish and english and danish != english


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        (None, "Udgiveren har fjernet feedet (HTTP-status 410)."),
        ("en", "The publisher has removed the feed (HTTP status 410)."),
    ],
)
def test_a_feed_gone_for_good_is_shown_disabled_in_the_readers_language(
    admin_client, app, feed_server, lang, said
):
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", feed_server.serve("gone.xml", status=410)).id
        [outcome] = services.fetch_feeds([feed_id])
        assert outcome.disabled
        # The CLI's English is kept.
        assert db.session.get(Feed, feed_id).last_error.startswith("410 Gone")
    page = _page(admin_client.get(f"{PAGE}?lang={lang}" if lang else PAGE))
    row = re.search(rf'<tr data-feed-id="{feed_id}">(.*?)</tr>', page, re.S).group(1)
    assert said in row and "410 Gone" not in row


STORED_BEFORE_0029 = {
    "HTTP 500 Internal Server Error": "http_status",
    "the server could not be reached, or did not answer in full within 20 seconds": "unreachable",
    "the feed is too large (more than 5000000 bytes; the limit is 5000000)": "too_large",
    "more than 5 redirects": "too_many_redirects",
    "not an RSS or Atom feed (SAXParseException: syntax error)": "not_a_feed",
    "could not be parsed: ValueError: x": "not_a_feed",
    "410 Gone: the publisher has removed the feed": "gone",
    "ConnectTimeout: something new": "failed",
}


def test_migration_0029_sorts_the_errors_stored_before_it(app):
    with app.app_context():
        ids = {
            error: services.add_feed("kl-nyheder", f"https://kl.dk/{n}.xml").id
            for n, error in enumerate([*STORED_BEFORE_0029, None])
        }
        db.session.remove()
        downgrade(revision="0028")
        try:
            for error, feed_id in ids.items():
                db.session.execute(
                    text("UPDATE feeds SET last_error = :e WHERE id = :id"),
                    {"e": error, "id": feed_id},
                )
            db.session.commit()
            db.session.remove()
        finally:
            upgrade()
        db.session.remove()
        kinds = {
            error: db.session.get(Feed, feed_id).last_error_kind for error, feed_id in ids.items()
        }
    assert kinds == {**STORED_BEFORE_0029, None: None}


def test_a_small_size_limit_is_said_in_danish_bytes(app):
    with app.test_request_context("/"):
        assert fetch_error_text(FetchErrorKind.TOO_LARGE, {"limit": 999}).endswith("over 999 byte.")
        assert fetch_error_text(FetchErrorKind.TOO_LARGE, {"limit": 1_500_000}).endswith(
            "over 1,5 MB."
        )
