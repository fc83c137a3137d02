"""The report pages in headless Chromium: the charts load as pictures (under the pages'
Content-Security-Policy), their numbers open from the keyboard, and axe-core finds
nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, update

from newsletters.editions.models import Delivery, DeliveryStatus, Edition, EditionStatus
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from newsletters.timeutil import utcnow
from tests.browser.test_staff_pages import audit
from tests.support.editions import confirmed_audience, draft

pytestmark = pytest.mark.browser


def _sent_edition(live_server) -> int:
    app = live_server.app
    confirmed_audience(app, 30)
    edition_id = draft(app)
    with app.app_context():
        now = utcnow()
        ids = db.session.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        db.session.execute(
            insert(Delivery),
            [
                {
                    "edition_id": edition_id,
                    "subscriber_id": sid,
                    "status": DeliveryStatus.SENT,
                    "attempts": 1,
                    "next_attempt_at": now,
                    "sent_at": now,
                    "possible_duplicates": 0,
                }
                for sid in ids
            ],
        )
        db.session.execute(
            update(Edition)
            .where(Edition.id == edition_id)
            .values(status=EditionStatus.SENT, started_at=now, finished_at=now, recipients=30)
        )
        db.session.commit()
        db.session.remove()
    return edition_id


def _images_loaded(page) -> list[int]:
    return page.eval_on_selector_all(
        "figure.report-chart img",
        "imgs => imgs.map(i => (i.complete && i.naturalWidth > 0 ? 'drawn' : 'broken'))",
    )


def test_report_pages_draw_their_charts_and_are_axe_clean(
    axe_page, sign_in_admin, live_server, axe
):
    edition_id = _sent_edition(live_server)
    page = sign_in_admin(axe_page)

    response = page.goto(f"/staff/editions/{edition_id}/report")
    assert response.status == 200
    page.wait_for_load_state("load")
    assert _images_loaded(page) == ["drawn"]
    audit(axe, page, "edition report")
    # The numbers behind the chart open from the keyboard.
    summary = page.locator("figure.report-chart summary")
    summary.focus()
    page.keyboard.press("Enter")
    assert page.locator("figure.report-chart details table").is_visible()
    assert "30" in page.locator("figure.report-chart details table").inner_text()

    response = page.goto("/staff/newsletters/bestyrelse/report")
    assert response.status == 200
    page.wait_for_load_state("load")
    assert _images_loaded(page) == ["drawn"] * 3
    audit(axe, page, "newsletter report")
    axe.assert_clean()
