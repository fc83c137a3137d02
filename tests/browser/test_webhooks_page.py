"""The webhooks page in headless Chromium: an administrator finds it in the staff menu,
is refused a private address, adds the receiver's endpoint, copies the secret shown once;
a person subscribes and confirms on the public pages, and the in-process worker delivers
the signed events to the receiver; the page lists the deliveries; axe-core on the way."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import AxeAudit, submit, subscribe_and_confirm
from tests.support.hookserver import HookServer
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver() -> Iterator[HookServer]:
    server = HookServer().start()
    yield server
    server.stop()


def audit(axe: AxeAudit, page, label: str) -> None:
    assert page.get_attribute("html", "lang") == "da", label
    assert page.locator("main h1").count() == 1, label
    axe.check(page, label)


def test_admin_adds_a_webhook_and_the_subscription_events_arrive_signed(
    axe_page, sign_in_admin, live_server: LiveServer, smtp_server, receiver, axe
):
    page = sign_in_admin(axe_page)
    with page.expect_navigation():
        page.click("nav a[href='/staff/webhooks/']")
    expect(page.locator("main h1")).to_have_text("Webhooks")
    audit(axe, page, "webhooks, none yet")

    # Private addresses are refused while the setting is off (the default).
    page.fill("#url", receiver.url)
    page.check("input[value='subscription.confirmed']")
    response = submit(page, "main form[action='/staff/webhooks/'] button[type=submit]")
    assert response.status == 422
    # (The receiver is plain http on loopback: refused for either reason.)
    expect(page.locator("#url-error")).to_contain_text(re.compile("https://|offentlige adresser"))
    audit(axe, page, "webhooks, refused address")

    live_server.app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    page.check("input[value='subscription.requested']")
    page.check("input[value='subscription.confirmed']")
    submit(page, "main form[action='/staff/webhooks/'] button[type=submit]")
    secret = page.locator("main .webhook-secret").inner_text().strip()
    assert secret.startswith("whsec_")
    expect(page.locator("#webhook-secret")).to_contain_text("vises ikke igen")
    audit(axe, page, "webhooks, secret shown")
    receiver.secret = secret

    subscribe_and_confirm(
        page, live_server, smtp_server, email="mette@aarhus.dk", slugs=("momentum",)
    )
    calls = receiver.wait_for(2, timeout=20)
    assert [c.event["type"] for c in calls] == [
        "subscription.requested",
        "subscription.confirmed",
    ]
    assert all(c.verified for c in calls)
    assert calls[1].event["data"]["email"] == "mette@aarhus.dk"

    page.goto("/staff/webhooks/")
    expect(page.locator("main")).not_to_contain_text(secret)
    expect(page.locator("main tr[data-webhook-id] .badge")).to_have_text("OK")
    expect(page.locator("main")).to_contain_text("En tilmelding blev bekræftet")
    audit(axe, page, "webhooks, deliveries")
    submit(page, "main tr[data-webhook-id] form[action$='/remove'] button")
    expect(page.locator("main .alert-success")).to_contain_text("Webhooken er fjernet")
    axe.assert_clean()
