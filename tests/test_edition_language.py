"""An edition reaches each reader in their own language: the frame of the mail (the web
version link, the links to manage and unsubscribe, the footer) is Danish for Danish
readers and English for those who chose English, rendered by the worker, outside any
request; and its web version follows the reader's language."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import update

from newsletters.editions import sending
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from newsletters.worker import Worker
from tests.support.editions import confirmed_audience, draft


def test_each_reader_gets_the_edition_in_their_language(mail_app: Flask, smtp_server):
    danish, english = confirmed_audience(mail_app, 2)
    with mail_app.app_context():
        db.session.execute(
            update(Subscriber).where(Subscriber.email == english).values(locale="en")
        )
        db.session.commit()
    edition_id = draft(mail_app, subject="Nyt fra bestyrelsesmødet")
    with mail_app.app_context():
        sending.start_send(edition_id)
        worker = Worker(mail_app, "test-worker")
        while worker.run_once():
            pass
        db.session.remove()

    [to_danish] = smtp_server.to(danish)
    [to_english] = smtp_server.to(english)
    assert "Læs nyhedsbrevet i din browser" in to_danish.text
    assert "Administrer dine tilmeldinger" in to_danish.text
    assert "Read this newsletter in your browser" in to_english.text
    assert "Manage your subscriptions" in to_english.text
    for danish_text in ("Læs nyhedsbrevet", "Administrer dine", "KL på LinkedIn"):
        assert danish_text not in to_english.text and danish_text not in to_english.html
    # The editor's own words are the same for both; the headers are too.
    assert to_danish.message["Subject"] == to_english.message["Subject"]
    assert "besluttet" in to_english.text

    client = mail_app.test_client()
    web_en = to_english.link("/editions/")
    assert web_en.endswith("?lang=en")
    english_page = client.get(web_en.split("localhost", 1)[-1]).get_data(as_text=True)
    assert "Manage your subscriptions" in english_page
    fresh = mail_app.test_client()  # without the language cookie the first visit set
    danish_page = fresh.get(to_danish.link("/editions/").split("localhost", 1)[-1])
    assert "Administrer dine tilmeldinger" in danish_page.get_data(as_text=True)
    assert "Cookie" in danish_page.headers["Vary"]


def test_a_reader_with_an_unknown_language_gets_danish(mail_app: Flask, smtp_server):
    [reader] = confirmed_audience(mail_app, 1)
    with mail_app.app_context():
        db.session.execute(update(Subscriber).where(Subscriber.email == reader).values(locale="xx"))
        db.session.commit()
        sending.start_send(draft(mail_app))
        sending.send_due("test-worker")
        db.session.remove()
    [mail] = smtp_server.to(reader)
    assert "Læs nyhedsbrevet i din browser" in mail.text
