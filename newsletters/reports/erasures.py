"""Counting erasures per newsletter and week, without keeping anything about the person.

Listens to the erasure announced by subscriptions (`subscriber.erase`), whose data names
the newsletters the person was a confirmed reader of, and adds one to each of their counts
for the current week, in the erasure's own transaction.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy.dialects import postgresql, sqlite

from newsletters import events
from newsletters.extensions import db
from newsletters.reports.models import ErasureCount
from newsletters.timeutil import utcnow

ERASURE = "subscriber.erase"


def init_app(app: Flask) -> None:
    events.listen(app, _count_erasure, names=[ERASURE])


def _count_erasure(event: events.Event) -> None:
    newsletter_ids = event.data.get("confirmed_newsletter_ids") or ()
    today = utcnow().date()
    monday = today - timedelta(days=today.weekday())
    if not newsletter_ids:
        return
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    # One statement per erasure: two erasures at the same moment both count.
    stmt = dialect.insert(ErasureCount).values(
        [{"newsletter_id": n, "week": monday, "count": 1} for n in sorted(set(newsletter_ids))]
    )
    db.session.execute(
        stmt.on_conflict_do_update(
            index_elements=["newsletter_id", "week"],
            set_={"count": ErasureCount.count + 1},
        )
    )
