"""The whole opt-in loop over real HTTP, with mail through a real SMTP server on loopback."""

from __future__ import annotations

import pytest

from tests.support.browserless import HttpClient
from tests.support.flows import subscriptions_of
from tests.support.pages import csrf_token

pytestmark = pytest.mark.e2e


def test_subscribe_confirm_manage_and_one_click_unsubscribe(live_server, smtp_server):
    app, base = live_server.app, live_server.url
    browser = HttpClient()
    form = browser.get(f"{base}/")
    assert form.status == 200
    reply = browser.post_form(
        f"{base}/",
        [
            ("csrf_token", csrf_token(form.text)),
            ("email", "borgmester@odense.dk"),
            ("name", "Peter Rahbæk Juel"),
            ("municipality", "Odense"),
            ("newsletters", "bestyrelse"),
            ("newsletters", "danske-kommuner"),
        ],
    )
    assert reply.status == 303

    # The in-process worker hands the confirmation to the SMTP server.
    [mail] = smtp_server.wait_for(1, address="borgmester@odense.dk")
    assert "Nyt fra KL's bestyrelse" in mail.text and "Danske Kommuner" in mail.text
    confirm_url = mail.link("/confirm/")
    assert confirm_url.startswith(base)

    # A link scanner opens the link without cookies: nothing happens.
    scanner = HttpClient(cookies=False)
    assert scanner.get(confirm_url).status == 200
    assert set(subscriptions_of(app, "borgmester@odense.dk").values()) == {"pending"}

    # The person opens it and presses the button.
    page = browser.get(confirm_url)
    done = browser.post_form(confirm_url, {"csrf_token": csrf_token(page.text)})
    assert done.status == 200
    assert subscriptions_of(app, "borgmester@odense.dk") == {
        "bestyrelse": "confirmed",
        "danske-kommuner": "confirmed",
    }

    # Ask for a manage link; it arrives by mail and opens the preference centre.
    page = browser.get(f"{base}/manage")
    browser.post_form(
        f"{base}/manage", {"csrf_token": csrf_token(page.text), "email": "borgmester@odense.dk"}
    )
    mails = smtp_server.wait_for(2, address="borgmester@odense.dk")
    manage_url = mails[1].link("/manage/")
    assert "borgmester@odense.dk" in browser.get(manage_url).text

    # RFC 8058: the provider POSTs to the List-Unsubscribe URL, no cookies, both encodings.
    unsubscribe_url = mails[1].message["List-Unsubscribe"].strip("<>")
    assert mails[1].message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    reply = scanner.post_multipart(unsubscribe_url, {"List-Unsubscribe": "One-Click"})
    assert reply.status == 200
    assert "Set-Cookie" not in reply.headers
    assert set(subscriptions_of(app, "borgmester@odense.dk").values()) == {"unsubscribed"}
    assert scanner.post_form(unsubscribe_url, {"List-Unsubscribe": "One-Click"}).status == 200
    assert smtp_server.handler.rejected == []
