"""When a scheduled digest goes (invariant 10): at its hour or within
DIGEST_CATCH_UP_MINUTES after it, never later and never half-built; a slot missed by
more is skipped, recorded and shown, and its items wait for the next one. All on the
app's controlled clock: these tests pass or fail the same at any hour and on any day."""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters import ConfigurationError, create_app
from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.models import Edition
from newsletters.extensions import db
from newsletters.feeds import digests, services
from newsletters.feeds.models import DigestRun, SkipReason
from newsletters.worker import Worker
from tests.conftest import base_config
from tests.support.clock import Clock, local
from tests.support.editions import confirmed_audience
from tests.support.feedserver import FeedServer
from tests.test_editor import post_form
from tests.test_staff import ADMIN, login, make_staff


def rss(*titles: str) -> bytes:
    """An undated feed with these items: each is news when it is first seen."""
    items = "".join(
        f"<item><title>{t}</title><link>https://www.kl.dk/n/{quote(t)}</link><guid>{t}</guid>"
        f"<description>Om {t}.</description></item>"
        for t in titles
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>KL</title><link>https://www.kl.dk/</link>{items}</channel></rss>"
    ).encode()


def add_feed(app: Flask, url: str, slug: str = "kl-nyheder") -> int:
    with app.app_context():
        return services.add_feed(slug, url, by="test").id


def fetch_all(app: Flask) -> None:
    with app.app_context():
        services.fetch_feeds()
        db.session.remove()


def fetch_due(app: Flask) -> int:
    """The scheduler's fetch job alone, as a worker runs it."""
    with app.app_context():
        fetched = services.fetch_due("test-worker")
        db.session.remove()
        return fetched


def schedule(app: Flask) -> int:
    """The scheduler's digest job alone, as a worker runs it."""
    with app.app_context():
        made = digests.scheduled_digests("test-worker")
        db.session.remove()
        return made


def run_worker(app: Flask) -> None:
    """Every job of a worker until nothing is due (`flask worker --once`)."""
    worker = Worker(app, worker_id="test-worker")
    for _ in range(20):
        if not worker.run_once():
            return


def digests_of(app: Flask, slug: str = "kl-nyheder") -> list[tuple[datetime | None, list[str]]]:
    """Each digest edition of the newsletter: (scheduled for, headings)."""
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        editions = db.session.scalars(
            select(Edition).where(Edition.newsletter_id == newsletter.id).order_by(Edition.id)
        ).all()
        rows = [(e.scheduled_at, [i.heading for i in e.items]) for e in editions]
        db.session.remove()
        return rows


def skips_of(app: Flask, slug: str = "kl-nyheder") -> list[tuple[str, datetime, datetime, str]]:
    """Each skipped slot, oldest first: (day, its hour, when noticed (to the second), why)."""
    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        rows = [
            (run.slot, run.slot_at, run.created_at.replace(microsecond=0), run.skipped.value)
            for run in reversed(digests.skipped_slots(newsletter.id))
        ]
        db.session.remove()
        return rows


def set_schedule(app: Flask, slug: str, cadence: DigestCadence, hour: int) -> None:
    with app.app_context():
        services.update_digest_settings(slug, mode=DigestMode.AUTO, cadence=cadence, hour=hour)
        db.session.remove()


def feeds_page(app: Flask, slug: str = "kl-nyheder") -> str:
    make_staff(app, ADMIN, "admin")
    client = app.test_client()
    assert login(client, ADMIN).status_code == 303
    response = client.get(f"/staff/newsletters/{slug}/feeds")
    assert response.status_code == 200
    return " ".join(html.unescape(response.get_data(as_text=True)).split())


@pytest.fixture
def kl_feed(app: Flask, feed_server: FeedServer, clock: Clock) -> FeedServer:
    """kl-nyheder (weekdays, 07:00, automatic) with one feed since Friday 27 November
    2026, its digest of that day made; one new item since."""
    clock.set_local(2026, 11, 27, 6, 0)
    add_feed(app, feed_server.serve("kl.xml", body=rss("Fredag")))
    clock.set_local(2026, 11, 27, 7, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app)] == [["Fredag"]]
    clock.set_local(2026, 11, 29, 12, 0)  # Sunday
    feed_server.serve("kl.xml", body=rss("Fredag", "Søndag"))
    run_worker(app)
    return feed_server


# --------------------------------------------------------------------------- the window


@pytest.mark.e2e
def test_a_digest_goes_at_its_hour(app, kl_feed, clock):
    clock.set_local(2026, 11, 30, 6, 59, 59)
    run_worker(app)
    assert len(digests_of(app)) == 1
    clock.set_local(2026, 11, 30, 7, 0)
    run_worker(app)
    [_, (scheduled_for, headings)] = digests_of(app)
    assert headings == ["Søndag"]
    assert local(2026, 11, 30, 7, 0) <= scheduled_for < local(2026, 11, 30, 7, 0, 1)


@pytest.mark.e2e
def test_a_worker_late_within_the_catch_up_window_still_makes_the_digest(app, kl_feed, clock):
    clock.set_local(2026, 11, 30, 7, 59, 59)
    run_worker(app)
    assert [h for _, h in digests_of(app)] == [["Fredag"], ["Søndag"]]
    assert skips_of(app) == []


@pytest.mark.e2e
def test_a_slot_missed_by_more_than_the_window_is_skipped_recorded_and_its_items_wait(
    app, kl_feed, clock
):
    clock.set_local(2026, 11, 30, 8, 0, 1)
    run_worker(app)
    assert len(digests_of(app)) == 1  # nothing sent at 08:00:01
    assert skips_of(app) == [
        ("2026-11-30", local(2026, 11, 30, 7, 0), local(2026, 11, 30, 8, 0, 1), "missed")
    ]
    # Nothing more that day, however often the scheduler looks.
    for hour in (9, 15, 23):
        clock.set_local(2026, 11, 30, hour, 0)
        run_worker(app)
    assert len(digests_of(app)) == 1 and len(skips_of(app)) == 1

    clock.set_local(2026, 12, 1, 6, 0)
    kl_feed.serve("kl.xml", body=rss("Fredag", "Søndag", "Tirsdag"))
    clock.set_local(2026, 12, 1, 7, 0)
    run_worker(app)
    # Sunday's item waited for Tuesday's digest: nothing is lost.
    assert [h for _, h in digests_of(app)][-1] == ["Tirsdag", "Søndag"]
    assert len(skips_of(app)) == 1


@pytest.mark.e2e
def test_the_items_of_a_skipped_first_digest_are_not_lost_to_its_window(app, feed_server, clock):
    # Dated items of Sunday 29 November; the first digest (Monday's) is missed.
    clock.set_local(2026, 11, 29, 20, 0)
    add_feed(app, feed_server.serve("kl.xml", "rss20.xml"))
    clock.set_local(2026, 11, 30, 9, 0)
    run_worker(app)
    assert [s[0] for s in skips_of(app)] == ["2026-11-30"]
    # Tuesday's digest reaches back as far as Monday's would have (a weekend), not
    # just one day: Sunday's items come along.
    clock.set_local(2026, 12, 1, 7, 0)
    run_worker(app)
    [(_, headings)] = digests_of(app)
    assert len(headings) == 3


@pytest.mark.e2e
def test_the_catch_up_window_is_a_setting(make_app, feed_server, clock):
    app = make_app(DIGEST_CATCH_UP_MINUTES=15)
    clock.set_local(2026, 11, 27, 6, 0)
    add_feed(app, feed_server.serve("kl.xml", body=rss("Fredag")))
    clock.set_local(2026, 11, 27, 7, 14, 59)
    run_worker(app)
    assert len(digests_of(app)) == 1
    feed_server.serve("kl.xml", body=rss("Fredag", "Mandag"))
    clock.set_local(2026, 11, 30, 7, 15, 1)
    run_worker(app)
    assert len(digests_of(app)) == 1
    assert [(day, why) for day, _, _, why in skips_of(app)] == [("2026-11-30", "missed")]


@pytest.mark.parametrize("minutes", [0, -5, 721, "tres", True, None])
def test_a_catch_up_window_out_of_range_refuses_to_start(migrated_database, minutes):
    with pytest.raises(ConfigurationError, match="DIGEST_CATCH_UP_MINUTES"):
        create_app({**base_config(migrated_database), "DIGEST_CATCH_UP_MINUTES": minutes})


@pytest.mark.e2e
def test_a_worker_that_starts_after_the_window_records_the_skip_and_the_page_shows_it(
    app, kl_feed, clock
):
    # The worker is stopped from Sunday noon until Monday 09:30: the feed (due every
    # 30 minutes) is fetched first, then Monday's slot is found too late.
    clock.set_local(2026, 11, 30, 9, 30)
    kl_feed.serve("kl.xml", body=rss("Fredag", "Søndag", "Mandag"))
    run_worker(app)
    assert len(digests_of(app)) == 1
    assert [(day, why) for day, _, _, why in skips_of(app)] == [("2026-11-30", "missed")]
    page = feeds_page(app)
    assert "Oversprungne sammendrag" in page
    assert "mandag den 30. november 2026 kl. 07.00" in page
    assert "30.11.2026 09.30" in page  # when it was noticed
    assert "Ingen baggrundsproces kørte, før fristen udløb" in page
    assert "Punkterne fra et oversprunget sammendrag kommer med i det næste." in page
    assert "Næste sammendrag: tirsdag den 1. december 2026 kl. 07.00." in page


@pytest.mark.e2e
def test_a_worker_stopped_for_days_records_each_missed_slot_and_only_those(app, kl_feed, clock):
    # Stopped from Sunday noon to Wednesday 10:00: Monday, Tuesday and Wednesday are
    # missed (weekdays); the weekend had no slot.
    clock.set_local(2026, 12, 2, 10, 0)
    run_worker(app)
    assert [day for day, *_ in skips_of(app)] == ["2026-11-30", "2026-12-01", "2026-12-02"]
    clock.set_local(2026, 12, 3, 7, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app)] == [["Fredag"], ["Søndag"]]


@pytest.mark.e2e
def test_a_skip_and_a_late_build_of_the_same_slot_cannot_both_happen(app, kl_feed, clock):
    clock.set_local(2026, 11, 30, 8, 30)
    run_worker(app)
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        slot = digests.slot_on(newsletter, date(2026, 11, 30))
        with pytest.raises(digests.DigestAlreadyBuilt):
            digests.build_digest(newsletter.id, slot=slot)
    assert len(digests_of(app)) == 1


# --------------------------------------------------------------------------- half-built


@pytest.mark.e2e
def test_a_digest_waits_for_a_feed_attached_just_before_its_hour(app, feed_server, clock):
    clock.set_local(2026, 11, 27, 6, 0)
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))
    clock.set_local(2026, 11, 27, 7, 0)
    run_worker(app)
    # Monday: a second feed is attached at 06:59:30, the first was fetched at 06:40.
    feed_server.serve("a.xml", body=rss("A1", "A2"))
    clock.set_local(2026, 11, 30, 6, 40)
    assert fetch_due(app) == 1
    clock.set_local(2026, 11, 30, 6, 59, 30)
    add_feed(app, feed_server.serve("b.xml", body=rss("B1", "B2")))
    clock.set_local(2026, 11, 30, 7, 0)
    # The digest job alone (another worker may be fetching b.xml right now): it waits.
    assert schedule(app) == 0
    assert len(digests_of(app)) == 1
    with app.app_context():
        newsletter = newsletter_by_slug("kl-nyheder")
        assert digests.feeds_awaited(newsletter.id, digests.next_slot(newsletter)) == 1
    clock.set_local(2026, 11, 30, 7, 0, 5)
    assert fetch_due(app) == 1
    assert schedule(app) == 1
    [_, (_, headings)] = digests_of(app)
    assert sorted(headings) == ["A2", "B1", "B2"]  # whole: both feeds, one digest
    assert skips_of(app) == []


@pytest.mark.e2e
def test_a_feed_whose_fetch_fails_does_not_hold_the_digest(app, feed_server, clock):
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))
    add_feed(app, feed_server.serve("b.xml", status=500))
    clock.set_local(2026, 11, 30, 7, 0)
    run_worker(app)
    [(_, headings)] = digests_of(app)
    assert headings == ["A1"]


@pytest.mark.e2e
def test_a_digest_whose_feeds_are_still_unfetched_when_the_window_closes_is_skipped(
    app, feed_server, clock
):
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))
    for minute in (0, 30, 59):
        clock.set_local(2026, 11, 30, 7, minute)
        assert schedule(app) == 0  # no fetcher ran: waiting, never half-built
    clock.set_local(2026, 11, 30, 8, 0, 1)
    assert schedule(app) == 0
    assert [(day, why) for day, _, _, why in skips_of(app)] == [
        ("2026-11-30", SkipReason.FEEDS_NOT_FETCHED.value)
    ]
    assert "stadig ikke hentet, da fristen udløb" in feeds_page(app)
    clock.set_local(2026, 12, 1, 7, 0)
    run_worker(app)
    [(_, headings)] = digests_of(app)
    assert headings == ["A1"]


# --------------------------------------------------------------------------- a new schedule


@pytest.mark.e2e
def test_a_newsletter_whose_first_feeds_come_after_its_hour_starts_at_the_next_slot(
    mail_app, smtp_server, feed_server, clock
):
    # The defect: feeds attached to the seeded, automatic kl-nyheder at 12:09 sent
    # that day's 07:00 digest at once, with the first feed's items only.
    audience = confirmed_audience(mail_app, 2, slug="kl-nyheder")
    clock.set_local(2026, 11, 30, 12, 9)
    add_feed(mail_app, feed_server.serve("a.xml", body=rss("A1", "A2")))
    run_worker(mail_app)
    clock.set_local(2026, 11, 30, 12, 10)
    add_feed(mail_app, feed_server.serve("b.xml", body=rss("B1")))
    run_worker(mail_app)
    clock.set_local(2026, 11, 30, 18, 0)
    run_worker(mail_app)
    assert digests_of(mail_app) == [] and smtp_server.received == []
    assert skips_of(mail_app) == []  # the hour passed before there were feeds: not missed
    page = feeds_page(mail_app)
    assert "Næste sammendrag: tirsdag den 1. december 2026 kl. 07.00." in page

    clock.set_local(2026, 12, 1, 7, 0)
    run_worker(mail_app)
    [(_, headings)] = digests_of(mail_app)
    assert sorted(headings) == ["A1", "A2", "B1"]
    mails = smtp_server.wait_for(2)
    assert sorted(m.rcpt_to for m in mails) == sorted(audience)


@pytest.mark.e2e
def test_a_feed_attached_before_the_hour_makes_that_days_digest(app, feed_server, clock):
    clock.set_local(2026, 11, 30, 6, 30)
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))
    clock.set_local(2026, 11, 30, 7, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app)] == [["A1"]]


@pytest.mark.e2e
def test_changing_the_hour_starts_the_schedule_from_now(app, feed_server, clock):
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))  # Monday 06:00
    # At 06:50 the hour moves to 09; at 07:30 to 06, an hour that has passed today: it
    # is not made up for, nor counted as skipped.
    clock.set_local(2026, 11, 30, 6, 50)
    set_schedule(app, "kl-nyheder", DigestCadence.WEEKDAYS, 9)
    clock.set_local(2026, 11, 30, 7, 30)
    run_worker(app)
    set_schedule(app, "kl-nyheder", DigestCadence.WEEKDAYS, 6)
    clock.set_local(2026, 11, 30, 12, 0)
    run_worker(app)
    assert digests_of(app) == [] and skips_of(app) == []
    clock.set_local(2026, 12, 1, 6, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app)] == [["A1"]]
    # Later that day the hour moves to 10 (to come): still one digest a day.
    feed_server.serve("a.xml", body=rss("A1", "A2"))
    set_schedule(app, "kl-nyheder", DigestCadence.WEEKDAYS, 10)
    clock.set_local(2026, 12, 1, 10, 0)
    run_worker(app)
    assert len(digests_of(app)) == 1
    clock.set_local(2026, 12, 2, 10, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app)][-1] == ["A2"]


@pytest.mark.e2e
def test_the_cli_makes_the_digest_now_whatever_the_schedule(app, feed_server, clock):
    runner = app.test_cli_runner()
    clock.set_local(2026, 11, 28, 23, 30)  # a Saturday night
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))
    fetch_all(app)
    result = runner.invoke(args=["digests", "run", "--newsletter", "kl-nyheder"])
    assert result.exit_code == 0 and "with 1 item(s)" in result.output, result.output
    assert [h for _, h in digests_of(app)] == [["A1"]]


# --------------------------------------------------------------------------- cadences


@pytest.mark.e2e
def test_a_weekday_digest_has_no_weekend_slots_and_monday_brings_the_weekend(
    app, feed_server, clock
):
    clock.set_local(2026, 11, 27, 6, 0)  # Friday
    add_feed(app, feed_server.serve("kl.xml", body=rss("Fredag")))
    clock.set_local(2026, 11, 27, 7, 0)
    run_worker(app)
    feed_server.serve("kl.xml", body=rss("Fredag", "Lørdag"))
    with app.app_context():
        upcoming = digests.next_slot(newsletter_by_slug("kl-nyheder"), local(2026, 11, 27, 20))
    assert upcoming.key == "2026-11-30"  # from Friday night, the next is Monday's
    for day, hour in ((28, 7), (28, 9), (29, 7), (29, 9)):  # Saturday, Sunday
        clock.set_local(2026, 11, day, hour, 0)
        run_worker(app)
    assert len(digests_of(app)) == 1 and skips_of(app) == []
    clock.set_local(2026, 11, 30, 7, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app)] == [["Fredag"], ["Lørdag"]]


@pytest.mark.e2e
def test_a_weekly_digest_skipped_on_its_day_goes_the_next_day(app, feed_server, clock):
    # Momentum: weekly at 08:00, "when there is news, at most once a week".
    add_feed(app, feed_server.serve("m.xml", body=rss("M1")), slug="momentum")
    clock.set_local(2026, 11, 30, 8, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app, "momentum")] == [["M1"]]
    feed_server.serve("m.xml", body=rss("M1", "M2"))
    # The worker is stopped on Monday 7 December from 07:00 to 10:00.
    clock.set_local(2026, 12, 7, 10, 0)
    run_worker(app)
    assert [day for day, *_ in skips_of(app, "momentum")] == ["2026-12-07"]
    clock.set_local(2026, 12, 8, 8, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app, "momentum")] == [["M1"], ["M2"]]
    # And then not again for a week, news or not.
    feed_server.serve("m.xml", body=rss("M1", "M2", "M3"))
    for day in range(9, 15):
        clock.set_local(2026, 12, day, 8, 0)
        run_worker(app)
    assert len(digests_of(app, "momentum")) == 2
    clock.set_local(2026, 12, 15, 8, 0)
    run_worker(app)
    assert [h for _, h in digests_of(app, "momentum")][-1] == ["M3"]
    assert len(skips_of(app, "momentum")) == 1


# --------------------------------------------------------------------------- summer time


def test_slots_keep_copenhagen_hours_across_the_changes_of_the_clocks(app):
    with app.app_context():
        daily = newsletter_by_slug("danske-kommuner")  # daily at 07:00
        utc = {d: digests.slot_on(daily, d).at for d in (date(2027, 3, 27), date(2027, 3, 28))}
        assert utc == {
            date(2027, 3, 27): datetime(2027, 3, 27, 6, 0, tzinfo=UTC),  # 07:00 CET
            date(2027, 3, 28): datetime(2027, 3, 28, 5, 0, tzinfo=UTC),  # 07:00 CEST
        }
        assert digests.slot_on(daily, date(2027, 10, 31)).at == datetime(
            2027, 10, 31, 6, 0, tzinfo=UTC
        )
        # 02:00 does not exist on 28 March (the clocks jump to 03:00) and comes twice
        # on 31 October: one slot either way, at 03:00 CEST and at the first 02:00.
        daily.digest_hour = 2
        assert digests.slot_on(daily, date(2027, 3, 28)).at == datetime(
            2027, 3, 28, 1, 0, tzinfo=UTC
        )
        assert digests.slot_on(daily, date(2027, 10, 31)).at == datetime(
            2027, 10, 31, 0, 0, tzinfo=UTC
        )
        db.session.rollback()


@pytest.mark.e2e
def test_a_daily_digest_goes_at_seven_copenhagen_time_on_both_sides_of_summer_time(
    app, feed_server, clock
):
    clock.set(datetime(2027, 3, 26, 12, 0, tzinfo=UTC))
    add_feed(app, feed_server.serve("dk.xml", body=rss("Fredag")), slug="danske-kommuner")
    clock.set(datetime(2027, 3, 27, 6, 0, tzinfo=UTC))  # Saturday 07:00 CET
    run_worker(app)
    feed_server.serve("dk.xml", body=rss("Fredag", "Lørdag"))
    clock.set(datetime(2027, 3, 28, 4, 59, tzinfo=UTC))  # Sunday 06:59 CEST
    run_worker(app)
    assert len(digests_of(app, "danske-kommuner")) == 1
    clock.set(datetime(2027, 3, 28, 5, 0, tzinfo=UTC))  # 07:00 CEST
    run_worker(app)
    assert [h for _, h in digests_of(app, "danske-kommuner")] == [["Fredag"], ["Lørdag"]]
    assert skips_of(app, "danske-kommuner") == []

    # Back to winter time on 31 October: 07:00 CET is 06:00 UTC again.
    feed_server.serve("dk.xml", body=rss("Fredag", "Lørdag", "Oktober"))
    clock.set(datetime(2027, 10, 31, 5, 30, tzinfo=UTC))  # 06:30 CET
    run_worker(app)
    # The week before was missed (no worker ran): each day recorded once, from 25
    # October (a scheduler looks back a week).
    assert [day for day, *_ in skips_of(app, "danske-kommuner")] == [
        f"2027-10-{day}" for day in range(25, 31)
    ]
    assert [h for _, h in digests_of(app, "danske-kommuner")][-1] == ["Lørdag"]
    clock.set(datetime(2027, 10, 31, 6, 0, tzinfo=UTC))
    run_worker(app)
    assert [h for _, h in digests_of(app, "danske-kommuner")][-1] == ["Oktober"]


@pytest.mark.e2e
def test_an_hour_that_comes_twice_makes_one_digest(app, feed_server, clock):
    clock.set(datetime(2027, 10, 30, 12, 0, tzinfo=UTC))
    set_schedule(app, "danske-kommuner", DigestCadence.DAILY, 2)
    add_feed(app, feed_server.serve("dk.xml", body=rss("Lørdag")), slug="danske-kommuner")
    clock.set(datetime(2027, 10, 31, 0, 0, tzinfo=UTC))  # 02:00 CEST
    run_worker(app)
    assert len(digests_of(app, "danske-kommuner")) == 1
    feed_server.serve("dk.xml", body=rss("Lørdag", "Søndag"))
    clock.set(datetime(2027, 10, 31, 1, 0, tzinfo=UTC))  # 02:00 CET, the second time
    run_worker(app)
    assert len(digests_of(app, "danske-kommuner")) == 1
    assert skips_of(app, "danske-kommuner") == []


# --------------------------------------------------------------------------- the page


@pytest.mark.e2e
def test_the_feeds_page_says_when_the_next_digest_is_made(app, feed_server, clock):
    page = feeds_page(app)
    assert (
        "Det første sammendrag laves på det første klokkeslæt, efter at der er tilføjet et feed."
        in page
    )
    add_feed(app, feed_server.serve("a.xml", body=rss("A1")))  # Monday 06:00
    client = app.test_client()
    assert login(client, ADMIN).status_code == 303

    def text() -> str:
        body = client.get("/staff/newsletters/kl-nyheder/feeds").get_data(as_text=True)
        return " ".join(html.unescape(body).split())

    assert "Næste sammendrag: mandag den 30. november 2026 kl. 07.00." in text()
    assert "senest 60 minutter efter" in text()
    clock.set_local(2026, 11, 30, 7, 0, 30)  # its hour has come; the feed is unfetched
    # An hour without a request ends a staff session (STAFF_IDLE_MINUTES): log in again.
    assert login(client, ADMIN).status_code == 303
    assert "Det laves, så snart 1 feed er hentet." in text()
    run_worker(app)
    assert "Næste sammendrag: tirsdag den 1. december 2026 kl. 07.00." in text()
    clock.set_local(2026, 12, 4, 8, 0)  # Friday, after the hour
    run_worker(app)
    assert login(client, ADMIN).status_code == 303
    assert "Næste sammendrag: mandag den 7. december 2026 kl. 07.00." in text()
    response = post_form(
        client,
        "/staff/newsletters/kl-nyheder/digest-settings",
        {"mode": "off", "cadence": "weekdays", "hour": "7"},
        "/staff/newsletters/kl-nyheder/feeds",
    )
    assert response.status_code == 303
    assert "Sammendraget er slået fra" in text()
    english = client.get("/staff/newsletters/kl-nyheder/feeds?lang=en").get_data(as_text=True)
    assert "The digest is off" in html.unescape(english)


@pytest.mark.e2e
def test_skipped_slots_are_recorded_with_newsletter_slot_time_and_reason(app, kl_feed, clock):
    clock.set_local(2026, 11, 30, 11, 0)
    run_worker(app)
    with app.app_context():
        [run] = db.session.scalars(select(DigestRun).where(DigestRun.skipped.is_not(None))).all()
        assert run.newsletter_id == newsletter_by_slug("kl-nyheder").id
        assert (run.slot, run.slot_at, run.skipped) == (
            "2026-11-30",
            local(2026, 11, 30, 7, 0),
            SkipReason.MISSED,
        )
        assert local(2026, 11, 30, 11, 0) <= run.created_at < local(2026, 11, 30, 11, 0, 1)
        assert (run.edition_id, run.cutoff, run.item_count) == (None, None, 0)
