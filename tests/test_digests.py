"""Digests: new feed items made into editions on each newsletter's cadence, the whole way
to a real SMTP server on loopback, on a clock the tests control."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from newsletters import timeutil
from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import sending
from newsletters.editions.models import Edition, EditionStatus
from newsletters.extensions import db
from newsletters.feeds import digests, services
from newsletters.feeds.models import DigestRun
from newsletters.worker import Worker
from tests.support.clock import Clock
from tests.support.editions import confirmed_audience
from tests.test_editor import compose_data, item_fields, post_form
from tests.test_staff import EDITOR, login, make_staff


def add_feed(app: Flask, url: str, slug: str = "kl-nyheder") -> int:
    with app.app_context():
        return services.add_feed(slug, url, by="test").id


def fetch(app: Flask) -> None:
    with app.app_context():
        services.fetch_feeds()
        db.session.remove()


def set_mode(app: Flask, slug: str, mode: DigestMode, cadence: DigestCadence | None = None):
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        services.update_digest_settings(
            slug,
            mode=mode,
            cadence=cadence or newsletter.digest_cadence,
            hour=newsletter.digest_hour,
        )


def editions_of(app: Flask, slug: str) -> list[Edition]:
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        rows = db.session.scalars(
            select(Edition).where(Edition.newsletter_id == newsletter.id).order_by(Edition.id)
        ).all()
        for row in rows:
            row.__dict__["loaded_items"] = [(i.heading, i.link) for i in row.items]
        db.session.expunge_all()
        return list(rows)


def headings(edition: Edition) -> list[str]:
    return [heading for heading, _ in edition.__dict__["loaded_items"]]


def run_worker(app: Flask) -> None:
    """The worker as `flask worker --once` runs it: every job until nothing is due."""
    worker = Worker(app, worker_id="test-worker")
    for _ in range(20):
        if not worker.run_once():
            return


def test_seeded_feed_based_newsletters_start_in_auto_send(app):
    with app.app_context():
        modes = {
            slug: (n.digest_mode, n.digest_cadence)
            for slug in ("bestyrelse", "kl-nyheder", "momentum", "danske-kommuner")
            if (n := newsletter_by_slug(slug))
        }
    assert modes == {
        "bestyrelse": (DigestMode.OFF, DigestCadence.DAILY),
        "kl-nyheder": (DigestMode.AUTO, DigestCadence.WEEKDAYS),
        "momentum": (DigestMode.AUTO, DigestCadence.WEEKLY),
        "danske-kommuner": (DigestMode.AUTO, DigestCadence.DAILY),
    }


@pytest.mark.e2e
def test_digests_run_sends_new_items_to_subscribers_and_nothing_twice(
    mail_app, smtp_server, feed_server, clock
):
    runner = mail_app.test_cli_runner()
    audience = confirmed_audience(mail_app, 3, slug="kl-nyheder")
    feed_server.serve("kl.xml", "rss20.xml")
    add_feed(mail_app, feed_server.url("kl.xml"))
    fetch(mail_app)

    result = runner.invoke(args=["digests", "run", "--newsletter", "kl-nyheder"])
    assert result.exit_code == 0, result.output
    [edition] = editions_of(mail_app, "kl-nyheder")
    assert f"edition {edition.id} with 3 item(s), sending to 3 recipient(s)" in result.output
    assert edition.subject == "KL's daglige nyhedsbreve 30. november 2026"
    assert headings(edition) == [
        "Klima: Kommunerne er i mål med klimaplanerne",
        "Beskæftigelse: Færre på kanten af arbejdsmarkedet",
        "KL: Økonomiaftalen giver kommunerne luft",
    ]
    run_worker(mail_app)
    mails = smtp_server.wait_for(3)
    assert sorted(m.rcpt_to for m in mails) == sorted(audience)
    mail = mails[0]
    assert "Klima: Kommunerne er i mål med klimaplanerne" in mail.text
    assert "Læs mere: https://www.kl.dk/nyheder/klima" in mail.text
    assert "Alle 98 kommuner har nu en klimaplan" in mail.text
    assert 'href="https://www.kl.dk/nyheder/klima"' in mail.html
    assert mail.message["List-Unsubscribe"]

    # Nothing new: no edition, no mail.
    clock.advance(hours=1)
    fetch(mail_app)
    result = runner.invoke(args=["digests", "run", "--newsletter", "kl-nyheder"])
    assert "no new items since the last digest, no edition" in result.output
    assert len(editions_of(mail_app, "kl-nyheder")) == 1

    # The publisher adds one item and edits another: only the new one is news.
    clock.advance(hours=1)
    feed_server.serve("kl.xml", "rss20-edited.xml")
    fetch(mail_app)
    runner.invoke(args=["digests", "run"])
    newest = editions_of(mail_app, "kl-nyheder")[-1]
    assert headings(newest) == ["Børn og unge: Ny aftale om dagtilbud"]
    run_worker(mail_app)
    assert len(smtp_server.wait_for(6)) == 6


def test_digests_run_refuses_bad_input(runner, app):
    bad = runner.invoke(args=["digests", "run", "--newsletter", "nope"])
    assert bad.exit_code == 1 and "no newsletter 'nope'" in bad.output
    bad = runner.invoke(args=["digests", "run", "--newsletter", "bestyrelse"])
    assert bad.exit_code == 1 and "not made from feeds" in bad.output
    bad = runner.invoke(args=["digests", "run", "--newsletter", "momentum"])
    assert bad.exit_code == 1 and "has no feeds" in bad.output
    none = runner.invoke(args=["digests", "run"])
    assert none.exit_code == 0 and "no feed-based newsletter has feeds" in none.output


@pytest.mark.e2e
def test_scheduler_sends_the_digest_at_the_hour_on_weekdays_only(
    mail_app, smtp_server, feed_server, clock
):
    confirmed_audience(mail_app, 2, slug="kl-nyheder")
    clock.set_local(2026, 11, 28, 10, 0)  # Saturday
    add_feed(mail_app, feed_server.serve("kl.xml", "rss20.xml"))
    run_worker(mail_app)  # fetches the feed (due at once), makes no digest on a Saturday
    assert editions_of(mail_app, "kl-nyheder") == []
    clock.set_local(2026, 11, 29, 12, 0)  # Sunday
    run_worker(mail_app)
    assert editions_of(mail_app, "kl-nyheder") == []

    clock.set_local(2026, 11, 30, 6, 59)  # Monday, before seven
    run_worker(mail_app)
    assert editions_of(mail_app, "kl-nyheder") == []
    clock.set_local(2026, 11, 30, 7, 0)
    run_worker(mail_app)
    [edition] = editions_of(mail_app, "kl-nyheder")
    assert edition.status == EditionStatus.SENT and len(headings(edition)) == 3
    assert len(smtp_server.wait_for(2)) == 2

    # Later the same day, with a new item: tomorrow's digest, not a second one today.
    clock.set_local(2026, 11, 30, 15, 0)
    feed_server.serve("kl.xml", "rss20-edited.xml")
    fetch(mail_app)
    run_worker(mail_app)
    assert len(editions_of(mail_app, "kl-nyheder")) == 1
    clock.set_local(2026, 12, 1, 7, 5)
    run_worker(mail_app)
    editions = editions_of(mail_app, "kl-nyheder")
    assert len(editions) == 2 and headings(editions[1]) == ["Børn og unge: Ny aftale om dagtilbud"]
    assert len(smtp_server.wait_for(4)) == 4


@pytest.mark.e2e
def test_two_schedulers_at_the_same_moment_make_one_digest(mail_app, feed_server, clock):
    add_feed(mail_app, feed_server.serve("kl.xml", "rss20.xml"))
    clock.set_local(2026, 11, 30, 7, 0)
    fetch(mail_app)
    made: list[int] = []
    barrier = threading.Barrier(2)

    def scheduler() -> None:
        with mail_app.app_context():
            barrier.wait()
            made.append(digests.scheduled_digests())
            db.session.remove()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(made) == [0, 1]
    assert len(editions_of(mail_app, "kl-nyheder")) == 1


def test_the_database_refuses_a_second_digest_of_the_same_window(app):
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        now = timeutil.utcnow()

        def run(number: int, slot: str) -> DigestRun:
            return DigestRun(newsletter_id=newsletter.id, number=number, slot=slot, cutoff=now)

        db.session.add(run(1, "2026-11-30"))
        db.session.commit()
        for duplicate in (run(1, "manual:x"), run(2, "2026-11-30")):
            db.session.add(duplicate)
            with pytest.raises(IntegrityError):
                db.session.commit()
            db.session.rollback()


@pytest.mark.e2e
def test_a_builder_that_lost_the_race_makes_nothing(app, feed_server, clock):
    add_feed(app, feed_server.serve("kl.xml", "rss20.xml"))
    fetch(app)
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        slot = digests.slot_on(newsletter, date(2026, 11, 30))
        digests.build_digest(newsletter.id, slot=slot)
        with pytest.raises(digests.DigestAlreadyBuilt):
            digests.build_digest(newsletter.id, slot=slot)
        assert db.session.scalar(select(func.count(Edition.id))) == 1


@pytest.mark.e2e
def test_first_digest_of_a_new_feed_takes_only_the_cadence_window(app, feed_server, clock):
    set_mode(app, "momentum", DigestMode.REVIEW)
    add_feed(app, feed_server.serve("rss091.xml", "rss091.xml"), slug="momentum")
    fetch(app)
    clock.set_local(2026, 11, 30, 8, 0)
    with app.app_context():
        momentum = newsletter_by_slug("momentum").id
        first = digests.build_digest(momentum)
    assert first.item_count == 2  # undated: first seen now, within the window

    # A feed with weeks of history is added: only its last week comes along.
    clock.set_local(2026, 11, 30, 10, 0)
    add_feed(app, feed_server.serve("history.xml", "old-history.xml"), slug="momentum")
    fetch(app)
    clock.set_local(2026, 12, 1, 8, 0)
    with app.app_context():
        second = digests.build_digest(momentum)
    assert second.item_count == 1
    assert headings(editions_of(app, "momentum")[-1]) == ["Historik 4"]


@pytest.mark.e2e
def test_weekly_digest_comes_at_most_once_in_seven_days(app, feed_server, clock: Clock):
    # Momentum: weekly, at 08:00.
    add_feed(app, feed_server.serve("m.xml", "rss091.xml"), slug="momentum")
    clock.set_local(2026, 11, 30, 8, 0)
    fetch(app)
    with app.app_context():
        assert digests.scheduled_digests() == 1
    feed_server.serve("m.xml", "no-dates.xml")  # news every day from now on
    for day in range(1, 7):
        for hour in (8, 10):
            clock.set_local(2026, 11, 30, hour, 0)
            clock.advance(days=day)
            fetch(app)
            with app.app_context():
                assert digests.scheduled_digests() == 0, day
    clock.set_local(2026, 12, 7, 8, 30)
    fetch(app)
    with app.app_context():
        assert digests.scheduled_digests() == 1
        # The days in between were no slots of a weekly digest: nothing was skipped.
        assert digests.skipped_slots(newsletter_by_slug("momentum").id) == []
    assert [len(headings(e)) for e in editions_of(app, "momentum")] == [2, 2]


@pytest.mark.e2e
def test_review_mode_digest_waits_for_an_editor_who_reorders_drops_and_adds_a_note(
    mail_app, smtp_server, feed_server, clock
):
    set_mode(mail_app, "kl-nyheder", DigestMode.REVIEW)
    audience = confirmed_audience(mail_app, 2, slug="kl-nyheder")
    add_feed(mail_app, feed_server.serve("kl.xml", "rss20.xml"))
    clock.set_local(2026, 11, 30, 7, 0)
    run_worker(mail_app)
    [edition] = editions_of(mail_app, "kl-nyheder")
    assert edition.status == EditionStatus.DRAFT
    assert smtp_server.received == []

    make_staff(mail_app, EDITOR, "editor")
    client = mail_app.test_client()
    assert login(client, EDITOR).status_code == 303
    klima, beskaeftigelse, oekonomi = edition.__dict__["loaded_items"]
    rows = [
        {"heading": klima[0], "link": klima[1], "position": "2"},
        {"heading": beskaeftigelse[0], "link": beskaeftigelse[1], "remove": True},
        {"heading": oekonomi[0], "link": oekonomi[1], "position": "1"},
    ]
    path = f"/staff/editions/{edition.id}/edit"
    response = post_form(
        client,
        path,
        {
            **compose_data(subject=edition.subject, body="God morgen. Dagens **vigtigste**:"),
            **item_fields(*rows),
        },
    )
    assert response.status_code == 303
    [edited] = editions_of(mail_app, "kl-nyheder")
    assert headings(edited) == [oekonomi[0], klima[0]]
    response = post_form(client, f"/staff/editions/{edition.id}/send")
    assert response.status_code == 303
    run_worker(mail_app)
    mails = smtp_server.wait_for(2)
    assert sorted(m.rcpt_to for m in mails) == sorted(audience)
    text = mails[0].text
    assert "God morgen. Dagens vigtigste:" in text
    assert text.index(oekonomi[0]) < text.index(klima[0]) and beskaeftigelse[0] not in text


def test_feed_text_is_not_read_as_markdown(app):
    assert digests.escape_markdown("*ikke* [et](link) <b>") == r"\*ikke\* \[et\](link) \<b\>"
    from newsletters.editions.rendering import markdown_to_html, markdown_to_text

    source = digests.escape_markdown("2 * 3 = 6 og [ikke et link](x) <script>")
    assert markdown_to_text(source) == "2 * 3 = 6 og [ikke et link](x) <script>"
    assert "<em>" not in markdown_to_html(source) and "<script" not in markdown_to_html(source)


def test_html_in_the_markdown_reads_as_text_in_the_text_part(app):
    from newsletters.editions.rendering import markdown_to_text

    source = (
        "<p>Bestyrelsen har drøftet <strong>økonomiaftalen</strong> &amp; klimaet.</p>"
        '<p><a href="https://www.kl.dk/nyheder" title="KL">Læs mere</a><br>Hilsen KL</p>\n\n'
        "2 < 3 og [et link](https://kl.dk)"
    )
    assert markdown_to_text(source) == (
        "Bestyrelsen har drøftet økonomiaftalen & klimaet.\n\n"
        "Læs mere (https://www.kl.dk/nyheder)\n\nHilsen KL\n\n"
        "2 < 3 og et link (https://kl.dk)"
    )


@pytest.mark.e2e
def test_digest_edition_is_a_normal_edition(app, feed_server, clock):
    set_mode(app, "danske-kommuner", DigestMode.REVIEW)
    add_feed(app, feed_server.serve("dk.rdf", "rss10.rdf"), slug="danske-kommuner")
    fetch(app)
    with app.app_context():
        outcome = digests.run_digests("danske-kommuner")[0]
        assert outcome.edition_id and not outcome.auto_send
        assert "waiting for review" in outcome.describe()
        # Same preview and the same send as an edition written by hand.
        from newsletters.editions import editing

        rendered = editing.preview(outcome.edition_id)
        assert "Ældreplejen får nye rammer" in rendered.text
        assert sending.start_send(outcome.edition_id) == 0
