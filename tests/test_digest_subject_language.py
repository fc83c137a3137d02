"""A digest's subject in the reader's language: its date is part of it, so an English
reader gets "... November 30, 2026" in the subject and the heading, a Danish reader
"... 30. november 2026"; an editor's own subject goes to everyone as written."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import delete, inspect, update

from newsletters.catalog.models import DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import drafts
from newsletters.editions.models import Edition
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from tests.support.editions import confirmed_audience
from tests.test_digests import add_feed, editions_of, fetch, run_worker, set_mode

DANISH = "KL's daglige nyhedsbreve 30. november 2026"
ENGLISH = "KL's daglige nyhedsbreve November 30, 2026"


def make_digest(app, feed_server) -> Edition:
    feed_server.serve("kl.xml", "rss20.xml")
    add_feed(app, feed_server.url("kl.xml"))
    fetch(app)
    result = app.test_cli_runner().invoke(args=["digests", "run", "--newsletter", "kl-nyheder"])
    assert result.exit_code == 0, result.output
    [edition] = editions_of(app, "kl-nyheder")
    return edition


@pytest.mark.e2e
def test_english_readers_get_the_digests_date_in_english(mail_app, smtp_server, feed_server, clock):
    danish = confirmed_audience(mail_app, 1, slug="kl-nyheder", prefix="da")
    english = confirmed_audience(mail_app, 1, slug="kl-nyheder", prefix="en")
    with mail_app.app_context():
        db.session.execute(
            update(Subscriber).where(Subscriber.email.in_(english)).values(locale="en")
        )
        db.session.commit()
    edition = make_digest(mail_app, feed_server)
    assert (edition.subject, edition.subject_en) == (DANISH, ENGLISH)
    run_worker(mail_app)
    mails = {m.rcpt_to: m for m in smtp_server.wait_for(2)}
    da, en = mails[danish[0]], mails[english[0]]
    assert da.message["Subject"] == DANISH and en.message["Subject"] == ENGLISH
    assert f">{ENGLISH}</h1>" in en.html.replace("&#39;", "'")
    assert ENGLISH in en.text and DANISH not in en.text
    assert DANISH in da.text and ENGLISH not in da.text

    # The web version and the archive, in each language.
    client = mail_app.test_client()
    page = client.get(f"/editions/{edition.id}?lang=en").get_data(as_text=True)
    assert ENGLISH in page.replace("&#39;", "'")
    page = client.get(f"/editions/{edition.id}?lang=da").get_data(as_text=True)
    assert DANISH in page.replace("&#39;", "'")
    archive = client.get("/newsletters/kl-nyheder/archive?lang=en").get_data(as_text=True)
    assert ENGLISH in archive.replace("&#39;", "'") and DANISH not in archive.replace("&#39;", "'")
    archive = client.get("/newsletters/kl-nyheder/archive?lang=da").get_data(as_text=True)
    assert DANISH in archive.replace("&#39;", "'")


def test_an_editor_who_changes_the_subject_sends_it_to_everyone(app, feed_server, clock):
    set_mode(app, "kl-nyheder", DigestMode.REVIEW)  # a draft for an editor to look at
    edition = make_digest(app, feed_server)
    with app.app_context():
        row = db.session.get(Edition, edition.id)
        drafts.replace_content(
            row, subject="Ekstra: økonomiaftalen", body_markdown=row.body_markdown
        )
        db.session.commit()
        row = db.session.get(Edition, edition.id)
        assert row.subject_en is None
        assert row.subject_for("en") == row.subject_for("da") == "Ekstra: økonomiaftalen"
        # Saving it unchanged keeps the English form.
        other = drafts.create_draft(
            newsletter_by_slug("kl-nyheder"), DANISH, subject_en=ENGLISH, fit=True
        )
        drafts.replace_content(other, subject=DANISH, body_markdown="")
        assert other.subject_en == ENGLISH
        db.session.rollback()


@pytest.mark.parametrize("locale", ["en", "EN", "en-GB", "en_US"])
def test_every_english_locale_gets_the_english_subject(app, locale):
    with app.app_context():
        edition = Edition(subject=DANISH, subject_en=ENGLISH)
        assert edition.subject_for(locale) == ENGLISH
        assert edition.subject_for("da") == edition.subject_for(None) == DANISH
        assert Edition(subject=DANISH, subject_en=None).subject_for("en") == DANISH


def test_hostile_subjects_are_cleaned_of_line_breaks_and_control_characters(app):
    with app.app_context():
        edition = drafts.create_draft(
            newsletter_by_slug("kl-nyheder"),
            "Nyt\x00 fra\x1b KL",
            subject_en="Nyt\r\nBcc: x@y.dk\x00" + "x" * 400,
            fit=True,
        )
        for subject in (edition.subject_en, edition.subject):
            assert not any(c in subject for c in "\r\n\x00")
        assert edition.subject_en.startswith("Nyt Bcc: x@y.dk") and len(edition.subject_en) <= 300
        db.session.rollback()


def test_migration_0032_adds_and_drops_the_column_and_no_id_is_handed_out_again(app):
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        first = drafts.create_draft(newsletter, DANISH, subject_en=ENGLISH).id
        db.session.execute(delete(Edition))
        db.session.commit()
        db.session.remove()
        downgrade(revision="0031")
        assert "subject_en" not in {c["name"] for c in inspect(db.engine).get_columns("editions")}
        upgrade()
        assert "subject_en" in {c["name"] for c in inspect(db.engine).get_columns("editions")}
        again = drafts.create_draft(newsletter_by_slug("kl-nyheder"), DANISH)
        assert again.id > first and again.subject_en is None
        db.session.rollback()
