"""The API's pages in headless Chromium: the administrators' tokens page (make one, see it
once, revoke it; axe-core) and the browsable API documentation under the real CSP (no
console error, every asset ours and loaded, every operation shown)."""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import AxeAudit, submit
from tests.browser.test_staff_pages import audit
from tests.support.api import bearer

pytestmark = pytest.mark.browser


def test_an_administrator_makes_and_revokes_a_token(
    axe_page, sign_in_admin, live_server, axe: AxeAudit
):
    page = sign_in_admin(axe_page)
    page.goto("/staff/api-tokens/")
    audit(axe, page, "API tokens")

    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.status == 422
    assert page.locator("#error-summary a[href='#name']").count() == 1
    audit(axe, page, "API tokens, errors")

    page.fill("#name", "kl-website")
    page.check("#scopes-0")
    response = submit(page, "main form[method=post] button[type=submit]")
    assert response.ok
    token = page.locator("#new-token").inner_text()
    assert re.fullmatch(r"nlt_[A-Za-z0-9_-]{43}", token)
    audit(axe, page, "API tokens, new token")
    client = live_server.app.test_client()
    assert client.get("/api/v1/newsletters", headers=bearer(token)).status_code == 200

    page.goto("/staff/api-tokens/")
    assert page.locator("#new-token").count() == 0
    submit(page, "table form button[type=submit]")
    assert "Tilbagekaldt" in page.locator("main table").inner_text()
    assert client.get("/api/v1/newsletters", headers=bearer(token)).status_code == 401


def test_the_api_docs_show_every_operation_with_our_own_assets(page, live_server):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto("/api/v1/docs")
    assert response.ok
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() >= 10
    assert all(url.startswith(live_server.url) or url.startswith("data:") for url in requested)
