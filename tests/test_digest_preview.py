"""The next digest, visible: its preview (rendered as the mail), made a draft in one
click; sections grouping a digest's items by feed."""

from __future__ import annotations

import html

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletters.catalog.models import DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.models import Edition, EditionStatus
from newsletters.extensions import db
from newsletters.feeds import digests, services
from newsletters.feeds.models import DigestRun, Feed
from tests.support.feedserver import FeedServer


def _two_feeds(app: Flask, feed_server: FeedServer, mode=DigestMode.AUTO) -> tuple[int, int]:
    with app.app_context():
        kl = services.add_feed("kl-nyheder", feed_server.serve("kl.xml", "rss20.xml")).id
        cat = services.add_feed(
            "kl-nyheder", feed_server.serve("cat.xml", "categories.xml"), title="Kategorier"
        ).id
        services.fetch_feeds()
        newsletter = newsletter_by_slug("kl-nyheder")
        newsletter.digest_mode = mode
        db.session.commit()
        db.session.remove()
    return kl, cat


def _counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        return (
            db.session.scalar(select(func.count(Edition.id))),
            db.session.scalar(select(func.count(DigestRun.id))),
        )


def test_the_preview_is_the_mail_and_stores_nothing(app, feed_server, clock):
    kl, _cat = _two_feeds(app, feed_server)
    before = _counts(app)
    with app.app_context():
        services.set_filter(kl, exclude=["klima"])
        preview = digests.preview_digest(newsletter_by_slug("kl-nyheder"))
        assert preview.slot is not None and preview.item_count == 5
        text = preview.rendered.text
        assert "## KL: Økonomiaftalen giver kommunerne luft" in text
        assert "Klima" not in text  # filtered out
        assert ">Skoler: Flere lærere i folkeskolen</h2>" in html.unescape(preview.rendered.html)
    assert _counts(app) == before


def test_sections_group_the_items_by_feed_in_the_editors_order(app, feed_server, clock):
    kl, cat = _two_feeds(app, feed_server, DigestMode.REVIEW)
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        services.update_digest_settings(
            "kl-nyheder",
            mode=newsletter.digest_mode,
            cadence=newsletter.digest_cadence,
            hour=newsletter.digest_hour,
            sections=True,
        )
        services.set_positions({kl: 2, cat: 1})
        text = digests.preview_digest(newsletter_by_slug("kl-nyheder")).rendered.text
        headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
        assert headings[0] == "■ Kategorier"
        assert headings[4] == "■ KL Nyheder"
        assert len(headings) == 8
        outcome = digests.build_digest(newsletter.id)
        edition = db.session.get(Edition, outcome.edition_id)
        assert [i.heading for i in edition.items] == headings


def test_cli_prints_the_preview_and_refuses_bad_input(runner, app, feed_server, clock):
    _two_feeds(app, feed_server)
    result = runner.invoke(args=["digests", "preview", "--newsletter", "kl-nyheder"])
    assert result.exit_code == 0, result.output
    assert "next digest: 2026-11-30T07:00+01:00" in result.output
    assert "6 item(s)" in result.output and "## Sport: Kommunernes idrætspulje" in result.output
    for args, message in [
        (["--newsletter", "nope"], "no newsletter 'nope'"),
        (["--newsletter", "x\r\ny"], "no newsletter"),
        ([], "Missing option"),
    ]:
        bad = runner.invoke(args=["digests", "preview", *args])
        assert bad.exit_code != 0 and message in bad.output, bad.output


def test_cli_sets_a_feeds_place_and_refuses_bad_input(runner, app, feed_server, clock):
    kl, cat = _two_feeds(app, feed_server)
    result = runner.invoke(args=["feeds", "position", str(kl), "7"])
    assert result.exit_code == 0, result.output
    assert f"feed {kl} has place 7 in kl-nyheder's digest (section 2 of 2)" in result.output
    for args, message in [
        ([str(kl), "10000"], "from 0 to 9999"),
        ([str(kl), "--", "-1"], "from 0 to 9999"),
        (["99999999999999", "1"], "no feed 99999999999999"),
        ([str(kl), "x\r\n1"], "not a valid integer"),
        ([str(kl)], "Missing argument"),
    ]:
        bad = runner.invoke(args=["feeds", "position", *args])
        assert bad.exit_code != 0 and message in bad.output, (args, bad.output)
    with app.app_context():
        assert db.session.get(Feed, kl).position == 7 and db.session.get(Feed, cat).position == 0


def test_cli_preview_of_a_newsletter_without_a_digest_fails(runner, app):
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        newsletter.digest_mode = DigestMode.OFF
        db.session.commit()
    bad = runner.invoke(args=["digests", "preview", "--newsletter", "kl-nyheder"])
    assert bad.exit_code == 1 and "not made from feeds" in bad.output


@pytest.fixture
def admin_client(client, app):
    from tests.test_staff import ADMIN, login, make_staff

    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def test_the_feeds_page_shows_the_preview_and_one_click_makes_a_draft(
    admin_client, app, feed_server, clock
):
    from tests.test_editor import post_form

    _two_feeds(app, feed_server)  # auto-send: the draft must still not be sent
    page = "/staff/newsletters/kl-nyheder/feeds"
    shown = html.unescape(admin_client.get(page).get_data(as_text=True))
    assert 'data-field="preview-count"' in shown and "## Klima: Kommunerne" in shown
    full = admin_client.get("/staff/newsletters/kl-nyheder/digest/preview")
    assert (
        full.status_code == 200 and "default-src 'none'" in full.headers["Content-Security-Policy"]
    )

    refused = admin_client.post("/staff/newsletters/kl-nyheder/digest/draft")
    assert refused.status_code in (400, 422)
    assert _counts(app) == (0, 0)

    made = post_form(admin_client, "/staff/newsletters/kl-nyheder/digest/draft", page=page)
    assert made.status_code == 303 and "/editions/" in made.headers["Location"]
    with app.app_context():
        edition = db.session.scalar(select(Edition))
        assert edition.status == EditionStatus.DRAFT and len(edition.items) == 6
    after = html.unescape(admin_client.get(page).get_data(as_text=True))
    assert 'data-field="preview-count"' in after and "/digest/draft" not in after
    assert admin_client.get("/staff/newsletters/kl-nyheder/digest/preview").status_code == 404
    assert admin_client.get("/staff/newsletters/nope/digest/preview").status_code == 404
    missing = post_form(admin_client, "/staff/newsletters/nope/digest/draft", page=page)
    assert missing.status_code == 404


def test_positions_refuse_absurd_values(app, feed_server, clock):
    kl, _cat = _two_feeds(app, feed_server)
    with app.app_context():
        with pytest.raises(services.FeedError):
            services.set_positions({kl: 10**12})
        with pytest.raises(services.FeedError):
            services.set_positions({10**12: 1})
        assert db.session.get(Feed, kl).position == 0


def test_the_feeds_page_sets_sections_and_places(admin_client, app, feed_server, clock):
    from tests.test_editor import post_form

    kl, cat = _two_feeds(app, feed_server, DigestMode.REVIEW)
    page = "/staff/newsletters/kl-nyheder/feeds"
    saved = post_form(
        admin_client,
        "/staff/newsletters/kl-nyheder/digest-settings",
        {"mode": "review", "cadence": "weekdays", "hour": "7", "sections": "y"},
        page,
    )
    assert saved.status_code == 303, saved.get_data(as_text=True)[:500]
    moved = post_form(admin_client, f"/staff/feeds/{cat}/position", {"position": "0"}, page)
    assert moved.status_code == 303
    moved = post_form(admin_client, f"/staff/feeds/{kl}/position", {"position": "5"}, page)
    with app.app_context():
        assert newsletter_by_slug("kl-nyheder").digest_sections is True
        assert db.session.get(Feed, kl).position == 5
    shown = html.unescape(admin_client.get(page).get_data(as_text=True))
    assert shown.index("■ Kategorier") < shown.index("■ KL Nyheder")
    for bad in ["-1", "10000", "abc", "1e9", "", "5\r\n6"]:
        refused = post_form(admin_client, f"/staff/feeds/{kl}/position", {"position": bad}, page)
        assert refused.status_code == 303
    with app.app_context():
        assert db.session.get(Feed, kl).position == 5
    assert admin_client.post(f"/staff/feeds/{kl}/position", data={"position": "1"}).status_code in (
        400,
        422,
    )


def test_an_editor_previews_filters_orders_and_drafts_the_next_digest(
    client, app, feed_server, clock
):
    """The issue's editor: in automatic mode, checks the next digest, steers it (a
    filter, a place) and takes it as a draft; the feeds themselves stay an
    administrator's."""
    from tests.test_editor import post_form
    from tests.test_staff import EDITOR, login, make_staff

    kl, cat = _two_feeds(app, feed_server)
    make_staff(app, EDITOR, "editor")
    assert login(client, EDITOR).status_code == 303
    page = "/staff/newsletters/kl-nyheder/feeds"
    shown = html.unescape(client.get(page).get_data(as_text=True))
    assert "6 artikler slipper igennem filtrene" in shown
    assert "/digest/draft" in shown and 'name="url"' not in shown
    newsletter_page = client.get("/staff/newsletters/kl-nyheder").get_data(as_text=True)
    assert html.unescape(newsletter_page).count("Feeds og det næste sammendrag") == 1
    assert client.get("/staff/newsletters/kl-nyheder/digest/preview").status_code == 200

    saved = post_form(
        client, f"/staff/feeds/{kl}/filter", {"exclude": "klima", "action": "save"}, page
    )
    assert saved.status_code == 303
    moved = post_form(client, f"/staff/feeds/{cat}/position", {"position": "9"}, page)
    assert moved.status_code == 303
    shown = html.unescape(client.get(page).get_data(as_text=True))
    assert "5 artikler slipper igennem filtrene" in shown and "## Klima" not in shown
    made = post_form(client, "/staff/newsletters/kl-nyheder/digest/draft", page=page)
    assert made.status_code == 303
    with app.app_context():
        edition = db.session.scalar(select(Edition))
        assert edition.status == EditionStatus.DRAFT and len(edition.items) == 5
        assert db.session.get(Feed, cat).position == 9
