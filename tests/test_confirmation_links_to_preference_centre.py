"""After the double opt-in the reader finds their preference centre: the confirmation
mail and the "you are subscribed" page both link to it (a signed manage link)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Flask

from newsletters.subscriptions.intake import process_subscribe_requests
from tests.conftest import deliver
from tests.support.pages import csrf_token


def _subscribe_through_the_worker(app: Flask, address: str, lang: str = "") -> None:
    """Post the form, then let the worker's intake job (outside any request) write the
    confirmation mail, and the outbox job hand it to the SMTP server."""
    client = app.test_client()
    page = client.get(f"/?lang={lang}" if lang else "/")
    client.post(
        f"/?lang={lang}" if lang else "/",
        data={
            "csrf_token": csrf_token(page.data),
            "email": address,
            "newsletters": ["momentum"],
        },
    )
    with app.app_context():
        assert process_subscribe_requests("test-worker") == 1
    deliver(app)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_the_confirmation_mail_links_to_the_preference_centre(mail_app: Flask, smtp_server):
    _subscribe_through_the_worker(mail_app, "borgmester@odense.dk")
    [mail] = smtp_server.wait_for(1, address="borgmester@odense.dk")
    assert "Når du har bekræftet, kan du vælge nyhedsbreve" in mail.text
    manage_url = mail.link("/manage/")
    assert f'href="{manage_url}"' in mail.html.replace("&amp;", "&")
    page = mail_app.test_client().get(_path(manage_url))
    assert page.status_code == 200
    assert "borgmester@odense.dk" in page.get_data(as_text=True)


def test_the_confirmation_mail_of_an_english_reader_is_english(mail_app: Flask, smtp_server):
    _subscribe_through_the_worker(mail_app, "reader@example.com", lang="en")
    [mail] = smtp_server.wait_for(1, address="reader@example.com")
    assert "After confirming you can choose your newsletters" in mail.text
    assert "Når du har bekræftet" not in mail.text
    assert "lang=en" in mail.link("/manage/")


def test_the_subscribed_page_links_to_the_preference_centre(mail_app: Flask, smtp_server):
    _subscribe_through_the_worker(mail_app, "borgmester@odense.dk")
    [mail] = smtp_server.wait_for(1, address="borgmester@odense.dk")
    client = mail_app.test_client()
    confirm = _path(mail.link("/confirm/"))
    done = client.post(confirm, data={"csrf_token": csrf_token(client.get(confirm).data)})
    html = done.get_data(as_text=True)
    assert "Tak, nu er du tilmeldt" in html
    link = re.search(
        r'<a class="button button-primary" href="([^"]+)">Gå til dine tilmeldinger', html
    )
    assert link, html
    manage = client.get(_path(link.group(1).replace("&amp;", "&")))
    assert manage.status_code == 200
    assert "borgmester@odense.dk" in manage.get_data(as_text=True)
