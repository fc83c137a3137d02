"""Filters per feed: words and categories decide which items go into digests; the
others are kept, shown as such and judged again when the filter changes."""

from __future__ import annotations

import html
import re
import unicodedata

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters.catalog.models import DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.models import Edition
from newsletters.extensions import db
from newsletters.feeds import digests, services
from newsletters.feeds.filters import MAX_WORDS, FilterError, ItemFilter, clean_words
from newsletters.feeds.models import Feed, FeedItem
from tests.support.feedserver import FeedServer


def _add_and_fetch(app: Flask, feed_server: FeedServer) -> int:
    url = feed_server.serve("categories.xml", "categories.xml")
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", url, by="test").id
        services.fetch_feeds([feed_id])
        db.session.remove()
    return feed_id


def _verdicts(app: Flask, feed_id: int) -> dict[str, bool]:
    """Title -> filtered out."""
    with app.app_context():
        rows = db.session.execute(
            select(FeedItem.title, FeedItem.filtered_out).where(FeedItem.feed_id == feed_id)
        )
        return {title.split(":")[0]: out for title, out in rows}


# --------------------------------------------------------------------------- pure parts


def test_words_match_casefolded_and_normalised_danish():
    decomposed = unicodedata.normalize("NFD", "Århus")  # A + combining ring
    assert decomposed != "Århus"
    judge = ItemFilter.of(decomposed, "", "")
    assert judge.passes("Nyt fra ÅRHUS", "")
    assert judge.passes("", "i århus i dag")
    assert not judge.passes("Aarhus", "")
    assert ItemFilter.of("københavn", "", "").passes("KØBENHAVN", "")
    assert ItemFilter.of("ÆLDRE", "", "").passes("ældreplejen", "")
    assert not ItemFilter.of("", "Ældre", "").passes("x", "Om ÆLDREPLEJE")
    assert ItemFilter.of("", "", "børn og unge").passes("x", "", ["Børn  og Unge"])
    assert not ItemFilter.of("", "", "skole").passes("skole", "skole", [])
    assert ItemFilter.of("", "", "").passes("anything", "")


def test_words_match_inside_words_unless_quoted_then_only_whole():
    # Unquoted: anywhere, as Danish compounds want ("skole" in "folkeskolen").
    assert ItemFilter.of("skole", "", "").passes("Flere lærere i folkeskolen", "")
    assert ItemFilter.of("kl", "", "").passes("Klimaplaner", "")
    # Quoted (straight, Danish or English marks): only the whole word.
    for quoted in ['"KL"', "“KL”", "»KL«", "„KL“", "'KL'"]:
        judge = ItemFilter.of(quoted, "", "")
        assert judge.passes("KL's bestyrelse", ""), quoted
        assert judge.passes("Udspil fra (KL) i dag", ""), quoted
        assert judge.passes("", "siger kl"), quoted
        assert not judge.passes("Klimaplaner", ""), quoted
        assert not judge.passes("KLØFT i budgettet", ""), quoted  # ø is a letter
        assert not judge.passes("AKL", ""), quoted
    judge = ItemFilter.of('skole\n"EU"', '"børn og unge"', "")
    assert judge.passes("EU-regler", "") and judge.passes("Folkeskolen", "")
    assert not judge.passes("Europa", "")
    assert not judge.passes("EU og Børn og Unge", "")  # the quoted phrase excludes
    assert judge.passes("EU og børn og ungdommen", "")
    assert ItemFilter.of('"å"', "", "").passes("Å i byen", "")
    assert not ItemFilter.of('"å"', "", "").passes("Århus", "")
    # A quoted word is stored as typed, quotes included, and shown back so.
    assert clean_words(['"KL", skole'], "include") == ['"KL"', "skole"]


def test_bad_words_are_refused_with_a_reason():
    assert clean_words(["a, b", " b ,c", "", "Æble\r\nÆBLE"], "include") == ["a", "b", "c", "Æble"]
    with pytest.raises(FilterError, match="control character"):
        clean_words(["ond\r\nord"], "include", split_lines=False)
    with pytest.raises(FilterError, match="control character"):
        clean_words(["nul\x00"], "exclude")
    with pytest.raises(FilterError, match="longer than"):
        clean_words(["x" * 101], "include")
    with pytest.raises(FilterError, match="more than"):
        clean_words([",".join(f"w{i}" for i in range(MAX_WORDS + 1))], "include")
    with pytest.raises(FilterError, match="more than"):
        clean_words([",".join(str(i) for i in range(100_000))], "include")


# --------------------------------------------------------------------------- fetch and digest


def test_items_are_judged_at_fetch_time_and_again_when_the_filter_changes(app, feed_server, clock):
    url = feed_server.serve("categories.xml", "categories.xml")
    with app.app_context():
        feed_id = services.add_feed("kl-nyheder", url, by="test").id
        services.set_filter(feed_id, exclude=["hjemmehjælp"])
    with app.app_context():
        services.fetch_feeds([feed_id])
        db.session.remove()
    assert _verdicts(app, feed_id) == {"Skoler": False, "Ældrepleje": True, "Sport": False}
    with app.app_context():
        stored = db.session.scalar(select(FeedItem).where(FeedItem.title.like("Skoler%")))
        assert stored.categories.splitlines() == ["Børn og unge", "Skole"]
        outcome = services.set_filter(feed_id, categories=["BØRN OG UNGE", "ældre"])
        assert (outcome.passing, outcome.filtered_out) == (2, 1)
    assert _verdicts(app, feed_id) == {"Skoler": False, "Ældrepleje": False, "Sport": True}
    with app.app_context():
        services.set_filter(feed_id)  # cleared: everything passes, nothing was lost
    assert _verdicts(app, feed_id) == {"Skoler": False, "Ældrepleje": False, "Sport": False}


def test_a_digest_takes_only_the_items_that_pass(app, feed_server, clock):
    feed_id = _add_and_fetch(app, feed_server)
    with app.app_context():
        services.set_filter(feed_id, include=["kommune"], exclude=["SPORT"])
        newsletter = newsletter_by_slug("kl-nyheder")
        newsletter.digest_mode = DigestMode.REVIEW
        db.session.commit()
        outcome = digests.build_digest(newsletter.id)
        edition = db.session.get(Edition, outcome.edition_id)
        assert [item.heading for item in edition.items] == ["Skoler: Flere lærere i folkeskolen"]


def test_a_filter_change_is_audited_and_bad_input_changes_nothing(app, feed_server, clock):
    feed_id = _add_and_fetch(app, feed_server)
    with app.app_context():
        services.set_filter(feed_id, include=["skole"])
        with pytest.raises(services.FeedError, match="control character"):
            services.set_filter(feed_id, include=["a\nb"], split_lines=False)
        with pytest.raises(services.FeedNotFound):
            services.set_filter(10**12, include=["x"])
        db.session.remove()
        assert db.session.get(Feed, feed_id).filter_include == "skole"
        from newsletters.audit.models import AuditEntry

        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "feed.filter"))
        assert entry is not None and entry.target == f"feed:{feed_id}"


def test_cli_sets_shows_and_clears_a_filter(runner, app, feed_server, clock):
    feed_id = _add_and_fetch(app, feed_server)
    result = runner.invoke(
        args=[
            "feeds",
            "filter",
            str(feed_id),
            "--include",
            "kommune,HJEMMEHJÆLP",
            "--exclude",
            "sport",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "include: kommune, HJEMMEHJÆLP" in result.output
    assert "2 item(s) pass, 1 filtered out" in result.output
    result = runner.invoke(args=["feeds", "filter", str(feed_id), "--categories", "Skole"])
    assert result.exit_code == 0 and "1 item(s) pass, 2 filtered out" in result.output
    result = runner.invoke(args=["feeds", "filter", str(feed_id), "--clear"])
    assert result.exit_code == 0 and "3 item(s) pass, 0 filtered out" in result.output

    for args, message in [
        ([str(feed_id)], "give --include"),
        ([str(feed_id), "--clear", "--include", "x"], "not both"),
        ([str(feed_id), "--include", "ond\r\nord"], "control character"),
        ([str(feed_id), "--exclude", "nul\x00"], "control character"),
        ([str(feed_id), "--include", "x" * 5000], "longer than"),
        (["99999999999999", "--include", "x"], "no feed 99999999999999"),
    ]:
        bad = runner.invoke(args=["feeds", "filter", *args])
        assert bad.exit_code != 0 and message in bad.output, (args, bad.output)
    bad = runner.invoke(args=["feeds", "filter", "abc", "--include", "x"])
    assert bad.exit_code != 0


# --------------------------------------------------------------------------- the staff page


@pytest.fixture
def admin_client(client, app):
    from tests.test_staff import ADMIN, login, make_staff

    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def _rows(response) -> dict[str, str]:
    """Item title -> "yes"/"no" (in the digest) on the filter page."""
    page = html.unescape(response.get_data(as_text=True))
    found = re.findall(r'data-passes="(yes|no)">\s*<td><a [^>]*>([^<:]*):', page)
    return {title: passes for passes, title in found}


def test_the_filter_page_previews_saves_and_shows_filtered_items(admin_client, app, feed_server):
    from tests.test_editor import post_form

    feed_id = _add_and_fetch(app, feed_server)
    page = f"/staff/feeds/{feed_id}/filter"
    response = admin_client.get(page)
    assert response.status_code == 200
    assert _rows(response) == {"Skoler": "yes", "Ældrepleje": "yes", "Sport": "yes"}

    preview = post_form(admin_client, page, {"exclude": "SPORT\r\nældre", "action": "preview"})
    assert preview.status_code == 200
    assert _rows(preview) == {"Skoler": "yes", "Ældrepleje": "no", "Sport": "no"}
    assert _verdicts(app, feed_id) == {"Skoler": False, "Ældrepleje": False, "Sport": False}

    saved = post_form(admin_client, page, {"exclude": "SPORT\r\nældre", "action": "save"})
    assert saved.status_code == 303
    assert _verdicts(app, feed_id) == {"Skoler": False, "Ældrepleje": True, "Sport": True}
    shown = admin_client.get(page)
    assert _rows(shown) == {"Skoler": "yes", "Ældrepleje": "no", "Sport": "no"}
    text = html.unescape(shown.get_data(as_text=True))
    assert "Filteret er gemt" in text or "filter has been saved" in text
    feeds_page = html.unescape(
        admin_client.get("/staff/newsletters/kl-nyheder/feeds").get_data(as_text=True)
    )
    assert 'data-field="filtered-count"' in feeds_page


@pytest.mark.parametrize(
    "data",
    [
        {"include": "nul\x00byte"},  # the app refuses NUL in any form (400)
        {"include": "vertical\x0btab"},
        {"exclude": "x" * 101},
        {"categories": ",".join(f"c{i}" for i in range(60))},
        {"include": "a" * 30_000},
    ],
)
def test_the_filter_page_refuses_hostile_words_without_changing_anything(
    admin_client, app, feed_server, data
):
    from tests.test_editor import post_form

    feed_id = _add_and_fetch(app, feed_server)
    page = f"/staff/feeds/{feed_id}/filter"
    response = post_form(admin_client, page, {**data, "action": "save"})
    assert response.status_code in (400, 422)
    if response.status_code == 422:
        shown = response.get_data(as_text=True)
        assert 'class="form-error-message"' in shown
        # Shown again without the control character, which HTML may not hold.
        assert "\x0b" not in shown and "\x00" not in shown
    assert _verdicts(app, feed_id) == {"Skoler": False, "Ældrepleje": False, "Sport": False}
    with app.app_context():
        feed = db.session.get(Feed, feed_id)
        assert (feed.filter_include, feed.filter_exclude, feed.filter_categories) == ("", "", "")


def test_the_filter_page_needs_csrf_and_a_real_feed(admin_client, app, feed_server):
    feed_id = _add_and_fetch(app, feed_server)
    response = admin_client.post(f"/staff/feeds/{feed_id}/filter", data={"include": "x"})
    assert response.status_code in (400, 422)
    with app.app_context():
        assert db.session.get(Feed, feed_id).filter_include == ""
    assert admin_client.get("/staff/feeds/99999999999999/filter").status_code == 404
    assert admin_client.get("/staff/feeds/0/filter").status_code == 404
