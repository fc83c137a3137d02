"""Subscribing people on a recorded basis (staff's imports): no opt-in mail, and a
withdrawal is never overridden.

Part of the caller's transaction: the import commits each chunk of its file at once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Column, MetaData, Table, UniqueConstraint, delete, select, true, update
from sqlalchemy.schema import CreateTable

from newsletters.bulk import write_rows
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.subscriptions.consent import RequestContext, record_event
from newsletters.subscriptions.lookups import subscriptions_of
from newsletters.subscriptions.models import (
    ConsentAction,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.timeutil import utcnow


def enrol(
    subscriber: Subscriber,
    newsletter: Newsletter,
    *,
    basis: str,
    ctx: RequestContext,
) -> bool:
    """Subscribe on a recorded basis (no opt-in mail); True if it changed anything."""
    existing = subscriptions_of(subscriber).get(newsletter.id) if subscriber.id else None
    if existing is not None and existing.status == SubscriptionStatus.CONFIRMED:
        return False
    if existing is not None and existing.status == SubscriptionStatus.UNSUBSCRIBED:
        # They left; a recorded basis does not override a withdrawal.
        return False
    now = utcnow()
    subscription = existing or Subscription(subscriber=subscriber, newsletter=newsletter)
    if existing is None:
        db.session.add(subscription)
    subscription.status = SubscriptionStatus.CONFIRMED
    subscription.requested_at = subscription.requested_at or now
    subscription.confirmed_at = now
    record_event(subscription, ConsentAction.ENROLLED, ctx, basis=basis)
    return True


def insert_subscribers(rows: Sequence[dict[str, str]]) -> None:
    """Create subscribers in bulk, skipping addresses that exist by now (a subscribe
    request carried out meanwhile).

    The one path that creates subscribers in bulk: each row gives `email` and the
    details it has; every other column takes its default (Python or server side), so a
    column added later needs only a default to be filled here too.

    The rows go into a temporary table first (PostgreSQL: COPY; SQLite: one executemany
    into a table without indexes or triggers) and into `subscribers` with one
    `INSERT ... SELECT ... ON CONFLICT DO NOTHING`. One statement, not one per row:
    SQLite's FTS5 search index (migration 0024's trigger) flushes its buffer at the end
    of every statement, so row by row it wrote and merged a tiny segment per row (three
    quarters of an import's time); PostgreSQL's COPY saves the per-row round trips.
    """
    if not rows:
        return
    connection = db.session.connection()
    staged = _staging_table()
    connection.execute(CreateTable(staged, if_not_exists=True))
    sqlite = connection.dialect.name == "sqlite"

    def processed(name: str) -> Callable[[object], object] | None:
        # SQLite is given values as the column types store them (naive UTC datetimes);
        # psycopg's COPY adapts Python values itself.
        return staged.c[name].type.bind_processor(connection.dialect) if sqlite else None

    # The columns in three groups, so that a row's values are three tuples joined, not a
    # function called per cell (1.1 million calls for 100 000 rows): those the rows give
    # (as they are, where the type needs no processing), those made afresh per row (the
    # link key), and those the same for every row (made and processed once).
    columns = list(staged.c.keys())
    defaults = _python_defaults([name for name in columns if name not in rows[0]])
    given = [name for name in columns if name in rows[0]]
    fresh = [name for name, d in defaults.items() if isinstance(d, _PerRow)]
    same = [name for name, d in defaults.items() if not isinstance(d, _PerRow)]
    constants = tuple(
        defaults[name]() if (process := processed(name)) is None else process(defaults[name]())
        for name in same
    )
    makers = [(defaults[name], processed(name)) for name in fresh]
    if any(processed(name) for name in given):  # pragma: no cover - strings need none
        processes = [processed(name) or (lambda value: value) for name in given]

        def get(row: dict) -> tuple:
            return tuple(p(row[n]) for p, n in zip(processes, given, strict=True))
    else:
        get = operator.itemgetter(*given) if len(given) > 1 else lambda row: (row[given[0]],)
    values = [(*get(row), *(p(m()) if p else m() for m, p in makers), *constants) for row in rows]
    names = [*given, *fresh, *same]
    write_rows(connection, _STAGING, names, values)
    table = Subscriber.__table__
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    # `WHERE true`: SQLite would read ON CONFLICT as part of the SELECT's join otherwise.
    connection.execute(
        dialect_insert(table)
        .from_select(names, select(*[staged.c[name] for name in names]).where(true()))
        .on_conflict_do_nothing(index_elements=[table.c.email])
    )
    connection.execute(delete(staged))


_STAGING = "subscribers_staged"


def _staging_table() -> Table:
    """A temporary table with the columns of `subscribers` (no id, no constraints, no
    trigger). PostgreSQL drops it at the commit; SQLite keeps it (empty) on the
    connection, in the connection's own temporary schema."""
    return Table(
        _STAGING,
        MetaData(),
        *[
            Column(column.name, column.type)
            for column in Subscriber.__table__.columns
            if not column.primary_key
        ],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


class _PerRow:
    """A default made afresh for every row."""

    def __init__(self, make: Callable[[object], object]) -> None:
        self._make = make

    def __call__(self) -> object:
        return self._make(None)


def _python_defaults(names: list[str]) -> dict[str, Callable[[], object]]:
    """For each column, what its Python-side default gives; None where it has none.

    A unique column's default (the random link key) is made for every row; any other
    is made once per call (the same creation time for the rows of one chunk).
    """
    table = Subscriber.__table__
    unique = {
        column.name
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
        for column in constraint.columns
    } | {column.name for column in table.columns if column.unique}
    defaults: dict[str, Callable[[], object]] = {}
    for name in names:
        default = table.c[name].default
        if default is None:
            defaults[name] = lambda: None
        elif not default.is_callable:
            defaults[name] = lambda value=default.arg: value
        elif name in unique:
            defaults[name] = _PerRow(default.arg)
        else:
            once = default.arg(None)
            defaults[name] = lambda value=once: value
    return defaults


def mark_welcome_letter_sent(subscription_ids: Sequence[int], *, at: datetime) -> None:
    """Record that these enrolled subscriptions have had the welcome letter (part of the
    caller's transaction, which queues the mails): a later send skips them."""
    for start in range(0, len(subscription_ids), _MARK_CHUNK):
        db.session.execute(
            update(Subscription)
            .where(Subscription.id.in_(subscription_ids[start : start + _MARK_CHUNK]))
            .values(welcome_letter_sent_at=at)
        )


# Below SQLite's limit of bound parameters in one statement.
_MARK_CHUNK = 500
