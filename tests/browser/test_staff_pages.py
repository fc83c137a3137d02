"""The staff pages in headless Chromium: logging in through the form, the dashboard,
logging out, and axe-core on each page a member of staff meets."""

from __future__ import annotations

import pytest

from tests.browser.helpers import (
    ADMIN,
    NEWSLETTER_SLUGS,
    AxeAudit,
    log_in,
    make_admin,
    submit,
)

pytestmark = pytest.mark.browser


def audit(axe: AxeAudit, page, label: str) -> None:
    assert page.get_attribute("html", "lang") == "da", label
    assert page.locator("main h1").count() == 1, label
    axe.check(page, label)


def test_staff_member_logs_in_sees_the_dashboard_and_logs_out(page, live_server):
    make_admin(live_server)
    response = page.goto("/staff/")
    # Sent to the login, and back to the dashboard after it.
    assert page.url.startswith(f"{live_server.url}/staff/login?next=")
    assert response.status == 200

    response = log_in(page, password="wrong-password-but-long")
    assert response.status == 422
    assert page.locator("#login-failed").count() == 1
    assert page.input_value("#password") == ""

    response = log_in(page)
    assert response.ok
    assert page.url == f"{live_server.url}/staff/"
    assert page.locator("header").get_by_text(ADMIN).count() == 1
    links = page.locator(
        "main table a[href^='/staff/newsletters/']:not([href$='/settings'])"
        ":not([href$='/welcome-letter']):not([href$='/feeds'])"
    )
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == [f"/staff/newsletters/{slug}" for slug in NEWSLETTER_SLUGS]

    # An administrator reaches the staff accounts from the menu.
    with page.expect_navigation():
        page.click("nav.staff-nav a[href='/staff/users']")
    assert page.locator("main table").get_by_text(ADMIN).count() == 1

    submit(page, "header form[action='/staff/logout'] button[type=submit]")
    assert page.url == f"{live_server.url}/staff/login"
    assert page.locator("main .alert-success").count() == 1
    page.goto("/staff/")
    assert page.url.startswith(f"{live_server.url}/staff/login")


def test_staff_pages_are_axe_clean(axe_page, live_server, axe):
    make_admin(live_server)
    page = axe_page
    page.goto("/staff/login")
    audit(axe, page, "login")
    submit(page, "main form[method=post] button[type=submit]")
    audit(axe, page, "login, empty form")
    log_in(page, password="wrong-password-but-long")
    audit(axe, page, "login, failed")
    log_in(page)
    assert page.url.endswith("/staff/")
    audit(axe, page, "dashboard")
    for path, label in [
        ("/staff/users", "staff accounts"),
        ("/staff/users/new", "new staff account"),
        ("/staff/newsletters/bestyrelse/settings", "newsletter settings"),
    ]:
        response = page.goto(path)
        assert response.status == 200, label
        audit(axe, page, label)

    # Forms with their error messages.
    page.goto("/staff/users/new")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    audit(axe, page, "new staff account, empty")
    page.goto("/staff/newsletters/bestyrelse/settings")
    page.fill("#name", "")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    audit(axe, page, "newsletter settings, no name")
    axe.assert_clean()
