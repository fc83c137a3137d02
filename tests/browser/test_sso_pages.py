"""Single sign-on in headless Chromium: the button on the login page, the provider's own
page (oidc-provider-mock on loopback), back to the dashboard; the sessions page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from newsletters.staff import oidc
from tests.browser.helpers import submit
from tests.support.live import LiveServer
from tests.support.oidc import CLIENT_ID, CLIENT_SECRET, Provider
from tests.support.smtp import SMTPServer, free_port

pytestmark = pytest.mark.browser


@pytest.fixture
def provider() -> Iterator[Provider]:
    oidc.forget_provider()
    server = Provider().start()
    yield server
    server.stop()
    oidc.forget_provider()


@pytest.fixture
def live_server(
    make_app: Callable[..., Flask], smtp_server: SMTPServer, provider: Provider
) -> Iterator[LiveServer]:
    """The app over real HTTP with SSO at the provider on loopback (overrides conftest's)."""
    port = free_port()
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        SESSION_COOKIE_SECURE=False,
        OIDC_ISSUER=provider.url,
        OIDC_CLIENT_ID=CLIENT_ID,
        OIDC_CLIENT_SECRET=CLIENT_SECRET,
        OIDC_ADMIN_ROLES=["Nyhedsbreve.Admin"],
        OIDC_PROVIDER_NAME="Microsoft",
    )
    server = LiveServer(app, port=port).start()
    yield server
    server.stop()


def _page(new_context: Callable[..., Any]) -> Any:
    context = new_context()
    # The provider's page asks a CDN for its stylesheet; there is no outside network here.
    context.route("https://cdn.jsdelivr.net/**", lambda route: route.abort())
    return context.new_page()


def test_an_administrator_signs_in_by_sso_and_sees_the_sessions(new_context, live_server, provider):
    provider.set_user(
        "anna", {"email": "anna@kl.dk", "name": "Anna Jensen", "roles": ["Nyhedsbreve.Admin"]}
    )
    page = _page(new_context)
    page.goto("/staff/users")
    assert page.url.startswith(f"{live_server.url}/staff/login?next=")
    # Through the app's own Content-Security-Policy: the form goes to the provider.
    with page.expect_navigation():
        page.click("#sso-login")
    assert page.url.startswith(f"{provider.url}/oauth2/authorize?")
    page.fill("input[name=sub]", "anna")
    with page.expect_navigation(url=f"{live_server.url}/staff/users"):
        page.click("button:text('Authorize')")
    assert page.locator("header").get_by_text("anna@kl.dk").count() == 1
    assert page.locator("main h1").inner_text() == "Medarbejderkonti"

    with page.expect_navigation():
        page.click("nav.staff-nav a[href='/staff/sessions']")
    row = page.locator("main table tbody tr")
    assert row.count() == 1
    assert "Single sign-on (SSO)" in row.inner_text()
    assert "(denne session)" in row.inner_text()
    # Ending this session logs out.
    submit(page, "main table form button[type=submit]")
    assert page.url == f"{live_server.url}/staff/login"
    page.goto("/staff/")
    assert page.url.startswith(f"{live_server.url}/staff/login")


def test_an_unknown_person_gets_the_danish_refusal(new_context, live_server, provider):
    provider.set_user("eve", {"email": "eve@kl.dk"})
    page = _page(new_context)
    page.goto("/staff/login")
    with page.expect_navigation():
        page.click("#sso-login")
    page.fill("input[name=sub]", "eve")
    with page.expect_navigation(url=f"{live_server.url}/staff/login/sso/callback*"):
        page.click("button:text('Authorize')")
    assert page.locator("main h1").inner_text() == "Du kunne ikke logges ind"
    assert "Du har ikke adgang" in page.locator("#sso-error").inner_text()
