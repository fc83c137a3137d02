"""The editor's flow in headless Chromium: log in, compose a board-meeting edition with
two items, preview it, send a test, send it and watch the progress until it is sent; and
axe-core on each page of that flow."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from newsletters.editions import editing, sending
from newsletters.editions.models import Edition, EditionStatus
from newsletters.extensions import db
from newsletters.staff import services
from tests.browser.helpers import AxeAudit, screenshot, submit
from tests.support.editions import confirmed_audience
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

EDITOR = "redaktoer@kl.dk"
PASSWORD = "rigtig-hest-batteri-hæfteklamme"
SUBJECT = "Nyt fra KL's bestyrelse, marts"
SAVE = "main form button[value=save]"


def make_editor(live_server: LiveServer) -> None:
    with live_server.app.app_context():
        services.create_staff(EDITOR, role="editor", password=PASSWORD)
        db.session.remove()


def log_in(page, path: str = "/staff/") -> None:
    page.goto(path)
    page.fill("#email", EDITOR)
    page.fill("#password", PASSWORD)
    submit(page)


def audit(axe: AxeAudit, page, label: str) -> None:
    assert page.get_attribute("html", "lang") == "da", label
    assert page.locator("main h1").count() == 1, label
    axe.check(page, label)


def edition_status(live_server: LiveServer, edition_id: int) -> EditionStatus:
    with live_server.app.app_context():
        try:
            return db.session.get(Edition, edition_id).status
        finally:
            db.session.remove()


def test_editor_composes_previews_tests_sends_and_watches_the_progress(
    page, live_server, smtp_server
):
    make_editor(live_server)
    audience = confirmed_audience(live_server.app, 6)
    # Slow enough that the progress page sees the send running and updates by itself.
    live_server.app.config["SEND_RATE_PER_SECOND"] = 2

    log_in(page)
    with page.expect_navigation():
        page.click("main table a[href='/staff/newsletters/bestyrelse']")
    with page.expect_navigation():
        page.click("main a[href='/staff/newsletters/bestyrelse/editions/new']")

    # Compose: the body in Markdown, the meeting date and two of the three item rows.
    page.fill("#subject", SUBJECT)
    page.fill("#preheader", "Budget og klima")
    page.fill("#body", "Bestyrelsen holdt møde i dag og **besluttede** blandt andet:")
    page.fill("#meeting_date", "2026-03-12")
    page.fill("#items-0-heading", "Budget 2027")
    page.fill("#items-0-text", "Bestyrelsen vedtog *oplægget* til budgetforhandlingerne.")
    page.fill("#items-0-link", "https://www.kl.dk/budget")
    page.fill("#items-1-heading", "Klimaplan")
    page.fill("#items-1-text", "Planen sendes i høring.")
    screenshot(page, "editor-compose")
    response = submit(page, SAVE)
    assert response.ok
    assert "/staff/editions/" in page.url
    edition_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    expect(page.locator("main .alert-success")).to_contain_text("Udgaven er gemt")
    expect(page.locator("main h1")).to_have_text(SUBJECT)

    # Preview: the plain text, then the HTML part as it is.
    with page.expect_navigation():
        page.click(f"main a[href='/staff/editions/{edition_id}/preview']")
    screenshot(page, "editor-preview")
    text = page.locator("#preview-text").inner_text()
    assert "Budget 2027" in text and "Klimaplan" in text
    assert "Læs mere: https://www.kl.dk/budget" in text
    with page.expect_navigation():
        page.click(f"main a[href='/staff/editions/{edition_id}/preview.html']")
    expect(page.locator("h1")).to_have_text(SUBJECT)
    expect(page.locator("h2").first).to_have_text("Budget 2027")
    page.go_back()
    with page.expect_navigation():
        page.click(f"main a[href='/staff/editions/{edition_id}']")

    # A test to the editor and a colleague; the in-process worker delivers it.
    page.fill("#addresses", "kollega@kl.dk")
    submit(page, f"main form[action='/staff/editions/{edition_id}/test'] button[type=submit]")
    expect(page.locator("main .alert-success")).to_contain_text("Testen er på vej")
    screenshot(page, "editor-edition-draft")
    [test_mail] = smtp_server.wait_for(1, address=EDITOR)
    smtp_server.wait_for(1, address="kollega@kl.dk")
    assert test_mail.message["Subject"] == f"[TEST] {SUBJECT}"
    assert "Budget 2027" in test_mail.text
    assert not any(m.rcpt_to in audience for m in smtp_server.received)

    # The confirmation states the number of recipients; then send.
    with page.expect_navigation():
        page.click(f"main a[href='/staff/editions/{edition_id}/send']")
    expect(page.locator("#send-summary")).to_contain_text("6 modtagere")
    expect(page.locator("#send-summary")).to_contain_text("Nyt fra KL's bestyrelse")
    screenshot(page, "editor-send-confirmation")
    submit(page, "#send-now")
    assert page.url == f"{live_server.url}/staff/editions/{edition_id}/progress"
    expect(page.locator("[data-field=recipients]")).to_have_text("6")
    assert page.locator("[data-field=status]").inner_text() == "Sender"

    # The page follows the send by itself until it is sent (no reload by the test).
    expect(page.locator("[data-field=status]")).to_have_text("Sendt", timeout=20_000)
    expect(page.locator("[data-field=sent]")).to_have_text("6")
    expect(page.locator("[data-field=remaining]")).to_have_text("0")
    screenshot(page, "editor-progress-sent")
    counts = Counter(m.rcpt_to for m in smtp_server.received)
    assert all(counts[address] == 1 for address in audience), counts
    assert edition_status(live_server, edition_id) is EditionStatus.SENT

    # The archived edition links to its public web version.
    page.goto(f"/staff/editions/{edition_id}")
    with page.expect_navigation():
        page.click(f"main a[href='/editions/{edition_id}']")
    expect(page.locator("h1")).to_have_text(SUBJECT)


def test_editor_pages_are_axe_clean(running_clock, axe_page, live_server, axe, smtp_server):
    make_editor(live_server)
    confirmed_audience(live_server.app, 5)
    page = axe_page
    log_in(page)

    page.goto("/staff/newsletters/bestyrelse")
    audit(axe, page, "newsletter's editions, empty")
    page.goto("/staff/newsletters/bestyrelse/editions/new")
    audit(axe, page, "compose, new")
    page.fill("#items-0-text", "Tekst uden overskrift")
    page.fill("#items-1-link", "javascript:alert(1)")
    response = submit(page, SAVE)
    assert response.status == 422
    audit(axe, page, "compose, with errors")

    with live_server.app.app_context():
        edition = editing.create_draft(
            newsletter_slug="bestyrelse",
            subject=SUBJECT,
            body_markdown="Bestyrelsen **besluttede**:",
            items=[
                sending.ItemInput("Budget 2027", "Vedtaget.", "https://www.kl.dk/budget"),
                sending.ItemInput("Klimaplan", "I høring."),
            ],
            created_by=EDITOR,
        )
        edition_id = edition.id
        db.session.remove()
    base = f"/staff/editions/{edition_id}"
    for path, label in [
        (f"{base}/edit", "compose, two items"),
        (base, "edition (draft)"),
        (f"{base}/preview", "preview"),
        (f"{base}/send", "send confirmation"),
    ]:
        response = page.goto(path)
        assert response.status == 200, label
        audit(axe, page, label)

    past = (running_clock.local_now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page.fill("#scheduled_at", past)
    response = submit(page, "#schedule-button")
    assert response.status == 422
    audit(axe, page, "send confirmation, time in the past")

    # Enter in the segment field counts (the form's first button); it never sends.
    page.goto(f"{base}/send")
    page.fill("#segment", "region=Atlantis")
    with page.expect_navigation() as navigation:
        page.press("#segment", "Enter")
    assert navigation.value.status == 422
    expect(page.locator("#error-summary")).to_contain_text("er ikke en region")
    audit(axe, page, "send confirmation, bad segment")
    page.fill("#segment", "region=hovedstaden og rolle=borgmester")
    with page.expect_navigation() as navigation:
        page.press("#segment", "Enter")
    assert navigation.value.status == 200
    expect(page.locator("#send-summary")).to_contain_text(
        "0 modtagere: de bekræftede abonnenter på Nyt fra KL's bestyrelse, der opfylder "
        "region=Hovedstaden AND role=borgmester"
    )
    audit(axe, page, "send confirmation, counted for a segment")
    assert edition_status(live_server, edition_id) is EditionStatus.DRAFT

    page.goto(base)
    page.fill("#addresses", "ikke-en-adresse")
    response = submit(page, f"main form[action='{base}/test'] button[type=submit]")
    assert response.status == 422
    audit(axe, page, "edition, bad test address")

    # A slow send: the progress page while it runs, paused, and the cancel question.
    live_server.app.config["SEND_RATE_PER_SECOND"] = 0.5
    page.goto(f"{base}/send")
    submit(page, "#send-now")
    assert page.url.endswith(f"{base}/progress")
    audit(axe, page, "progress, sending")
    submit(page, f"main form[action='{base}/pause'] button[type=submit]")
    assert edition_status(live_server, edition_id) is EditionStatus.PAUSED
    audit(axe, page, "progress, paused")
    page.goto(f"{base}/cancel")
    audit(axe, page, "cancel question")
    submit(page, "main form button[type=submit]")
    assert edition_status(live_server, edition_id) is EditionStatus.CANCELLED
    audit(axe, page, "progress, cancelled")
    page.goto(base)
    audit(axe, page, "edition (archive)")
    page.goto("/staff/newsletters/bestyrelse")
    audit(axe, page, "newsletter's editions")
    axe.assert_clean()
