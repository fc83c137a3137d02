"""Issue 16's pages in headless Chromium, in Danish, axe-core on each: the next digest
previewed on the feeds page and made a draft in one click, autodiscovery offering a
page's feeds, a feed's filter previewed and saved, an OPML file refused with its
reasons, and sections ordered with the keyboard alone (no script needed).

The live server runs on the app's clock (`running_clock`: Monday 30 November 2026 after
the digests' hour): the test is the same at any hour and on any day."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from newsletters.catalog.models import DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.feeds import services
from tests.browser.helpers import AxeAudit, submit
from tests.support.feedserver import FeedServer
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

PAGE = b"""<!DOCTYPE html><html lang="da"><head><title>KL</title>
<link rel="alternate" type="application/rss+xml" title="KL's nyheder" href="/kl.xml">
<link rel="alternate" type="application/atom+xml" title="Kategorier" href="/cat.xml">
</head><body><p>KL</p></body></html>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<opml version="2.0"><body><outline text="&lol2;" xmlUrl="https://kl.dk/a"/></body></opml>"""


def audit(axe: AxeAudit, page, label: str) -> None:
    assert page.get_attribute("html", "lang") == "da", label
    assert page.locator("main h1").count() == 1, label
    axe.check(page, label)


def _one_feed_fetched(live_server: LiveServer, feed_server: FeedServer) -> int:
    app = live_server.app
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", feed_server.serve("kl.xml", "rss20.xml")).id
        services.fetch_feeds([feed_id])
        newsletter = newsletter_by_slug("kl-nyheder")
        newsletter.digest_mode = DigestMode.REVIEW
        db.session.commit()
        db.session.remove()
    return feed_id


def test_editor_previews_filters_orders_and_drafts_the_next_digest(
    running_clock, axe_page, sign_in_admin, live_server, feed_server, axe
):
    kl = _one_feed_fetched(live_server, feed_server)
    feeds_url = "/staff/newsletters/kl-nyheder/feeds"

    page = sign_in_admin(axe_page)
    page.goto(feeds_url)
    # The next digest: when it goes and what it would hold now, as the mail's text.
    expect(page.locator("main [data-field=next-slot]")).to_contain_text("Næste sammendrag:")
    expect(page.locator("main [data-field=preview-count]")).to_contain_text(
        "3 artikler slipper igennem filtrene"
    )
    expect(page.locator("main [data-field=preview-subject]")).to_have_text(
        "KL's daglige nyhedsbreve 1. december 2026"
    )
    page.click("main details summary")
    expect(page.locator("#digest-preview-text")).to_contain_text("## Klima: Kommunerne")
    audit(axe, page, "feeds page with the next digest")

    # Autodiscovery: a web page's address offers the feeds it announces.
    site = feed_server.serve("side.html", body=PAGE, content_type="text/html")
    feed_server.serve("cat.xml", "categories.xml")
    page.fill("#url", site)
    submit(page, "main form[action$='/feeds'] button[value=discover]")
    offered = page.locator("main [data-field=discovered] li")
    expect(offered).to_have_count(2)
    expect(offered.first).to_contain_text("KL's nyheder")
    audit(axe, page, "feeds found on a web page")
    submit(page, "main [data-field=discovered] li:nth-child(2) button")
    expect(page.locator("main .alert-success")).to_contain_text("er tilføjet")
    rows = page.locator("main tr[data-feed-id]")
    expect(rows).to_have_count(2)
    cat = int(rows.nth(1).get_attribute("data-feed-id"))

    # A filter: previewed (nothing saved), then saved; filtered items stay visible.
    with page.expect_navigation():
        page.click(f"main a[href='/staff/feeds/{kl}/filter']")
    expect(page.locator("main h1")).to_contain_text("Filter for")
    audit(axe, page, "a feed's filter")
    page.fill("#exclude", "klima\nKØBENHAVN")
    submit(page, "main form button[value=preview]")
    expect(page.locator("main h2#items-heading")).to_contain_text("endnu ikke gemt")
    expect(page.locator("main tr[data-passes=no]")).to_have_count(1)
    audit(axe, page, "a filter's preview")
    page.fill("#include", "nul\u000bbyte")
    response = submit(page, "main form button[value=save]")
    assert response.status == 422
    expect(page.locator("main .form-error-message").first).to_contain_text("kontroltegn")
    audit(axe, page, "a filter refused")
    page.fill("#include", "")
    submit(page, "main form button[value=save]")
    expect(page.locator("main .alert-success")).to_contain_text("Filteret er gemt")
    expect(page.locator("main tr[data-passes=no]")).to_contain_text("Klima")
    with page.expect_navigation():
        page.click(f"main a[href='{feeds_url}']")
    expect(page.locator("main [data-field=filtered-count]")).to_contain_text("1 frasorteret")

    # An OPML file that cannot be read safely: refused, each reason in Danish.
    page.set_input_files("#file", {"name": "ond.opml", "mimeType": "text/x-opml", "buffer": LAUGHS})
    response = submit(page, "main form[action$='/feeds/opml'] button[type=submit]")
    assert response.status == 422
    expect(page.locator("main [data-field=opml-errors]")).to_contain_text("DOCTYPE-erklæring")
    audit(axe, page, "an OPML file refused")

    # Sections, ordered with the keyboard alone: type the place, press Enter.
    page.check("#sections")
    submit(page, "main form[action$='/digest-settings'] button[type=submit]")
    expect(page.locator("#sections")).to_be_checked()
    page.focus(f"#position-{kl}")
    page.keyboard.press("Control+A")
    page.keyboard.type("5")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("main .alert-success")).to_contain_text("flyttet")
    page.click("main details summary")
    text = page.locator("#digest-preview-text").inner_text()
    assert text.index("■ Kategorier") < text.index("■ KL Nyheder"), text
    audit(axe, page, "feeds page with sections")
    assert cat != kl

    # One click: the preview becomes a draft to edit (review or automatic alike).
    submit(page, "main form[action$='/digest/draft'] button[type=submit]")
    expect(page.locator("main .alert-success")).to_contain_text("som kladde")
    expect(page.locator("main .badge")).to_have_text("Kladde")
    page.goto(feeds_url)
    expect(page.locator("main [data-field=preview-count]")).to_contain_text("Ingen artikler")
    audit(axe, page, "feeds page after the draft")
    axe.assert_clean()
