"""Two-factor login in headless Chromium: an editor sets up an authenticator app from the
QR code's page, keeps the recovery codes, and logs in with a code; an administrator
without two factors is sent to set them up. axe-core on each page."""

from __future__ import annotations

import pyotp
import pytest

from newsletters.extensions import db
from newsletters.staff import services
from tests.browser.helpers import PASSWORD, AxeAudit, submit
from tests.browser.test_staff_pages import audit
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

EDITOR = "redaktoer@kl.dk"
ADMIN = "chef@kl.dk"


def make_staff(live_server: LiveServer, email: str, role: str) -> None:
    with live_server.app.app_context():
        services.create_staff(email, role=role, password=PASSWORD)
        db.session.remove()


def password(page, email: str):
    page.goto("/staff/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    # A password check (scrypt) can take seconds on a loaded machine.
    with page.expect_navigation(timeout=30_000) as navigation:
        page.click("main form[method=post] button[type=submit]", timeout=30_000)
    return navigation.value


def test_an_editor_sets_up_two_factors_and_logs_in_with_a_code(
    clock, axe_page, live_server, axe: AxeAudit
):
    make_staff(live_server, EDITOR, "editor")
    page = axe_page
    password(page, EDITOR)
    assert page.url == f"{live_server.url}/staff/"

    with page.expect_navigation():
        page.click("nav.staff-nav a[href='/staff/two-factor']")
    audit(axe, page, "two-factor, off")
    with page.expect_navigation():
        page.click("main a[href='/staff/two-factor/setup']")
    audit(axe, page, "two-factor, set up")
    assert page.locator("main svg.totp-qr").count() == 1
    secret = page.inner_text("#totp-secret").replace(" ", "")
    totp = pyotp.TOTP(secret)

    # A wrong code first: the error is shown by the field.
    page.fill("#code", "000000")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    assert page.locator("#error-summary a[href='#code']").count() == 1
    audit(axe, page, "two-factor, set up, wrong code")

    page.fill("#code", totp.at(clock()))
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 200
    assert page.locator("#recovery-codes li").count() == 10
    audit(axe, page, "recovery codes")
    with page.expect_navigation():
        page.click("main a.button-primary")
    assert page.url == f"{live_server.url}/staff/"

    submit(page, "header form[action='/staff/logout'] button[type=submit]")
    password(page, EDITOR)
    assert page.url == f"{live_server.url}/staff/login/code"
    audit(axe, page, "login, code")
    # The code of the set-up was used: the next one, half a minute later.
    clock.advance(seconds=30)
    page.fill("#code", totp.at(clock()))
    submit(page)
    assert page.url == f"{live_server.url}/staff/"
    assert page.locator("header").get_by_text(EDITOR).count() == 1
    axe.assert_clean()


def test_an_administrator_without_two_factors_is_sent_to_set_them_up(
    clock, axe_page, live_server, axe: AxeAudit
):
    make_staff(live_server, ADMIN, "admin")
    page = axe_page
    password(page, ADMIN)
    assert page.url == f"{live_server.url}/staff/two-factor/setup"
    # No menu: not logged in yet.
    assert page.locator("nav.staff-nav").count() == 0
    audit(axe, page, "two-factor, required set-up")
    page.goto("/staff/users")
    assert page.url.startswith(f"{live_server.url}/staff/login")
    page.goto("/staff/two-factor/setup")
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.fill("#code", pyotp.TOTP(secret).at(clock()))
    submit(page, "main form[method=post] button[type=submit]")
    assert page.locator("#recovery-codes li").count() == 10
    page.goto("/staff/users")
    assert page.url == f"{live_server.url}/staff/users"
    audit(axe, page, "staff accounts with two-factor and newsletters")
    axe.assert_clean()
