"""Feed autodiscovery: a web page's `<link rel="alternate">` feeds, fetched through the
guarded fetch (the private-address rule, the deadline, the size cap) and offered."""

from __future__ import annotations

import html
import time

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.discovery import find_feed_links
from newsletters.feeds.models import Feed

PAGE = """<!DOCTYPE html>
<html lang="da"><head>
<meta charset="utf-8">
<title>KL</title>
<base href="/nyheder/">
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/rss+xml" title="KL &amp; nyheder" href="rss.xml">
<link rel="Alternate feed" type="application/atom+xml; charset=utf-8" href="/atom.xml" title="Æ">
<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
<link rel="alternate" type="application/rss+xml" href="rss.xml">
<link rel="alternate" type="text/html" href="/en/">
<script>document.write('<link rel="alternate" type="application/rss+xml" href="/evil">')</script>
</head><body>
<link rel="alternate" type="application/rss+xml" href="/in-the-body.xml">
</body></html>
"""


def test_the_links_of_a_page_head_are_found_absolute_and_once():
    found = find_feed_links(PAGE, "https://www.kl.dk/side")
    assert [(c.url, c.title) for c in found] == [
        ("https://www.kl.dk/nyheder/rss.xml", "KL & nyheder"),
        ("https://www.kl.dk/atom.xml", "Æ"),
    ]
    assert find_feed_links("<<<>>>\x00<link rel=alternate", "https://kl.dk/") == []
    many = "".join(
        f'<link rel="alternate" type="application/rss+xml" href="/f{i}">' for i in range(500)
    )
    assert len(find_feed_links(many, "https://kl.dk/")) == 20


# Pages that make Python's HTMLParser (and feedparser) take quadratic time: 200 KB of
# "<a" took 69 s before the head was scanned linearly.
HOSTILE_PAGES = {
    "lt": "<" * 2_000_000,
    "lt-a": "<a" * 1_000_000,
    "end-tags": "</" * 1_000_000,
    "processing": "<?" * 1_000_000,
    "declarations": "<!" * 1_000_000,
    "tags": "<head>" + "<a>" * 600_000,
    "attributes": "<link " + "a=b " * 500_000,
    "unclosed": '<link href="' + "x" * 2_000_000,
    "links": '<link rel=alternate type=application/rss+xml href="/x">' * 40_000,
    "comments": "<!--" * 500_000,
    "nul": "<link\x00 rel=alternate\x00>" * 50_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PAGES))
def test_hostile_html_is_scanned_in_bounded_time(name):
    started = time.perf_counter()
    found = find_feed_links(HOSTILE_PAGES[name], "https://kl.dk/")
    # Generous for a shared machine; the quadratic parse took minutes.
    assert time.perf_counter() - started < 10
    assert len(found) <= 1


def test_a_hostile_page_is_refused_quickly_through_the_fetch(app, feed_server):
    page = feed_server.serve(
        "ond.html", body=b"<html><head>" + b"<a" * 900_000, content_type="text/html"
    )
    started = time.perf_counter()
    with app.app_context():
        found = services.discover_feeds(page)
    assert time.perf_counter() - started < 15
    assert found.candidates == [] and found.error is None


def test_a_page_is_fetched_and_its_feeds_offered(app, feed_server):
    page = feed_server.serve("side.html", body=PAGE.encode(), content_type="text/html")
    with app.app_context():
        found = services.discover_feeds(page)
    assert found.error is None and not found.is_feed
    assert [c.url for c in found.candidates] == [
        feed_server.url("nyheder/rss.xml"),
        feed_server.url("atom.xml"),
    ]


def test_a_feed_address_is_offered_as_it_is(app, feed_server):
    url = feed_server.serve("kl.xml", "rss20.xml")
    with app.app_context():
        found = services.discover_feeds(url)
    assert found.is_feed and [(c.url, c.title) for c in found.candidates] == [(url, "KL Nyheder")]


def test_discovery_keeps_the_fetch_rules(make_app, feed_server):
    guarded = make_app(FEEDS_ALLOW_PRIVATE=False, FEEDS_TIMEOUT_SECONDS=1, FEEDS_PARSE_PROCESSES=0)
    page = feed_server.serve("side.html", body=PAGE.encode(), content_type="text/html")
    with guarded.app_context(), pytest.raises(services.RefusedFeedAddress):
        services.discover_feeds(page)
    assert feed_server.seen("side.html") == []

    allowed = make_app(FEEDS_ALLOW_PRIVATE=True, FEEDS_TIMEOUT_SECONDS=1, FEEDS_MAX_BYTES=10_000)
    slow = feed_server.serve("slow.html", body=PAGE.encode(), content_type="text/html", delay=3)
    huge = feed_server.serve(
        "huge.html", body=b"<html>" + b"x" * 50_000, content_type="text/html", stream=True
    )
    with allowed.app_context():
        assert "could not be reached" in services.discover_feeds(slow).error
        assert "too large" in services.discover_feeds(huge).error
        with pytest.raises(services.BadFeedURL):
            services.discover_feeds("file:///etc/passwd")


@pytest.fixture
def admin_client(client, app):
    from tests.test_staff import ADMIN, login, make_staff

    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def _feed_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Feed.id)))


def test_the_add_form_finds_a_pages_feeds_and_adds_the_chosen_one(admin_client, app, feed_server):
    from tests.test_editor import post_form

    feeds_page = "/staff/newsletters/kl-nyheder/feeds"
    page = feed_server.serve("side.html", body=PAGE.encode(), content_type="text/html")
    found = post_form(admin_client, feeds_page, {"url": page, "action": "discover"})
    assert found.status_code == 200
    text = html.unescape(found.get_data(as_text=True))
    assert 'data-field="discovered"' in text and feed_server.url("atom.xml") in text
    assert _feed_count(app) == 0

    added = post_form(
        admin_client,
        feeds_page,
        {"url": feed_server.url("atom.xml"), "title": "Ældre", "action": "add"},
    )
    assert added.status_code == 303
    assert _feed_count(app) == 1

    empty = feed_server.serve(
        "empty.html", body=b"<html><head></head></html>", content_type="text/html"
    )
    none = post_form(admin_client, feeds_page, {"url": empty, "action": "discover"})
    assert none.status_code == 422
    missing = post_form(
        admin_client, feeds_page, {"url": feed_server.url("404.html"), "action": "discover"}
    )
    assert missing.status_code == 422 and "404" in missing.get_data(as_text=True)
    crlf = post_form(admin_client, feeds_page, {"url": page + "\r\nX: y", "action": "discover"})
    assert crlf.status_code == 422
    assert _feed_count(app) == 1


# --------------------------------------------------------------------------- encodings

TITLE = "Nyheder fra Ærø – “KL”"  # an en dash and quotes: 0x96, 0x93, 0x94 in windows-1252


def page_declaring(head: str) -> str:
    return (
        f"<!DOCTYPE html><html><head>{head}<title>Ærø</title>"
        f'<link rel="alternate" type="application/rss+xml" title="{TITLE}" href="/rss.xml">'
        "</head><body></body></html>"
    )


@pytest.mark.parametrize(
    ("head", "encoding", "content_type"),
    [
        ('<meta charset="iso-8859-1">', "cp1252", "text/html"),
        ("<meta charset=windows-1252>", "cp1252", "text/html"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">',
            "cp1252",
            "text/html",
        ),
        # ISO-8859-15 has the euro sign where windows-1252 has the currency sign.
        ('<meta charset="iso-8859-15">', "iso-8859-15", "text/html"),
        # The header outranks the page's own <meta>, as in a browser.
        ('<meta charset="iso-8859-1">', "utf-8", "text/html; charset=utf-8"),
        ('<meta charset="utf-8">', "cp1252", "text/html; charset=latin1"),
        # No declaration at all: UTF-8 if the bytes are, else windows-1252.
        ("", "utf-8", "text/html"),
        ("", "cp1252", "text/html"),
        # Labels not believed: UTF-7 (a way to smuggle markup), UTF-16 in an ASCII page,
        # and one no codec has.
        ('<meta charset="utf-7">', "utf-8", "text/html"),
        ('<meta charset="utf-16">', "utf-8", "text/html"),
        ('<meta charset="x-ond\x00">', "cp1252", "text/html"),
    ],
)
def test_a_page_is_read_in_the_encoding_it_declares(app, feed_server, head, encoding, content_type):
    title = "Priser i € på Ærø" if encoding == "iso-8859-15" else TITLE
    body = page_declaring(head).replace(TITLE, title).encode(encoding)
    page = feed_server.serve("side.html", body=body, content_type=content_type)
    with app.app_context():
        found = services.discover_feeds(page)
    assert [(c.url, c.title) for c in found.candidates] == [(feed_server.url("rss.xml"), title)]


def test_a_byte_order_mark_outranks_the_header_and_the_meta(app, feed_server):
    body = b"\xef\xbb\xbf" + page_declaring('<meta charset="iso-8859-1">').encode("utf-8")
    page = feed_server.serve("bom.html", body=body, content_type="text/html; charset=latin1")
    with app.app_context():
        found = services.discover_feeds(page)
    assert [c.title for c in found.candidates] == [TITLE]
