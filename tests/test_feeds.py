"""Feeds: fetched from a real HTTP server on loopback, parsed, sanitised, de-duplicated."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.fetching import unreachable
from newsletters.feeds.models import Feed, FeedItem
from newsletters.feeds.parsing import parse_feed, sanitise_html, summarise
from tests.support.feedserver import FEEDS_DIR


def add(app: Flask, url: str, slug: str = "kl-nyheder") -> int:
    with app.app_context():
        return services.add_feed(slug, url, by="test").id


def fetch(app: Flask, feed_ids: list[int] | None = None) -> list[services.FetchOutcome]:
    with app.app_context():
        outcomes = services.fetch_feeds(feed_ids)
        db.session.remove()
        return outcomes


def items(app: Flask, slug: str = "kl-nyheder") -> list[FeedItem]:
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        rows = db.session.scalars(
            select(FeedItem).where(FeedItem.newsletter_id == newsletter.id).order_by(FeedItem.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


def feed(app: Flask, feed_id: int) -> Feed:
    with app.app_context():
        row = db.session.get(Feed, feed_id)
        db.session.expunge(row)
        return row


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("file", "titles"),
    [
        (
            "rss091.xml",
            [
                "Borgmestre: Mere frihed til kommunerne",
                "Sådan får nye byrådsmedlemmer en god start",
            ],
        ),
        ("rss10.rdf", ["Ældreplejen får nye rammer", "Skolerne mangler lærere"]),
        (
            "rss20.xml",
            [
                "KL: Økonomiaftalen giver kommunerne luft",
                "Beskæftigelse: Færre på kanten af arbejdsmarkedet",
                "Klima: Kommunerne er i mål med klimaplanerne",
            ],
        ),
        (
            "atom.xml",
            [
                "Digitalisering: Fælles løsninger sparer millioner",
                "Sundhed: Det nære sundhedsvæsen styrkes",
            ],
        ),
    ],
)
def test_every_feed_format_is_read_into_items(app, feed_server, file, titles):
    feed_id = add(app, feed_server.serve(file, file))
    [outcome] = fetch(app)
    assert (outcome.status, outcome.new, outcome.error) == (200, len(titles), None)
    stored = items(app)
    assert [i.title for i in stored] == titles
    assert all(i.link.startswith("https://") for i in stored)
    assert feed(app, feed_id).last_success_at is not None


@pytest.mark.e2e
def test_an_unchanged_feed_is_fetched_with_a_conditional_get_and_not_parsed(app, feed_server):
    url = feed_server.serve("kl.xml", "rss20.xml")
    feed_id = add(app, url)
    fetch(app)
    first = feed(app, feed_id)
    assert first.etag and first.last_modified
    [outcome] = fetch(app)
    assert (outcome.status, outcome.new, outcome.updated) == (304, 0, 0)
    second_request = feed_server.seen("kl.xml")[-1].headers
    assert second_request["If-None-Match"] == first.etag
    assert second_request["If-Modified-Since"] == first.last_modified
    assert len(items(app)) == 3
    assert feed(app, feed_id).last_status == 304


@pytest.mark.e2e
@pytest.mark.parametrize("processes", [0, 1])
def test_parsing_in_this_process_or_in_worker_processes_stores_the_same(
    make_app, feed_server, processes
):
    app = make_app(FEEDS_PARSE_PROCESSES=processes)
    add(app, feed_server.serve("a.xml", "rss20.xml"))
    add(app, feed_server.serve("b.atom", "atom.xml"))
    add(app, feed_server.serve("c", "garbage.txt", content_type="text/plain"))
    outcomes = sorted((o.new, o.error is not None) for o in fetch(app))
    assert outcomes == [(0, True), (2, False), (3, False)]
    assert len(items(app)) == 5


@pytest.mark.e2e
def test_a_killed_parser_process_does_not_lose_a_fetch(make_app, feed_server):
    app = make_app(FEEDS_PARSE_PROCESSES=1)
    add(app, feed_server.serve("a.xml", "rss20.xml"))
    pool = services.parsing_pool(1)
    pool.submit(int).result()  # started
    for process in list(pool._processes.values()):
        process.kill()
        process.join(timeout=10)
    [outcome] = fetch(app)
    assert (outcome.new, outcome.error) == (3, None)
    add(app, feed_server.serve("b.atom", "atom.xml"))
    outcomes = sorted(o.new for o in fetch(app))  # a new pool for the next fetch
    assert outcomes == [0, 2]


@pytest.mark.e2e
def test_a_server_without_etag_gets_if_modified_since(app, feed_server):
    url = feed_server.serve("lm.xml", "rss20.xml")
    feed_id = add(app, url)
    fetch(app)
    with app.app_context():
        row = db.session.get(Feed, feed_id)
        row.etag = None  # as if the server had only sent Last-Modified
        db.session.commit()
    [outcome] = fetch(app)
    assert outcome.status == 304
    assert "If-None-Match" not in feed_server.seen("lm.xml")[-1].headers


@pytest.mark.e2e
def test_the_fetcher_says_who_it_is(app, feed_server):
    add(app, feed_server.serve("ua.xml", "rss20.xml"))
    fetch(app)
    agent = feed_server.seen("ua.xml")[0].headers["User-Agent"]
    assert agent.startswith("KL-Nyhedsbreve/") and "http://localhost" in agent


@pytest.mark.e2e
def test_a_permanent_redirect_updates_the_stored_url(app, feed_server):
    new_url = feed_server.serve("new-home.xml", "rss20.xml")
    old_url = feed_server.redirect("old-home.xml", new_url, status=301)
    feed_id = add(app, old_url)
    [outcome] = fetch(app)
    assert outcome.moved_to == new_url and outcome.new == 3
    assert feed(app, feed_id).url == new_url
    fetch(app)
    assert feed_server.seen("old-home.xml").__len__() == 1


@pytest.mark.e2e
def test_a_temporary_redirect_keeps_the_stored_url(app, feed_server):
    target = feed_server.serve("today.xml", "rss20.xml")
    url = feed_server.redirect("usual.xml", target, status=302)
    feed_id = add(app, url)
    [outcome] = fetch(app)
    assert outcome.new == 3 and outcome.moved_to is None
    assert feed(app, feed_id).url == url


@pytest.mark.e2e
def test_410_gone_disables_the_feed(app, feed_server):
    feed_id = add(app, feed_server.serve("gone.xml", status=410))
    [outcome] = fetch(app)
    assert outcome.disabled
    row = feed(app, feed_id)
    assert not row.enabled and "410" in row.disabled_reason
    assert fetch(app) == []  # `feeds fetch` takes enabled feeds only


@pytest.mark.e2e
def test_one_slow_or_broken_feed_never_stops_the_others(make_app, feed_server):
    app = make_app(FEEDS_TIMEOUT_SECONDS=0.5)
    slow = add(app, feed_server.serve("slow.xml", "rss20.xml", delay=3))
    broken = add(app, feed_server.serve("broken.xml", status=500))
    good = add(app, feed_server.serve("good.xml", "atom.xml"))
    outcomes = {o.feed_id: o for o in fetch(app)}
    assert outcomes[slow].error == unreachable(0.5)
    assert "HTTP 500" in outcomes[broken].error
    assert outcomes[good].new == 2 and outcomes[good].error is None
    for feed_id in (slow, broken):
        row = feed(app, feed_id)
        assert row.failures_in_a_row == 1 and row.last_error and row.enabled
        assert row.last_success_at is None


@pytest.mark.e2e
def test_failures_back_off_and_a_success_resets_them(make_app, feed_server):
    app = make_app(FEEDS_FETCH_INTERVAL_MINUTES=10, FEEDS_MAX_BACKOFF_HOURS=1)
    feed_id = add(app, feed_server.serve("flaky.xml", status=503, headers={"Retry-After": "5"}))
    waits = []
    for _ in range(5):
        fetch(app)
        row = feed(app, feed_id)
        waits.append(round((row.next_attempt_at - row.last_fetch_at).total_seconds() / 60))
    assert waits == [10, 20, 40, 60, 60]
    feed_server.serve("flaky.xml", "rss20.xml")
    [outcome] = fetch(app)
    row = feed(app, feed_id)
    assert outcome.new == 3 and row.failures_in_a_row == 0 and row.last_error is None


@pytest.mark.e2e
def test_a_feed_over_the_size_cap_is_not_read(make_app, feed_server):
    app = make_app(FEEDS_MAX_BYTES=50_000)
    huge = b"<rss version='2.0'><channel>" + b"<item><title>x</title></item>" * 10_000
    declared = add(app, feed_server.serve("huge.xml", body=huge))
    streamed = add(app, feed_server.serve("huge-stream.xml", body=huge, stream=True))
    outcomes = {o.feed_id: o for o in fetch(app)}
    for feed_id in (declared, streamed):
        assert "too large" in outcomes[feed_id].error
    assert items(app) == []


@pytest.mark.e2e
def test_malformed_but_readable_xml_is_read_and_noted(app, feed_server):
    add(app, feed_server.serve("bozo.xml", "bozo.xml"))
    [outcome] = fetch(app)
    assert outcome.new == 2 and outcome.error is None and outcome.warning
    assert [i.title for i in items(app)] == [
        "Kommuner & regioner: Nyt samarbejde",
        "Trafik: Flere busser i landdistrikterne",
    ]


@pytest.mark.e2e
def test_a_document_that_is_not_a_feed_is_an_error_not_a_crash(app, feed_server):
    feed_id = add(app, feed_server.serve("garbage", "garbage.txt", content_type="text/plain"))
    [outcome] = fetch(app)
    assert outcome.error.startswith("not an RSS or Atom feed")
    row = feed(app, feed_id)
    assert row.last_error.startswith("not an RSS or Atom feed") and row.failures_in_a_row == 1


@pytest.mark.e2e
def test_item_html_is_sanitised_before_it_is_stored(app, feed_server):
    add(app, feed_server.serve("evil.xml", "injection.xml"))
    fetch(app)
    stored = items(app)
    everything = " ".join(f"{i.title} {i.link} {i.summary_html} {i.summary_text}" for i in stored)
    for bad in ("<script", "onclick", "onerror", "onmouseover", "onload", "javascript:",
                "<img", "tracker.example", "<iframe", "<style", "style=", "data:", "<form",
                "<svg", "document.cookie"):  # fmt: skip
        assert bad not in everything, bad
    first = stored[0]
    assert first.title == "Helt almindelig nyhed"
    assert first.link == ""  # a javascript: link is no link
    assert 'href="https://www.kl.dk/ok"' in first.summary_html


@pytest.mark.e2e
def test_danish_text_in_latin1_declared_as_utf8_is_read_correctly(app, feed_server):
    add(
        app,
        feed_server.serve(
            "latin1.xml",
            "latin1-declared-utf8.xml",
            content_type="application/rss+xml; charset=utf-8",
        ),
        slug="danske-kommuner",
    )
    fetch(app)
    [item] = items(app, "danske-kommuner")
    assert item.title == "Ældre i København får hjælp"
    assert item.summary_text.startswith("Æbler, øl og ål: Københavns Kommune og Århus")


@pytest.mark.e2e
def test_relative_links_are_made_absolute(app, feed_server):
    url = feed_server.serve("relative.atom", "atom.xml")
    add(app, url)
    fetch(app)
    digital, health = items(app)
    assert digital.link == "https://www.kl.dk/nyheder/digitalisering"  # xml:base
    assert health.link == "https://www.kl.dk/nyheder/sundhed"
    assert 'href="https://www.kl.dk/analyser/digitalisering"' in digital.summary_html


@pytest.mark.e2e
def test_items_without_dates_are_kept_with_no_date(app, feed_server):
    add(app, feed_server.serve("nodates.xml", "no-dates.xml"))
    fetch(app)
    stored = items(app)
    assert len(stored) == 2 and all(i.published_at is None for i in stored)
    assert all(i.first_seen_at is not None for i in stored)


@pytest.mark.e2e
def test_items_without_guids_are_deduplicated_by_link_else_content(app, feed_server):
    url = feed_server.serve("noguids.xml", "no-guids.xml", conditional=False)
    add(app, url)
    [first] = fetch(app)
    assert first.new == 2  # the link that appears twice is one item
    [again] = fetch(app)
    assert (again.new, again.updated) == (0, 0)
    assert len(items(app)) == 2


@pytest.mark.e2e
def test_an_edited_item_is_updated_and_a_changed_guid_is_not_a_duplicate(app, feed_server):
    add(app, feed_server.serve("kl.xml", "rss20.xml"))
    fetch(app)
    before = {i.link: i for i in items(app)}
    feed_server.serve("kl.xml", "rss20-edited.xml")
    [outcome] = fetch(app)
    # New: dagtilbud. Updated: the edited item and the one whose GUID changed.
    assert (outcome.new, outcome.updated) == (1, 2)
    after = {i.link: i for i in items(app)}
    assert len(after) == 4
    edited = after["https://www.kl.dk/nyheder/oekonomiaftale"]
    assert edited.id == before[edited.link].id
    assert edited.title.endswith("(opdateret)") and "2,3 mia." in edited.summary_text
    assert edited.first_seen_at == before[edited.link].first_seen_at
    moved = after["https://www.kl.dk/nyheder/beskaeftigelse"]
    assert moved.id == before[moved.link].id and moved.guid.endswith("?id=1002")


@pytest.mark.e2e
def test_items_are_unique_per_newsletter_not_across_newsletters(app, feed_server):
    url = feed_server.serve("shared.xml", "rss20.xml")
    add(app, url, slug="kl-nyheder")
    add(app, url, slug="danske-kommuner")
    fetch(app)
    assert len(items(app, "kl-nyheder")) == 3 and len(items(app, "danske-kommuner")) == 3
    second_feed = add(app, feed_server.serve("copy.xml", "rss20.xml"), slug="kl-nyheder")
    [outcome] = fetch(app, [second_feed])
    assert outcome.new == 0 and len(items(app, "kl-nyheder")) == 3


@pytest.mark.e2e
def test_scheduler_fetches_only_due_feeds_and_each_once(make_app, feed_server):
    app = make_app(FEEDS_FETCH_INTERVAL_MINUTES=60)
    add(app, feed_server.serve("due.xml", "rss20.xml"))
    with app.app_context():
        assert services.fetch_due("w1") == 1
        assert services.fetch_due("w2") == 0  # not due again for an hour
        count = db.session.scalar(select(func.count(FeedItem.id)))
    assert count == 3 and len(feed_server.seen("due.xml")) == 1


def test_adding_a_feed_refuses_bad_input(app):
    with app.app_context():
        with pytest.raises(services.UnknownNewsletter):
            services.add_feed("nope", "https://www.kl.dk/rss")
        for bad in ("ftp://www.kl.dk/rss", "javascript:alert(1)", "www.kl.dk/rss", ""):
            with pytest.raises(services.BadFeedURL):
                services.add_feed("kl-nyheder", bad)
        services.add_feed("kl-nyheder", "https://www.kl.dk/rss")
        with pytest.raises(services.DuplicateFeed):
            services.add_feed("kl-nyheder", " https://www.kl.dk/rss ")


@pytest.mark.e2e
def test_cli_adds_fetches_and_lists_feeds(runner, app, feed_server):
    url = feed_server.serve("cli.xml", "rss20.xml")
    result = runner.invoke(args=["feeds", "add", "kl-nyheder", url, "--title", "KL nyheder"])
    assert result.exit_code == 0, result.output
    assert f"added to kl-nyheder: {url}" in result.output
    bad = runner.invoke(args=["feeds", "add", "nope", url])
    assert bad.exit_code == 1 and "no newsletter 'nope'" in bad.output
    bad = runner.invoke(args=["feeds", "add", "kl-nyheder", "not a url"])
    assert bad.exit_code == 1 and "not an http(s) address" in bad.output
    again = runner.invoke(args=["feeds", "add", "kl-nyheder", url])
    assert again.exit_code == 1 and "already has the feed" in again.output

    result = runner.invoke(args=["feeds", "fetch"])
    assert result.exit_code == 0, result.output
    assert "3 new, 0 updated" in result.output
    assert "fetched 1 feed(s): 3 new item(s), 0 updated, 0 with errors" in result.output
    result = runner.invoke(args=["feeds", "fetch"])
    assert "not modified (304)" in result.output

    listing = runner.invoke(args=["feeds", "list"])
    assert listing.exit_code == 0 and url in listing.output and "enabled" in listing.output
    feed_id = listing.output.split()[0]
    assert runner.invoke(args=["feeds", "disable", feed_id]).exit_code == 0
    assert "no enabled feeds" in runner.invoke(args=["feeds", "fetch"]).output
    missing = runner.invoke(args=["feeds", "disable", "9999"])
    assert missing.exit_code == 1 and "no feed 9999" in missing.output


# --------------------------------------------------------------------------- pure parts


def test_summaries_are_cut_at_a_word_with_an_ellipsis():
    text = "Kommunerne får flere opgaver i sundhedsreformen og skal ansætte flere"
    cut = summarise(text, 40)
    assert len(cut) <= 40 and cut.endswith("…") and text.startswith(cut[:-1])
    assert summarise("kort", 40) == "kort"


def test_sanitiser_keeps_structure_and_drops_everything_active():
    html = sanitise_html(
        '<p>Hej <b onclick="x()">du</b> <a href="javascript:x()">a</a>'
        '<img src="https://t.example/p.gif"><script>x()</script></p>'
    )
    assert html == '<p>Hej <b>du</b> <a rel="noopener noreferrer">a</a></p>'


def test_every_test_feed_document_is_used_by_a_test():
    documents = {p.name for p in FEEDS_DIR.iterdir() if p.name != "README.md"}
    source = "".join(p.read_text() for p in FEEDS_DIR.parent.glob("test_*.py"))
    assert {d for d in documents if d not in source} == set()


def test_parser_never_raises_on_nonsense():
    for body in (b"", b"\x00\xff\xfe", b"<rss", b"<?xml version='1.0'?><feed/>"):
        parsed = parse_feed(body, url="https://www.kl.dk/x")
        assert parsed.error or parsed.items == []
