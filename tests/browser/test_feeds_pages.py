"""The feeds' staff pages and the review of a digest in headless Chromium: an
administrator attaches a feed, fetches it, puts the digest in review mode, makes the
digest, drops an item, sends it; axe-core on each page on the way.

The live server runs on the app's clock (`running_clock`: a Monday morning after the
digests' hour, running from there): the test is the same at any hour and on any day."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import AxeAudit, submit
from tests.support.editions import confirmed_audience, draft

pytestmark = pytest.mark.browser


def audit(axe: AxeAudit, page, label: str) -> None:
    assert page.get_attribute("html", "lang") == "da", label
    assert page.locator("main h1").count() == 1, label
    axe.check(page, label)


def test_admin_attaches_a_feed_and_an_editor_reviews_and_sends_the_digest(
    running_clock, axe_page, sign_in_admin, live_server, smtp_server, feed_server, axe
):
    audience = confirmed_audience(live_server.app, 3, slug="kl-nyheder")
    # Items of Sunday 29 November: news on Monday.
    url = feed_server.serve("kl.xml", "rss20.xml")

    page = sign_in_admin(axe_page)
    with page.expect_navigation():
        page.click("main a[href='/staff/newsletters/kl-nyheder/feeds']")
    audit(axe, page, "feeds, none yet")

    # A bad address first, then the feed.
    page.fill("#url", "kl.dk/rss")
    response = submit(page, "main form[action$='/feeds'] button[value=add]")
    assert response.status == 422
    expect(page.locator("#url-error")).to_contain_text("https://")
    audit(axe, page, "feeds, bad address")
    page.fill("#url", url)
    page.fill("#title", "KL's nyheder")
    submit(page, "main form[action$='/feeds'] button[value=add]")
    expect(page.locator("main .alert-success")).to_contain_text("er tilføjet")
    row = page.locator("main tr[data-feed-id]")
    expect(row).to_contain_text("KL's nyheder")

    # The in-process worker fetches a new feed at once; "Fetch now" asks again (a 304
    # if the worker was first).
    submit(page, "main tr[data-feed-id] form[action$='/fetch'] button")
    expect(page.locator("main .alert-success")).to_contain_text("Feedet er")
    expect(row.locator(".badge")).to_have_text("OK")
    expect(row.locator("td.numeric")).to_have_text("3")
    # Attached after today's hour (07:00): the first digest is tomorrow's, not one
    # made up for this morning at once (kl-nyheder sends automatically).
    expect(page.locator("main [data-field=next-slot]")).to_have_text(
        "Næste sammendrag: tirsdag den 1. december 2026 kl. 07.00."
    )
    audit(axe, page, "feeds, one fetched")

    # Review mode: the digest waits as a draft.
    page.select_option("#mode", "review")
    submit(page, "main form[action$='/digest-settings'] button[type=submit]")
    expect(page.locator("#mode")).to_have_value("review")
    page.fill("#hour", "25")
    response = submit(page, "main form[action$='/digest-settings'] button[type=submit]")
    assert response.status == 422
    audit(axe, page, "feeds, bad hour")

    page.goto("/staff/newsletters/kl-nyheder")
    audit(axe, page, "editions of a feed-based newsletter")
    submit(page, "main form[action$='/digest'] button[type=submit]")
    expect(page.locator("main .alert-success")).to_contain_text("som kladde")
    edition_url = page.url
    expect(page.locator("main .badge")).to_have_text("Kladde")

    # The editor drops the second item and adds a note, then sends.
    with page.expect_navigation():
        page.click("main a[href$='/edit']")
    page.fill("#body", "Dagens vigtigste fra KL.")
    page.check("#items-1-remove")
    submit(page, "main form button[value=save]")
    assert page.url == edition_url
    with page.expect_navigation():
        page.click("main a[href$='/send']")
    submit(page, "#send-now")
    expect(page.locator("[data-field=status]")).to_have_text("Sendt", timeout=20_000)
    mails = smtp_server.wait_for(3)
    assert sorted(m.rcpt_to for m in mails) == sorted(audience)
    assert "Dagens vigtigste fra KL." in mails[0].text
    assert "Beskæftigelse" not in mails[0].text and "Klima" in mails[0].text

    # The board-meeting edition's picker.
    edition_id = draft(live_server.app, slug="bestyrelse")
    page.goto(f"/staff/editions/{edition_id}")
    with page.expect_navigation():
        page.click(f"main a[href='/staff/editions/{edition_id}/feed-items']")
    audit(axe, page, "pick feed items")
    response = submit(page, "main form button[type=submit]")
    assert response.status == 422
    audit(axe, page, "pick feed items, none chosen")
    page.check("#items-0")
    submit(page, "main form button[type=submit]")
    expect(page.locator("#items-0-heading")).to_have_value(
        "Klima: Kommunerne er i mål med klimaplanerne"
    )
    axe.assert_clean()
