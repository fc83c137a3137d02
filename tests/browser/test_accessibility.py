"""axe-core (WCAG 2.0/2.1 A and AA) on every public page, in the states a reader meets.

Serious and critical violations fail; each test audits many pages and reports all of
them at once. Contexts bypass the Content-Security-Policy so axe-core can be injected.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.helpers import AxeAudit, fill_subscribe_form, list_unsubscribe_url, submit
from tests.support.live import LiveServer
from tests.support.smtp import SMTPServer

pytestmark = pytest.mark.browser


def audit(
    axe: AxeAudit,
    page: Any,
    label: str,
    *,
    lang: str,
    status: int | None = None,
    response: Any = None,
) -> None:
    """Check the page's language and status, then run axe-core on it."""
    assert page.get_attribute("html", "lang") == lang, f"{label}: <html lang>"
    if status is not None:
        assert response is not None and response.status == status, (
            f"{label}: HTTP {response.status if response else None}, expected {status}"
        )
    # Exactly one h1, and the page is inside the landmarks.
    assert page.locator("main h1").count() == 1, f"{label}: one <h1> in <main>"
    axe.check(page, label)


def test_public_pages_in_danish_are_axe_clean(axe_page, live_server, axe):
    page = axe_page
    for path, label, status in [
        ("/", "front page", 200),
        ("/subscribed", "check your inbox", 200),
        ("/manage", "ask for a manage link", 200),
        ("/newsletters/bestyrelse/archive", "public archive", 200),
        # Bad confirm, manage and unsubscribe links all show this one page.
        ("/confirm/garbage", "bad link", 400),
        ("/no-such-page", "404 page", 404),
    ]:
        response = page.goto(path)
        audit(axe, page, label, lang="da", status=status, response=response)

    # The forms with validation errors, and "link sent".
    page.goto("/")
    page.fill("#email", "not an address")
    response = submit(page)
    audit(axe, page, "front page, invalid email", lang="da", status=422, response=response)
    page.goto("/manage")
    response = submit(page)
    audit(axe, page, "ask for a manage link, empty", lang="da", status=422, response=response)
    page.fill("#email", "nobody@kommune.dk")
    response = submit(page)
    audit(axe, page, "link sent", lang="da", status=200, response=response)

    axe.assert_clean()


def test_public_pages_in_english_are_axe_clean(axe_page, live_server, axe):
    page = axe_page
    response = page.goto("/?lang=en")
    audit(axe, page, "front page [en]", lang="en", status=200, response=response)
    assert page.get_attribute(".language-switch a", "lang") == "da"
    # The choice is remembered (a cookie): the next pages need no ?lang=en.
    response = submit(page)
    audit(axe, page, "front page, empty form [en]", lang="en", status=422, response=response)
    response = page.goto("/confirm/garbage")
    audit(axe, page, "bad link [en]", lang="en", status=400, response=response)
    response = page.goto("/no-such-page")
    audit(axe, page, "404 page [en]", lang="en", status=404, response=response)

    axe.assert_clean()


def test_pages_behind_personal_links_are_axe_clean(
    axe_page, live_server: LiveServer, smtp_server: SMTPServer, axe
):
    """Every page a subscriber reaches from a mail, in Danish, in order of a life cycle."""
    page = axe_page
    app = live_server.app
    email = "axe@kommune.dk"
    page.goto("/")
    fill_subscribe_form(
        page, email=email, name="Axel", municipality="Vejle", slugs=("kl-nyheder", "momentum")
    )
    submit(page)
    [confirm_mail] = smtp_server.wait_for(1, address=email)
    confirm_link = confirm_mail.link("/confirm/")

    response = page.goto(confirm_link)
    audit(axe, page, "confirm, pending", lang="da", status=200, response=response)

    # The same link once it has expired: a page offering a new one.
    app.config["CONFIRM_MAX_AGE_DAYS"] = -1
    try:
        response = page.goto(confirm_link)
    finally:
        app.config["CONFIRM_MAX_AGE_DAYS"] = 7
    audit(axe, page, "confirm link expired", lang="da", status=410, response=response)
    assert page.locator("main form button[type=submit]").count() == 1

    page.goto(confirm_link)
    response = submit(page, "main form[action^='/confirm/'] button[type=submit]")
    audit(axe, page, "confirmed", lang="da", status=200, response=response)

    response = page.goto(confirm_link)
    audit(axe, page, "confirm, nothing left", lang="da", status=200, response=response)

    page.goto("/manage")
    page.fill("#email", email)
    submit(page)
    manage_link = smtp_server.wait_for(2, address=email)[1].link("/manage/")
    token_path = manage_link.removeprefix(live_server.url)

    response = page.goto(manage_link)
    audit(axe, page, "manage", lang="da", status=200, response=response)
    page.uncheck("input[name=newsletters][value='momentum']")
    submit(page, f"main form[action='{token_path}'] button[type=submit]")
    assert page.locator("main .alert-success").count() == 1
    audit(axe, page, "manage, saved", lang="da")

    response = page.goto(f"{token_path}/delete")
    audit(axe, page, "delete", lang="da", status=200, response=response)
    response = submit(page, f"main form[action='{token_path}/delete'] button[type=submit]")
    audit(axe, page, "delete, box not ticked", lang="da", status=422, response=response)

    unsubscribe_link = list_unsubscribe_url(confirm_mail)
    response = page.goto(unsubscribe_link)
    audit(axe, page, "unsubscribe", lang="da", status=200, response=response)
    response = submit(page, "main form[action^='/unsubscribe/'] button[type=submit]")
    audit(axe, page, "unsubscribed", lang="da", status=200, response=response)
    response = page.goto(unsubscribe_link)
    audit(axe, page, "unsubscribe, nothing left", lang="da", status=200, response=response)

    page.goto(manage_link)
    response = submit(page, "main form[action$='/unsubscribe-all'] button[type=submit]")
    audit(
        axe,
        page,
        "unsubscribed from the preference centre",
        lang="da",
        status=200,
        response=response,
    )

    page.goto(f"{token_path}/delete")
    page.check("#understood")
    response = submit(page, f"main form[action='{token_path}/delete'] button[type=submit]")
    audit(axe, page, "deleted", lang="da", status=200, response=response)

    axe.assert_clean()
