"""The report pages: one edition's send and one newsletter's readers, with their charts
and the administrators' CSV of each recipient's outcome."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select, update

from newsletters import events
from newsletters.audit.models import AuditEntry
from newsletters.bounces.models import BounceKind
from newsletters.bounces.processing import record_bounce
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import lifecycle, summaries
from newsletters.editions.models import Delivery, DeliveryStatus, Edition, EditionStatus
from newsletters.extensions import db
from newsletters.reports.editions import edition_report
from newsletters.reports.newsletters import newsletter_report
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentDayCount,
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow
from tests.support.clock import Clock
from tests.support.editions import confirmed_audience, draft
from tests.test_editor import post_form
from tests.test_staff import ADMIN, EDITOR, login, make_staff


@pytest.fixture
def admin_client(app: Flask, client: FlaskClient) -> FlaskClient:
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


@pytest.fixture
def editor_client(app: Flask) -> FlaskClient:
    make_staff(app, EDITOR, "editor")
    client = app.test_client()
    assert login(client, EDITOR).status_code == 303
    return client


def sent_edition(app: Flask, clock: Clock, outcomes: list[str]) -> int:
    """An edition 'sent' to len(outcomes) confirmed readers, one delivery per outcome,
    two sent a minute from 08:00, with a minute without any at 08:02."""
    addresses = confirmed_audience(app, len(outcomes))
    edition_id = draft(app)
    start = utcnow()
    with app.app_context():
        ids = dict(
            db.session.execute(
                select(Subscriber.email, Subscriber.id).where(Subscriber.email.in_(addresses))
            ).all()
        )
        rows = []
        for n, (address, outcome) in enumerate(zip(addresses, outcomes, strict=True)):
            minute = n // 2 + (1 if n >= 4 else 0)  # 0,0,1,1,3,3,...: minute 2 is empty
            rows.append(
                {
                    "edition_id": edition_id,
                    "subscriber_id": ids[address],
                    "status": DeliveryStatus(outcome),
                    "attempts": 1,
                    "next_attempt_at": start,
                    "sent_at": start + timedelta(minutes=minute, seconds=n)
                    if outcome == "sent"
                    else None,
                    "last_error": "550 5.1.1 no such user" if outcome == "failed" else None,
                    "possible_duplicates": 0,
                }
            )
        db.session.execute(insert(Delivery), rows)
        db.session.execute(
            update(Edition)
            .where(Edition.id == edition_id)
            .values(
                status=EditionStatus.SENT,
                started_at=start,
                finished_at=start + timedelta(minutes=5),
                recipients=len(outcomes),
            )
        )
        db.session.commit()
    return edition_id


def deliveries(app: Flask, edition_id: int) -> list[Delivery]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(Delivery).where(Delivery.edition_id == edition_id).order_by(Delivery.id)
            )
        )


def test_edition_report_counts_every_outcome(app: Flask, clock: Clock):
    edition_id = sent_edition(app, clock, ["sent"] * 6 + ["failed", "skipped", "cancelled"])
    rows = deliveries(app, edition_id)
    with app.app_context():
        record_bounce(rows[0].subscriber_id, BounceKind.HARD, delivery_id=rows[0].id)
        record_bounce(rows[1].subscriber_id, BounceKind.SOFT, delivery_id=rows[1].id)
        record_bounce(rows[1].subscriber_id, BounceKind.SOFT, delivery_id=rows[1].id)
        db.session.execute(
            update(Delivery).where(Delivery.id == rows[2].id).values(possible_duplicates=1)
        )
        subscription_id = db.session.scalar(
            select(Subscription.id).where(Subscription.subscriber_id == rows[3].subscriber_id)
        )
        db.session.add(
            ConsentEvent(
                subscription_id=subscription_id,
                action=ConsentAction.WITHDRAWN,
                method="one_click",
                edition_id=edition_id,
            )
        )
        db.session.commit()
        report = edition_report(edition_id)
    assert (report.recipients, report.delivered, report.failed, report.not_sent) == (9, 6, 1, 2)
    assert (report.bounced_hard, report.bounced_soft) == (1, 1)
    assert (report.unsubscribed, report.possible_duplicates, report.waiting) == (1, 1, 0)
    # Two a minute, and the empty minute is a zero, not left out.
    assert [n for _at, n in report.per_minute] == [2, 2, 0, 2]
    assert report.bucket_minutes == 1


def test_edition_report_page_and_chart(app: Flask, clock: Clock, editor_client: FlaskClient):
    edition_id = sent_edition(app, clock, ["sent"] * 4 + ["failed"])
    response = editor_client.get(f"/staff/editions/{edition_id}/report")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="da">' in page and "Rapport: Nyt fra bestyrelsesmødet" in page
    assert re.search(r'data-count="delivered">\s*4<', page)
    assert re.search(r'data-count="failed">\s*1<', page)
    assert "Tallene bag diagrammet" in page
    # Editors see the report but not the download of personal data.
    assert "Hent som CSV" not in page
    chart = editor_client.get(f"/staff/editions/{edition_id}/report/per-minute.svg")
    assert chart.status_code == 200 and chart.mimetype == "image/svg+xml"
    assert "default-src 'none'" in chart.headers["Content-Security-Policy"]
    svg = chart.get_data(as_text=True)
    assert "Sendte beskeder pr. minut" in svg
    # Nothing fetched from outside (pygal's tooltip script would come from its site).
    assert not re.search(r'(src|href)="https?://', svg)


def test_a_long_send_is_drawn_in_wider_buckets(app: Flask, clock: Clock):
    edition_id = sent_edition(app, clock, ["sent", "sent"])
    rows = deliveries(app, edition_id)
    with app.app_context():
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == rows[1].id)
            .values(sent_at=rows[0].sent_at + timedelta(days=2))
        )
        db.session.commit()
        report = edition_report(edition_id)
    assert report.bucket_minutes > 1 and len(report.per_minute) <= 240
    assert sum(n for _at, n in report.per_minute) == 2


def test_recipient_csv_for_administrators_only(
    app: Flask, clock: Clock, admin_client: FlaskClient, editor_client: FlaskClient
):
    edition_id = sent_edition(app, clock, ["sent", "failed"])
    path = f"/staff/editions/{edition_id}/report.csv"
    page = f"/staff/editions/{edition_id}/report"
    assert "Hent som CSV" in admin_client.get(page).get_data(as_text=True)
    assert admin_client.get(path).status_code == 405  # no GET: the download is logged
    assert admin_client.post(path).status_code == 400  # no CSRF token
    assert post_form(editor_client, path, {}, page=page).status_code == 403
    response = post_form(admin_client, path, {}, page=page)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:2] == ["E-mail", "Udfald"]
    by_email = {r[0]: r for r in rows[1:]}
    assert by_email["m00000@example.dk"][1] == "sent"
    assert by_email["m00001@example.dk"][1] == "failed"
    assert "550 5.1.1" in by_email["m00001@example.dk"][6]
    with app.app_context():
        entry = db.session.scalar(
            select(AuditEntry).where(AuditEntry.action == "edition.report_export")
        )
        assert entry is not None and entry.target == f"edition:{edition_id}"


@pytest.mark.parametrize(
    "path",
    [
        "/staff/editions/99999/report",
        "/staff/editions/99999/report/per-minute.svg",
        "/staff/editions/99999999999999999999/report",
        "/staff/newsletters/no-such/report",
        "/staff/newsletters/bestyrelse/report/evil.svg",
        "/staff/newsletters/bestyrelse%0d%0aX:%201/report",
    ],
)
def test_unknown_reports_are_404(editor_client: FlaskClient, path: str):
    assert editor_client.get(path).status_code == 404


def test_reports_need_a_staff_login(app: Flask, client: FlaskClient, clock: Clock):
    edition_id = sent_edition(app, clock, ["sent"])
    for path in (
        f"/staff/editions/{edition_id}/report",
        f"/staff/editions/{edition_id}/report/per-minute.svg",
        "/staff/newsletters/bestyrelse/report",
        "/staff/newsletters/bestyrelse/report/readers.svg",
    ):
        response = client.get(path)
        assert response.status_code in (302, 303) and "/staff/login" in response.location


def _subscription(app: Flask, email: str, slug: str = "momentum") -> int:
    with app.app_context():
        subscriber = Subscriber(email=email, name="", municipality="", role="", locale="da")
        db.session.add(subscriber)
        db.session.flush()
        subscription = Subscription(
            subscriber_id=subscriber.id,
            newsletter_id=newsletter_by_slug(slug).id,
            status=SubscriptionStatus.CONFIRMED,
            requested_at=utcnow(),
            confirmed_at=utcnow(),
        )
        db.session.add(subscription)
        db.session.commit()
        return subscription.id


def _consent(app: Flask, subscription_id: int, action: ConsentAction, method: str) -> None:
    with app.app_context():
        db.session.add(
            ConsentEvent(subscription_id=subscription_id, action=action, method=method, at=utcnow())
        )
        if action == ConsentAction.WITHDRAWN:
            db.session.execute(
                update(Subscription)
                .where(Subscription.id == subscription_id)
                .values(status=SubscriptionStatus.UNSUBSCRIBED)
            )
        db.session.commit()


def test_newsletter_report_weeks_end_at_todays_count(app: Flask, clock: Clock):
    # Three weeks ago three readers joined; two weeks ago one left by one click and one by
    # the preference centre; this week one more joined.
    clock.set(clock() - timedelta(weeks=3))
    subs = [_subscription(app, f"r{n}@example.dk") for n in range(3)]
    for s in subs:
        _consent(app, s, ConsentAction.CONFIRMED, "confirm_link")
    clock.advance(weeks=1)
    _consent(app, subs[0], ConsentAction.WITHDRAWN, "one_click")
    _consent(app, subs[1], ConsentAction.WITHDRAWN, "preference_centre")
    clock.advance(weeks=2)
    new = _subscription(app, "r9@example.dk")
    _consent(app, new, ConsentAction.CONFIRMED, "confirm_link")
    with app.app_context():
        report = newsletter_report(newsletter_by_slug("momentum"))
        comings_and_goings = newsletter_report(newsletter_by_slug("momentum"), readers=False)
    assert [(w.joined, w.left) for w in comings_and_goings.weeks] == [
        (w.joined, w.left) for w in report.weeks
    ]
    assert comings_and_goings.sources == report.sources
    assert report.confirmed == 2
    assert [w.subscribers for w in report.weeks[-4:]] == [3, 1, 1, 2]
    assert [w.joined for w in report.weeks[-4:]] == [3, 0, 0, 1]
    assert [w.left for w in report.weeks[-4:]] == [0, 2, 0, 0]
    assert report.weeks[-1].start.weekday() == 0 and len(report.weeks) == 26
    assert report.sources["one_click"] == 1 and report.sources["preference_centre"] == 1


def test_erasures_are_counted_without_the_person(app: Flask, clock: Clock):
    with app.app_context():
        momentum = newsletter_by_slug("momentum").id
        for _ in range(2):
            events.announce(
                "subscriber.erase",
                "subscriber:999999",
                audited=False,
                subscriber_id=999999,
                confirmed_newsletter_ids=[momentum],
            )
            db.session.commit()
        report = newsletter_report(newsletter_by_slug("momentum"))
    assert report.sources["erasure"] == 2
    assert report.weeks[-1].left == 2


def test_newsletter_report_page_and_charts(app: Flask, clock: Clock, editor_client: FlaskClient):
    s = _subscription(app, "a@example.dk")
    _consent(app, s, ConsentAction.CONFIRMED, "confirm_link")
    page = editor_client.get("/staff/newsletters/momentum/report").get_data(as_text=True)
    assert "Rapport for Momentum" in page and "Abonnenter over tid" in page
    assert re.search(r'data-count="confirmed">\s*1<', page)
    for chart in ("readers", "weekly", "sources"):
        response = editor_client.get(f"/staff/newsletters/momentum/report/{chart}.svg")
        assert response.status_code == 200 and response.mimetype == "image/svg+xml"
        assert f'src="/staff/newsletters/momentum/report/{chart}.svg"' in page
    assert 'alt="' in page


def test_a_real_erasure_is_counted_for_the_newsletters_the_person_read(app: Flask, clock: Clock):
    from newsletters.subscriptions.erasure import erase

    s = _subscription(app, "erased@example.dk")
    _consent(app, s, ConsentAction.CONFIRMED, "confirm_link")
    with app.app_context():
        subscriber_id = db.session.scalar(
            select(Subscription.subscriber_id).where(Subscription.id == s)
        )
        assert erase(subscriber_id) is True
        report = newsletter_report(newsletter_by_slug("momentum"))
        assert report.sources["erasure"] == 1
        assert newsletter_report(newsletter_by_slug("bestyrelse")).sources["erasure"] == 0


# --------------------------------------------------------------------------- kept figures


def finished_edition(app: Flask, clock: Clock, outcomes: list[str]) -> int:
    """As sent_edition, but finished the way the worker finishes a send (which keeps
    its figures)."""
    edition_id = sent_edition(app, clock, outcomes)
    with app.app_context():
        db.session.execute(
            update(Edition)
            .where(Edition.id == edition_id)
            .values(status=EditionStatus.SENDING, finished_at=None)
        )
        db.session.commit()
        assert lifecycle.finish_complete_editions() == [edition_id]
    return edition_id


def _figures(report) -> tuple:
    return (
        report.recipients,
        report.delivered,
        report.failed,
        report.not_sent,
        report.waiting,
        report.possible_duplicates,
        report.bounced_hard,
        report.bounced_soft,
        report.unsubscribed,
        [(at, n) for at, n in report.per_minute],
        report.bucket_minutes,
    )


def _report_counted_live(edition_id: int):
    """The report as counted from the deliveries, the kept figures set aside."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(summaries, "stored", lambda _edition_id: None)
        return edition_report(edition_id)


def test_finishing_a_send_keeps_its_figures_and_the_report_reads_them(app: Flask, clock: Clock):
    edition_id = finished_edition(app, clock, ["sent"] * 6 + ["failed", "skipped"])
    with app.app_context():
        kept = summaries.stored(edition_id)
        assert kept is not None and kept.counts == {"sent": 6, "failed": 1, "skipped": 1}
        assert [n for _m, n in kept.minutes] == [2, 2, 2]  # minute 2 had none
        report = edition_report(edition_id)
        assert _figures(report) == _figures(_report_counted_live(edition_id))
        assert [n for _at, n in report.per_minute] == [2, 2, 0, 2]
        # Read from the kept rows, not the deliveries: a change behind the app's back
        # (no code path does this) does not show.
        db.session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition_id)
            .values(status=DeliveryStatus.FAILED)
        )
        assert edition_report(edition_id).delivered == 6
        db.session.rollback()


def test_kept_figures_stay_right_after_late_bounces_unsubscribes_and_an_erasure(
    app: Flask, clock: Clock
):
    from newsletters.subscriptions.consent import RequestContext
    from newsletters.subscriptions.erasure import erase
    from newsletters.subscriptions.preferences import unsubscribe_subscriber

    edition_id = finished_edition(app, clock, ["sent"] * 6 + ["failed"])
    rows = deliveries(app, edition_id)
    clock.advance(days=3)  # everything below arrives after the send
    with app.app_context():
        before = edition_report(edition_id)
        assert (before.bounced_hard, before.bounced_soft, before.unsubscribed) == (0, 0, 0)
        record_bounce(rows[0].subscriber_id, BounceKind.HARD, delivery_id=rows[0].id)
        record_bounce(rows[1].subscriber_id, BounceKind.SOFT, delivery_id=rows[1].id)
        record_bounce(rows[1].subscriber_id, BounceKind.SOFT, delivery_id=rows[1].id)
        # A bounce of another edition's delivery, or naming none, is not this one's.
        record_bounce(rows[2].subscriber_id, BounceKind.HARD, delivery_id=None)
        db.session.commit()
        unsubscribe_subscriber(
            rows[3].subscriber_id,
            newsletter_ids=None,
            ctx=RequestContext(method="one_click"),
            edition_id=edition_id,
        )
        report = edition_report(edition_id)
        assert (report.bounced_hard, report.bounced_soft, report.unsubscribed) == (1, 1, 1)
        assert _figures(report) == _figures(_report_counted_live(edition_id))
        # An erased recipient's delivery is gone: off the kept counts and the minute.
        assert erase(rows[4].subscriber_id) is True
        after = edition_report(edition_id)
        assert (after.recipients, after.delivered, after.failed) == (6, 5, 1)
        assert [n for _at, n in after.per_minute] == [2, 2, 0, 1]
        assert _figures(after) == _figures(_report_counted_live(edition_id))
        # The bounced one erased: their bounces go with them.
        assert erase(rows[0].subscriber_id) is True
        last = edition_report(edition_id)
        assert (last.recipients, last.bounced_hard) == (5, 0)
        assert _figures(last) == _figures(_report_counted_live(edition_id))


def _consent_counts_recounted() -> dict[tuple, int]:
    rows = db.session.execute(
        select(
            Subscription.newsletter_id,
            ConsentEvent.at,
            ConsentEvent.action,
            ConsentEvent.method,
        ).join(Subscription, Subscription.id == ConsentEvent.subscription_id)
    ).all()
    counts: dict[tuple, int] = {}
    for newsletter_id, at, action, method in rows:
        key = (newsletter_id, (at.date() - date(1970, 1, 1)).days, str(action), method)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _consent_counts_kept() -> dict[tuple, int]:
    return {
        (n, d, a, m): c
        for n, d, a, m, c in db.session.execute(
            select(
                ConsentDayCount.newsletter_id,
                ConsentDayCount.day,
                ConsentDayCount.action,
                ConsentDayCount.method,
                ConsentDayCount.count,
            )
        )
        if c
    }


def test_consent_records_are_counted_per_day_as_they_come_and_go(app: Flask, clock: Clock):
    from newsletters.subscriptions.erasure import erase, purge_pending

    clock.set(datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC))
    subs = [_subscription(app, f"d{n}@example.dk") for n in range(4)]
    for s in subs:
        _consent(app, s, ConsentAction.CONFIRMED, "confirm_link")
    clock.advance(seconds=2)  # the next day (UTC)
    _consent(app, subs[0], ConsentAction.WITHDRAWN, "one_click")
    # Hostile methods are counted as they are, apart.
    _consent(app, subs[1], ConsentAction.WITHDRAWN, "x\r\nInjected: 1"[:40])
    pending = _subscription(app, "p@example.dk", slug="bestyrelse")
    with app.app_context():
        db.session.execute(
            update(Subscription)
            .where(Subscription.id == pending)
            .values(status=SubscriptionStatus.PENDING, requested_at=utcnow())
        )
        db.session.commit()
    _consent(app, pending, ConsentAction.REQUESTED, "web_form")
    with app.app_context():
        momentum = newsletter_by_slug("momentum").id
        kept = _consent_counts_kept()
        assert kept == _consent_counts_recounted()
        day = (date(2026, 11, 1) - date(1970, 1, 1)).days
        assert kept[(momentum, day, "confirmed", "confirm_link")] == 4
        assert kept[(momentum, day + 1, "withdrawn", "one_click")] == 1
        # An erasure and the purge of a stale pending subscription take theirs off.
        subscriber_id = db.session.scalar(
            select(Subscription.subscriber_id).where(Subscription.id == subs[2])
        )
        assert erase(subscriber_id) is True
        clock.advance(days=400)
        assert purge_pending(older_than_days=30) == (1, 1)
        kept = _consent_counts_kept()
        assert kept == _consent_counts_recounted()
        assert kept[(momentum, day, "confirmed", "confirm_link")] == 3
        assert not any(key[2] == "requested" for key in kept)


def test_a_newsletter_chart_is_drawn_again_when_its_numbers_change(
    app: Flask, clock: Clock, editor_client: FlaskClient
):
    s = _subscription(app, "c@example.dk")
    _consent(app, s, ConsentAction.CONFIRMED, "confirm_link")
    path = "/staff/newsletters/momentum/report/sources.svg"
    first = editor_client.get(path).get_data()
    assert editor_client.get(path).get_data() == first  # the kept picture
    _consent(app, s, ConsentAction.WITHDRAWN, "one_click")
    assert editor_client.get(path).get_data() != first
