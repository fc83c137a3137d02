"""A subscriber's pages in headless Chromium: subscribe, confirm, manage, unsubscribe.

Links are taken from the mail the strict SMTP server received, as a reader would. Texts
are being translated while these tests are written, so they check structure, state and
the database rather than wording (except `<html lang>`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import (
    DKFDS_DIST,
    NEWSLETTER_SLUGS,
    PageProblems,
    fill_subscribe_form,
    list_unsubscribe_url,
    screenshot,
    submit,
    subscribe_and_confirm,
    subscriber_state,
)

pytestmark = pytest.mark.browser

# --------------------------------------------------------------------------- the journey


def test_subscriber_journey_by_clicking(page, live_server, smtp_server, tmp_path: Path):
    app = live_server.app
    email = "journey@kommune.dk"

    # Subscribe.
    response = page.goto("/")
    assert response.status == 200
    assert page.get_attribute("html", "lang") == "da"
    fill_subscribe_form(
        page,
        email=email,
        name="Mette Frederiksen",
        municipality="Aarhus",
        slugs=("kl-nyheder", "momentum"),
    )
    response = submit(page)
    assert response.ok
    assert page.url == f"{live_server.url}/subscribed"
    assert page.locator("h1").count() == 1
    # The worker carries the request out; the confirmation mail says it has.
    [mail] = smtp_server.wait_for(1, address=email)
    state = subscriber_state(app, email)
    assert state == {
        "name": "Mette Frederiksen",
        "municipality": "Aarhus",
        "locale": "da",
        "subscriptions": {"kl-nyheder": "pending", "momentum": "pending"},
    }

    # Opening the confirm link shows a button and confirms nothing.
    confirm_link = mail.link("/confirm/")
    assert confirm_link.startswith(f"{live_server.url}/confirm/")
    response = page.goto(confirm_link)
    assert response.status == 200
    confirm_button = page.locator("main form[action^='/confirm/'] button[type=submit]")
    assert confirm_button.is_visible()
    assert page.locator("main li").all_inner_texts() == ["KL's daglige nyhedsbreve", "Momentum"]
    assert subscriber_state(app, email)["subscriptions"] == {
        "kl-nyheder": "pending",
        "momentum": "pending",
    }

    # Pressing the button confirms.
    response = submit(page, "main form[action^='/confirm/'] button[type=submit]")
    assert response.status == 200
    assert page.locator("main .alert-success").is_visible()
    assert page.locator("main form").count() == 0
    assert "Momentum" in page.inner_text("main")
    assert subscriber_state(app, email)["subscriptions"] == {
        "kl-nyheder": "confirmed",
        "momentum": "confirmed",
    }

    # Ask for a manage link on /manage.
    page.goto("/manage")
    page.fill("#email", email)
    response = submit(page)
    assert response.status == 200
    assert page.url == f"{live_server.url}/link-sent"  # POST-redirect-GET
    assert page.locator("main form").count() == 0  # the "link sent" page
    mails = smtp_server.wait_for(2, address=email)
    manage_link = mails[1].link("/manage/")
    token_path = manage_link.removeprefix(live_server.url)

    # The preference centre shows what is stored.
    response = page.goto(manage_link)
    assert response.status == 200
    for slug in NEWSLETTER_SLUGS:
        checked = page.is_checked(f"input[name=newsletters][value='{slug}']")
        assert checked == (slug in {"kl-nyheder", "momentum"}), slug
    assert page.input_value("#name") == "Mette Frederiksen"
    assert page.input_value("#municipality") == "Aarhus"

    # Untick one newsletter, change the name, save.
    page.uncheck("input[name=newsletters][value='momentum']")
    page.fill("#name", "Mette F.")
    response = submit(page, f"main form[action='{token_path}'] button[type=submit]")
    assert response.status == 200
    assert page.url == manage_link  # POST, redirect, GET
    success = page.locator("main .alert-success[role=status]")
    assert success.is_visible() and success.inner_text().strip()
    assert not page.is_checked("input[name=newsletters][value='momentum']")
    assert page.is_checked("input[name=newsletters][value='kl-nyheder']")
    assert page.input_value("#name") == "Mette F."
    state = subscriber_state(app, email)
    assert state["name"] == "Mette F."
    assert state["municipality"] == "Aarhus"
    assert state["subscriptions"] == {"kl-nyheder": "confirmed", "momentum": "unsubscribed"}

    # Reloading shows the saved state, without the message.
    page.reload()
    assert page.locator("main .alert-success").count() == 0
    assert not page.is_checked("input[name=newsletters][value='momentum']")

    # Download my data: JSON with what is stored.
    with page.expect_download() as download_info:
        page.click(f"main a[href='{token_path}/data.json']")
    download = download_info.value
    assert download.suggested_filename.endswith(".json")
    saved = tmp_path / "data.json"
    download.save_as(saved)
    data = json.loads(saved.read_text("utf-8"))
    assert data["email"] == email
    assert data["name"] == "Mette F."
    statuses = {s["newsletter"]: s["status"] for s in data["subscriptions"]}
    assert statuses == {"kl-nyheder": "confirmed", "momentum": "unsubscribed"}
    assert {m["kind"] for m in data["mails"]} >= {"confirm", "manage_link"}

    # Unsubscribe from all.
    response = submit(page, "main form[action$='/unsubscribe-all'] button[type=submit]")
    assert response.status == 200
    assert page.url == f"{manage_link.split('?')[0]}/unsubscribe-all"
    assert page.locator("main li").all_inner_texts() == ["KL's daglige nyhedsbreve"]
    assert page.locator(f"main a[href='{token_path}']").count() == 1  # back to the centre
    assert subscriber_state(app, email)["subscriptions"] == {
        "kl-nyheder": "unsubscribed",
        "momentum": "unsubscribed",
    }


def test_list_unsubscribe_link_shows_a_button_and_stops_mail(page, live_server, smtp_server):
    """The List-Unsubscribe link of the confirmation mail (all newsletters): GET only
    shows a page; the button unsubscribes."""
    app = live_server.app
    email = "header@kommune.dk"
    subscribe_and_confirm(
        page, live_server, smtp_server, email=email, slugs=("bestyrelse", "danske-kommuner")
    )
    [mail] = smtp_server.to(email)
    link = list_unsubscribe_url(mail)
    assert link.startswith(f"{live_server.url}/unsubscribe/")

    response = page.goto(link)
    assert response.status == 200
    assert page.locator("main li").all_inner_texts() == [
        "Nyt fra KL's bestyrelse",
        "Danske Kommuner",
    ]
    button = page.locator("main form[action^='/unsubscribe/'] button[type=submit]")
    assert button.is_visible()
    assert subscriber_state(app, email)["subscriptions"] == {
        "bestyrelse": "confirmed",
        "danske-kommuner": "confirmed",
    }

    response = submit(page, "main form[action^='/unsubscribe/'] button[type=submit]")
    assert response.status == 200
    assert page.locator("main form").count() == 0
    assert subscriber_state(app, email)["subscriptions"] == {
        "bestyrelse": "unsubscribed",
        "danske-kommuner": "unsubscribed",
    }


def test_per_newsletter_list_unsubscribe_stops_only_that_newsletter(
    page, live_server, smtp_server, tmp_path: Path
):
    """An enrolled reader's welcome mail carries a List-Unsubscribe link for that one
    newsletter: the page names only it, and the button leaves the others alone."""
    app = live_server.app
    email = "borgmester@kommune.dk"
    subscribe_and_confirm(page, live_server, smtp_server, email=email, slugs=("kl-nyheder",))
    csv_file = tmp_path / "mayors.csv"
    csv_file.write_text(f"email,name,municipality\n{email},Borgmester,Odense\n", "utf-8")
    result = app.test_cli_runner().invoke(
        args=[
            "subscribers",
            "import",
            str(csv_file),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "Borgmester i Odense Kommune (tiltrådt 1.1.2026)",
            "--welcome",
        ]
    )
    assert result.exit_code == 0, result.output
    mails = smtp_server.wait_for(2, address=email)
    welcome = mails[1]
    link = list_unsubscribe_url(welcome)
    assert welcome.link("/unsubscribe/") == link

    response = page.goto(link)
    assert response.status == 200
    assert page.locator("main li").all_inner_texts() == ["Nyt fra KL's bestyrelse"]
    assert subscriber_state(app, email)["subscriptions"] == {
        "bestyrelse": "confirmed",
        "kl-nyheder": "confirmed",
    }
    submit(page, "main form[action^='/unsubscribe/'] button[type=submit]")
    assert page.locator("main li").all_inner_texts() == ["Nyt fra KL's bestyrelse"]
    assert subscriber_state(app, email)["subscriptions"] == {
        "bestyrelse": "unsubscribed",
        "kl-nyheder": "confirmed",
    }


# --------------------------------------------------------------------------- errors


def test_empty_form_shows_errors_tied_to_their_fields(axe_page, live_server, axe):
    page = axe_page
    page.goto("/")
    response = submit(page)
    assert response.status == 422
    assert response.request.method == "POST"
    assert page.get_attribute("html", "lang") == "da"

    summary = page.locator("#error-summary")
    assert summary.is_visible()
    assert summary.get_attribute("role") == "alert"
    # Focusable, and focused when the page loads (autofocus: no JavaScript needed), so
    # screen readers start at the list of errors.
    assert summary.get_attribute("tabindex") == "-1"
    page.wait_for_function("document.activeElement.id === 'error-summary'", timeout=2_000)

    # One summary entry per error; each leads to a field that exists.
    targets = summary.locator("a").evaluate_all("links => links.map(a => a.hash)")
    assert targets == ["#email", "#newsletters-0"]

    # The email field: invalid, and described by its hint and its error message.
    email = page.locator("#email")
    assert email.get_attribute("aria-invalid") == "true"
    described = email.get_attribute("aria-describedby").split()
    assert "email-error" in described
    assert page.locator("#email-error").inner_text().strip()
    for id_ in described:
        assert page.locator(f"#{id_}").count() == 1, id_
    # Optional fields have no error.
    assert page.locator("#name").get_attribute("aria-invalid") is None
    assert page.locator("#municipality").get_attribute("aria-invalid") is None

    # The checkbox group: its fieldset is described by the error message.
    fieldset = page.locator("fieldset:has(input[name=newsletters])")
    assert fieldset.get_attribute("aria-describedby") == "newsletters-error"
    assert page.locator("#newsletters-error").inner_text().strip()

    # Following a summary link moves focus to the field.
    summary.locator("a[href='#email']").click()
    assert page.evaluate("document.activeElement.id") == "email"

    axe.check(page, "front page with errors")
    axe.assert_clean()


def test_what_was_entered_survives_a_validation_error(page, live_server):
    page.goto("/")
    fill_subscribe_form(
        page, email="not-an-address", name="Anna", municipality="Odense", slugs=("momentum",)
    )
    response = submit(page)
    assert response.status == 422
    assert page.input_value("#email") == "not-an-address"
    assert page.input_value("#name") == "Anna"
    assert page.input_value("#municipality") == "Odense"
    assert page.is_checked("input[name=newsletters][value='momentum']")
    assert page.locator("#email").get_attribute("aria-invalid") == "true"
    # Only the email is wrong.
    assert page.locator("#error-summary a").evaluate_all("a => a.map(x => x.hash)") == ["#email"]
    assert page.locator("#newsletters-error").count() == 0


# --------------------------------------------------------------------------- no JavaScript


def test_subscribing_and_confirming_work_without_javascript(new_context, live_server, smtp_server):
    page = new_context(java_script_enabled=False).new_page()
    problems = PageProblems(page)
    email = "nojs@kommune.dk"
    page.goto("/")
    fill_subscribe_form(page, email=email, slugs=("danske-kommuner",))
    response = submit(page)
    assert response.ok and page.url == f"{live_server.url}/subscribed"
    [mail] = smtp_server.wait_for(1, address=email)
    page.goto(mail.link("/confirm/"))
    submit(page, "main form[action^='/confirm/'] button[type=submit]")
    assert subscriber_state(live_server.app, email)["subscriptions"] == {
        "danske-kommuner": "confirmed"
    }
    problems.assert_none()


# --------------------------------------------------------------------------- keyboard


def _focused(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            return {tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute('name'),
                    type: el.getAttribute('type'), value: el.value ?? null,
                    cls: el.className, href: el.getAttribute('href')};
        }"""
    )


def test_skip_link_is_the_first_tab_stop_and_moves_focus_to_main(page, live_server):
    page.goto("/")
    page.keyboard.press("Tab")
    first = _focused(page)
    assert first["tag"] == "a" and first["href"] == "#main-content", first
    # Once focused it comes into view (off-screen otherwise; dkfds slides it in).
    page.wait_for_function(
        """() => {
            const box = document.activeElement.getBoundingClientRect();
            return box.left >= 0 && box.top >= 0 && box.width > 1 && box.height > 1
                && box.right <= window.innerWidth;
        }""",
        timeout=2_000,
    )
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement.id === 'main-content'", timeout=2_000)
    # The next Tab continues inside main, not back in the header.
    page.keyboard.press("Tab")
    assert page.evaluate("document.getElementById('main-content').contains(document.activeElement)")


def test_subscribe_form_by_keyboard_only(page, live_server, smtp_server):
    page.goto("/")
    order: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = _focused(page)
        label = focused["id"] or focused["href"] or focused["tag"]
        if focused["tag"] == "button" and focused["type"] == "submit":
            label = "submit"
        order.append(label)
        if label == "submit":
            break
    assert "website" not in order  # the honeypot is never a tab stop
    assert "email" in order, order
    # From the email field on, nothing but the form's controls, in reading order.
    assert order[order.index("email") :] == [
        "email",
        "name",
        "municipality",
        "newsletters-0",
        "newsletters-1",
        "newsletters-2",
        "newsletters-3",
        "submit",
    ], order

    # Now fill it in with the keyboard alone, from a fresh page load.
    page.reload()
    for _ in range(order.index("email") + 1):
        page.keyboard.press("Tab")
    assert _focused(page)["id"] == "email"
    page.keyboard.type("tastatur@kommune.dk")
    page.keyboard.press("Tab")
    page.keyboard.type("Kim Tastatur")
    page.keyboard.press("Tab")
    assert _focused(page)["id"] == "municipality"
    page.keyboard.type("Odense")  # type-ahead in a closed select
    assert page.input_value("#municipality") == "Odense"
    page.keyboard.press("Tab")
    assert _focused(page)["id"] == "newsletters-0"
    page.keyboard.press("Space")  # bestyrelse
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # momentum
    while _focused(page)["type"] != "submit":
        page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{live_server.url}/subscribed"
    smtp_server.wait_for(1, address="tastatur@kommune.dk")  # the worker has carried it out
    state = subscriber_state(live_server.app, "tastatur@kommune.dk")
    assert state == {
        "name": "Kim Tastatur",
        "municipality": "Odense",
        "locale": "da",
        "subscriptions": {"bestyrelse": "pending", "momentum": "pending"},
    }
    smtp_server.wait_for(1, address="tastatur@kommune.dk")


# --------------------------------------------------------------------------- phone and look


def _horizontal_overflow(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => {
            const width = window.innerWidth;
            const wide = [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > width + 0.5)
                .slice(0, 5).map(el => el.outerHTML.slice(0, 120));
            return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: width, wide};
        }"""
    )


PHONE = {
    "viewport": {"width": 375, "height": 667},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


@pytest.mark.parametrize("state", ["front", "errors"])
def test_phone_has_no_horizontal_scrolling(new_context, live_server, state):
    page = new_context(**PHONE).new_page()
    problems = PageProblems(page)
    page.goto("/")
    if state == "errors":
        page.fill("#email", "this-is-a-rather-long-address-without-an-at-sign.kommune.dk")
        submit(page)
    overflow = _horizontal_overflow(page)
    assert overflow["scrollWidth"] <= overflow["innerWidth"], overflow
    screenshot(page, f"phone-{state}")
    problems.assert_none()


def test_front_page_has_the_design_system_styles(page, live_server):
    """dkfds' stylesheet, fonts and icons load under the app's CSP, and the page's own
    sizes suit dkfds' 10px root font size (1rem in app.css would be 10px)."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/")
    screenshot(page, "desktop-front")
    if not DKFDS_DIST.is_dir():
        pytest.skip("dkfds is not installed (make assets): pages use plain styling")
    sheets = page.evaluate("[...document.styleSheets].map(s => s.href)")
    assert any("/assets/dkfds/css/dkfds.min.css" in (href or "") for href in sheets), sheets
    style = page.evaluate(
        """async () => {
            await document.fonts.ready;
            const css = (selector) => getComputedStyle(document.querySelector(selector));
            return {
                rootFontSize: css('html').fontSize,
                plexLoaded: document.fonts.check('16px "IBM Plex Sans"'),
                buttonBackground: css('main button.button-primary').backgroundColor,
                titleFontSize: parseFloat(css('.site-title').fontSize),
                cardPaddingLeft: parseFloat(css('.newsletter-card').paddingLeft),
                mainWidth: document.querySelector('main').getBoundingClientRect().width,
            };
        }"""
    )
    assert style["rootFontSize"] == "10px", style  # dkfds' 62.5%
    assert style["plexLoaded"], style
    # A filled dkfds button, not a browser's transparent or light grey default.
    assert style["buttonBackground"] not in ("rgba(0, 0, 0, 0)", "rgb(239, 239, 239)"), style
    assert style["titleFontSize"] >= 18, style
    assert style["cardPaddingLeft"] >= 12, style  # text clear of the card's left border
    assert style["mainWidth"] >= 900, style
