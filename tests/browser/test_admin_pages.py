"""The administrators' pages in headless Chromium: importing a file through the upload
form (dry run, then for real), finding a subscriber and reading their history, erasing
them; axe-core on each of these pages, with and without error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from tests.browser.helpers import AxeAudit, submit
from tests.browser.test_staff_pages import audit
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

MAYORS = (
    "email;name;municipality;role\n"
    "borgmester@aarhus.dk;Anders Aarhus;Aarhus Kommune;borgmester\n"
    "borgmester@aeroe.dk;Birthe Ærø;Ærø;borgmester\n"
)
BAD = "email,name\nikke-en-adresse,Bent\nborgmester@aarhus.dk,Anders\n"


def subscribers(live_server: LiveServer) -> list[str]:
    with live_server.app.app_context():
        emails = list(db.session.scalars(db.select(Subscriber.email).order_by(Subscriber.email)))
        db.session.remove()
    return emails


def test_an_administrator_imports_finds_and_erases_a_subscriber(
    axe_page, sign_in_admin, live_server, axe: AxeAudit, tmp_path: Path
):
    good = tmp_path / "borgmestre.csv"
    good.write_text(MAYORS, encoding="cp1252")
    bad = tmp_path / "fejl.csv"
    bad.write_text(BAD)

    page = sign_in_admin(axe_page)
    page.goto("/staff/subscribers/import")
    audit(axe, page, "import")

    # Without a file: the error summary links to the field.
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    assert page.locator("#error-summary a[href='#file']").count() == 1
    audit(axe, page, "import, no file")

    # A bad file is refused whole, line by line.
    page.set_input_files("#file", str(bad))
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    problems = page.locator("#import-problems li")
    assert problems.count() == 1
    assert problems.first.inner_text().startswith("Linje 2:")
    audit(axe, page, "import, refused file")
    assert subscribers(live_server) == []

    # Dry run (the default), then for real with the basis and the welcome mail.
    page.set_input_files("#file", str(good))
    page.check("#mode-1")
    page.fill("#basis", "Borgmester efter kommunalvalget 2025")
    page.check("#welcome")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.ok
    assert "Tilmeldt: 2" in page.locator("#import-report").inner_text()
    assert subscribers(live_server) == []
    audit(axe, page, "import, dry run")
    page.set_input_files("#file", str(good))
    page.uncheck("#dry_run")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.ok
    assert page.locator("#import-report").get_by_text("Importeret").count() == 1
    assert subscribers(live_server) == ["borgmester@aarhus.dk", "borgmester@aeroe.dk"]

    # Find a subscriber by municipality and open the history.
    page.goto("/staff/subscribers")
    page.select_option("#municipality", "Ærø")
    with page.expect_navigation():
        page.click("main form[role=search] button[type=submit]")
    rows = page.locator("main table tbody tr")
    assert rows.count() == 1
    audit(axe, page, "subscribers, filtered")
    with page.expect_navigation():
        page.click("main table tbody a")
    assert page.locator("main h1").inner_text() == "borgmester@aeroe.dk"
    assert page.get_by_text("Borgmester efter kommunalvalget 2025").count() >= 1
    audit(axe, page, "subscriber history")

    # Erase: the box must be ticked first.
    with page.expect_navigation():
        page.click("main a[href$='/erase']")
    audit(axe, page, "erase")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    audit(axe, page, "erase, box not ticked")
    page.check("#understood")
    submit(page, "main form[method=post] button[type=submit]")
    assert page.url.endswith("/staff/subscribers")
    assert subscribers(live_server) == ["borgmester@aarhus.dk"]

    # The suppression list with entries (a lift button per row) and a refused address.
    page.goto("/staff/suppressions")
    page.fill("#email", "ikke-en-adresse")
    response = submit(
        page, "main form[method=post][action='/staff/suppressions'] button[type=submit]"
    )
    assert response.status == 422
    audit(axe, page, "suppression list, bad address")
    page.fill("#email", "ringede@kommune.dk")
    submit(page, "main form[method=post][action='/staff/suppressions'] button[type=submit]")
    assert page.locator("main table tbody tr").count() == 1
    audit(axe, page, "suppression list, one entry")
    for path, label in [
        ("/staff/subscribers/export", "export"),
        ("/staff/audit", "audit log"),
        ("/staff/newsletters/bestyrelse/welcome-letter", "welcome letter"),
    ]:
        response = page.goto(path)
        assert response.status == 200, label
        audit(axe, page, label)
    assert page.locator("main").get_by_text("subscriber.erase").count() == 0  # not on this page
    page.goto("/staff/audit?action=subscriber.erase")
    assert page.locator("main table tbody tr").count() == 1
    axe.assert_clean()


def test_the_administrators_pages_load_whole_under_the_content_security_policy(page, sign_in_admin):
    """Under the app's real CSP: no console error, no refused stylesheet or script."""
    sign_in_admin(page)
    for path in [
        "/staff/subscribers",
        "/staff/subscribers/import",
        "/staff/subscribers/export",
        "/staff/suppressions",
        "/staff/audit",
        "/staff/newsletters/bestyrelse/welcome-letter",
    ]:
        response = page.goto(path)
        assert response.status == 200, path
