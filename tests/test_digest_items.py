"""A digest's items go through editions' drafts (create_draft) and meet the rules an
editor's items meet: a heading of one line and at most 300 characters, only http(s)
links of at most 1 000 characters. A feed nobody can correct is fitted, not refused."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from flask import Flask

from newsletters import timeutil
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import drafts
from newsletters.editions.drafts import ItemInput
from newsletters.editions.models import Edition, EditionStatus
from newsletters.editions.states import EditionError
from newsletters.extensions import db
from newsletters.feeds import digests
from newsletters.feeds.models import Feed, FeedItem

HOSTILE = [
    # (title, link, summary)
    ("Plain news", "https://kl.dk/a", "Text"),
    ("Script link", "javascript:alert(1)", "x"),
    ("Data link", "data:text/html,<script>alert(1)</script>", ""),
    ("Line\r\nbreak\x0bin   the title", "https://kl.dk/b", "*not* markup"),
    ("T" * 450, "https://kl.dk/c", ""),
    ("", "https://kl.dk/only-a-link", ""),
    ("Too long a link", "https://kl.dk/" + "x" * 1200, ""),
    ("", "", "neither title nor link"),
]


def _feed_items(app: Flask, rows) -> int:
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        feed = Feed(newsletter_id=newsletter.id, url="https://kl.dk/feed.xml")
        db.session.add(feed)
        db.session.flush()
        seen = timeutil.utcnow() - timedelta(minutes=5)
        for number, (title, link, summary) in enumerate(rows):
            db.session.add(
                FeedItem(
                    newsletter_id=newsletter.id,
                    feed_id=feed.id,
                    key=hashlib.sha256(str(number).encode()).hexdigest(),
                    link=link,
                    title=title,
                    summary_text=summary,
                    content_hash="0" * 64,
                    first_seen_at=seen + timedelta(seconds=number),
                    published_at=seen + timedelta(seconds=number),
                )
            )
        db.session.commit()
        return newsletter.id


def _items(app: Flask, edition_id: int) -> list[tuple[str, str, str]]:
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        return [(i.heading, i.link, i.text_markdown) for i in edition.items]


def test_a_digest_gets_the_editors_rules(app: Flask, clock):
    newsletter_id = _feed_items(app, HOSTILE)
    with app.app_context():
        outcome = digests.build_digest(newsletter_id)
    items = _items(app, outcome.edition_id)
    by_heading = {heading: (link, text) for heading, link, text in items}
    for heading, link, _text in items:
        assert heading and "\n" not in heading and "\r" not in heading
        assert len(heading) <= drafts.MAX_HEADING_LENGTH
        assert link == "" or (drafts.is_http_link(link) and len(link) <= drafts.MAX_LINK_LENGTH)
        assert not link.lower().startswith(("javascript:", "data:"))
    assert by_heading["Plain news"] == ("https://kl.dk/a", "Text")
    assert by_heading["Script link"][0] == ""
    assert by_heading["Data link"][0] == ""
    assert by_heading["Line break in the title"][0] == "https://kl.dk/b"
    assert by_heading["Line break in the title"][1] == "\\*not\\* markup"
    assert "T" * 300 in by_heading
    assert by_heading["https://kl.dk/only-a-link"][0] == "https://kl.dk/only-a-link"
    assert by_heading["Too long a link"][0] == ""
    # Nothing to call it: left out, the rest are made.
    assert len(items) == len(HOSTILE) - 1


@pytest.mark.parametrize(
    ("heading", "link"),
    [
        ("Script link", "javascript:alert(1)"),
        ("Data link", "data:text/html,<script>alert(1)</script>"),
        ("T" * 301, "https://kl.dk/c"),
        ("", "https://kl.dk/only-a-link"),
        (" \r\n ", ""),
        ("Too long a link", "https://kl.dk/" + "x" * 1200),
    ],
    ids=["javascript", "data", "long-heading", "no-heading", "blank-heading", "long-link"],
)
def test_the_same_items_from_an_editor_are_refused(app: Flask, heading: str, link: str):
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        with pytest.raises(EditionError):
            drafts.create_draft(newsletter, "Subject", items=[ItemInput(heading, "", link)])
        db.session.rollback()
        assert db.session.query(Edition).count() == 0


def test_an_auto_send_digest_is_scheduled_through_the_drafts(app: Flask, clock):
    newsletter_id = _feed_items(app, HOSTILE[:1])
    with app.app_context():
        outcome = digests.build_digest(newsletter_id)
        edition = db.session.get(Edition, outcome.edition_id)
        assert outcome.auto_send  # kl-nyheder is made in auto-send
        assert edition.status is EditionStatus.SCHEDULED
        assert abs(edition.scheduled_at - timeutil.utcnow()) < timedelta(seconds=1)
        assert edition.created_by == "scheduler"
