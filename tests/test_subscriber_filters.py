"""The staff's subscriber list filtered by newsletter, status, municipality and role
(issue 17): the right rows, in address order, page after page by keyset; counts up to
the cap; and the indexes that let a filtered page stop after its rows (migration 0027)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, select, text

from newsletters.admin import services
from newsletters.admin.services import STOPPED, SubscriberFilter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber, Subscription, SubscriptionStatus

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
MUNICIPALITIES = ["Aarhus", "Ærø", "København"]
ROLES = ["borgmester", "direktør", ""]
STATUSES = [
    SubscriptionStatus.CONFIRMED,
    SubscriptionStatus.PENDING,
    SubscriptionStatus.UNSUBSCRIBED,
]
SLUGS = ["bestyrelse", "momentum"]


def person(n: int) -> dict:
    """Subscriber n: inserted in an order unlike the address order (n * 7 mod 40), its
    municipality, role, subscriptions and hard bounce each on its own cycle."""
    return {
        "n": n,
        "email": f"p{(n * 7) % 40:02d}.x{n}@example.dk",
        "municipality": MUNICIPALITIES[n % 3],
        "role": ROLES[n % 2 if n % 5 else 2],
        "stopped": n % 6 == 0,
        # slug -> status; absent: not subscribed
        "subscriptions": {
            slug: STATUSES[(n + i) % 3] for i, slug in enumerate(SLUGS) if (n + i) % 4 != 0
        },
    }


PEOPLE = [person(n) for n in range(40)]


@pytest.fixture
def population(app: Flask) -> Flask:
    with app.app_context():
        ids = {}
        for p in PEOPLE:
            ids[p["n"]] = db.session.scalar(
                insert(Subscriber)
                .values(
                    email=p["email"],
                    name=f"Person {p['n']}",
                    municipality=p["municipality"],
                    role=p["role"],
                    hard_bounced_at=AT if p["stopped"] else None,
                    created_at=AT,
                    updated_at=AT,
                )
                .returning(Subscriber.id)
            )
        newsletter_ids = {slug: newsletter_by_slug(slug).id for slug in SLUGS}
        db.session.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": ids[p["n"]],
                    "newsletter_id": newsletter_ids[slug],
                    "status": status,
                    "requested_at": AT,
                }
                for p in PEOPLE
                for slug, status in p["subscriptions"].items()
            ],
        )
        db.session.commit()
    return app


def expected(f: SubscriberFilter) -> list[str]:
    """The addresses the filter should find, computed here from PEOPLE, in address order."""

    def keeps(p: dict) -> bool:
        subs = p["subscriptions"]
        if f.municipality and p["municipality"] != f.municipality:
            return False
        if f.role and p["role"] != f.role:
            return False
        if f.status == STOPPED and not p["stopped"]:
            return False
        if f.newsletter and f.newsletter not in subs:
            return False
        if f.status and f.status != STOPPED:
            statuses = [subs[f.newsletter]] if f.newsletter else list(subs.values())
            return f.status in statuses
        return True

    return sorted(p["email"] for p in PEOPLE if keeps(p))


FILTERS = [
    SubscriberFilter(municipality="Aarhus"),
    SubscriberFilter(municipality="Ærø"),
    SubscriberFilter(role="borgmester"),
    SubscriberFilter(role="direktør"),
    SubscriberFilter(municipality="København", role="borgmester"),
    SubscriberFilter(newsletter="momentum"),
    SubscriberFilter(newsletter="momentum", status="confirmed"),
    SubscriberFilter(newsletter="bestyrelse", status="unsubscribed"),
    SubscriberFilter(newsletter="bestyrelse", status="pending", municipality="Aarhus"),
    SubscriberFilter(newsletter="momentum", status=STOPPED),
    SubscriberFilter(newsletter="momentum", role="direktør"),
    SubscriberFilter(status="pending"),
    SubscriberFilter(status=STOPPED),
    SubscriberFilter(municipality="Aarhus", query="example"),
    SubscriberFilter(municipality="Nowhere"),
    SubscriberFilter(newsletter="no-such-newsletter"),
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: repr(f)[17:-1])
def test_a_filter_finds_its_rows_in_address_order_page_after_page(population, f):
    want = expected(f)
    seen: list[str] = []
    after = None
    with population.app_context():
        for _ in range(20):
            page = services.search(f, after=after, per_page=4)
            seen += [r.email for r in page.rows]
            # Every page counts the whole filter, not what is left after `after`.
            if not services.search_term(f.query):
                assert (page.total, page.capped) == (len(want), False)
            after = page.next_after
            if after is None:
                break
            db.session.remove()
    assert seen == want


@pytest.mark.parametrize(
    "f",
    [
        SubscriberFilter(newsletter="momentum"),
        SubscriberFilter(newsletter="momentum", status="confirmed"),
        SubscriberFilter(newsletter="bestyrelse", status="pending", municipality="Aarhus"),
        SubscriberFilter(municipality="Aarhus"),
        SubscriberFilter(role="borgmester"),
    ],
    ids=lambda f: repr(f)[17:-1],
)
def test_a_filters_count_stops_at_the_cap(population, monkeypatch, f):
    matches = len(expected(f))
    with population.app_context():
        monkeypatch.setattr(services, "COUNT_CAP", matches - 1)
        page = services.search(f, per_page=2)
        assert (page.total, page.capped) == (matches - 1, True)
        monkeypatch.setattr(services, "COUNT_CAP", matches)
        page = services.search(f, per_page=2)
        assert (page.total, page.capped) == (matches, False)


def test_the_newsletter_filters_count_on_the_page_is_its_subscribers(population, client):
    from tests.test_staff import ADMIN, login, make_staff

    make_staff(population, ADMIN, "admin")
    login(client, ADMIN)
    want = len(expected(SubscriberFilter(newsletter="momentum", status="confirmed")))
    page = client.get("/staff/subscribers?newsletter=momentum&status=confirmed")
    assert f"Abonnenter fundet: {want}" in page.get_data(as_text=True)


def _plan(stmt) -> str:
    compiled = stmt.compile(db.engine)
    connection = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
        ).all()
        return " | ".join(str(row[-1]) for row in rows)
    # A handful of rows: the planner would rightly scan and sort them; forbid both to
    # see that an index answers the filter in address order at all.
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    connection.exec_driver_sql("SET LOCAL enable_sort = off")
    rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).all()
    return " | ".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("f", "index"),
    [
        (SubscriberFilter(municipality="Aarhus"), "ix_subscribers_municipality_email_role"),
        (SubscriberFilter(role="borgmester"), "ix_subscribers_role_email"),
        # Both: the municipality's index, which holds the role (SQLite has no statistics
        # to tell it which is the rarer).
        (
            SubscriberFilter(municipality="Aarhus", role="borgmester"),
            "ix_subscribers_municipality_email_role",
        ),
    ],
)
def test_a_filtered_page_walks_an_index_in_address_order(population, f, index):
    with population.app_context():
        stmt = services._filtered(f).order_by(Subscriber.email).limit(51)
        plan = _plan(stmt)
        # PostgreSQL's planner picks among the ordered walks by its statistics, which
        # other tests' rows leave behind (the address's own index, filtered, is one);
        # SQLite has none and must take the filter's index.
        if db.engine.dialect.name == "sqlite":
            assert index in plan, plan
        # No sort of the matching rows: the index gives them in address order.
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
        db.session.rollback()


def test_the_newsletter_filters_count_reads_the_subscriptions_index(population):
    with population.app_context():
        f = SubscriberFilter(newsletter="momentum", status="confirmed")
        statements: list[str] = []

        from sqlalchemy import event

        def grab(conn, cursor, statement, *args) -> None:
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", grab)
        try:
            services.search(f, per_page=2)
        finally:
            event.remove(db.engine, "before_cursor_execute", grab)
        counts = [s for s in statements if "count(" in s]
        assert len(counts) == 1
        assert "FROM subscriptions" in counts[0] and "subscribers" not in counts[0]


def test_migration_0027_down_and_up_keeps_the_filters(population):
    def indexes() -> set[str]:
        if db.engine.dialect.name == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'subscribers'"
        else:
            sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'subscribers'"
        return set(db.session.scalars(text(sql)))

    def email_statistics() -> int | None:
        """PostgreSQL's statistics target of subscribers.email (None: the default)."""
        if db.engine.dialect.name != "postgresql":
            return None
        value = db.session.scalar(
            text(
                "SELECT attstattarget FROM pg_attribute"
                " WHERE attrelid = 'subscribers'::regclass AND attname = 'email'"
            )
        )
        return None if value is None or value < 0 else value

    with population.app_context():
        db.session.remove()
        downgrade(revision="0026")
        try:
            found = indexes()
            assert {"ix_subscribers_municipality", "ix_subscribers_role"} <= found
            assert "ix_subscribers_municipality_email_role" not in found
            assert email_statistics() is None
            db.session.remove()
        finally:
            upgrade()
        found = indexes()
        assert {"ix_subscribers_municipality_email_role", "ix_subscribers_role_email"} <= found
        assert not {"ix_subscribers_municipality", "ix_subscribers_role"} & found
        sqlite = db.engine.dialect.name == "sqlite"
        assert email_statistics() == (None if sqlite else 1000)
        page = services.search(SubscriberFilter(municipality="Ærø"))
        assert [r.email for r in page.rows] == expected(SubscriberFilter(municipality="Ærø"))
        assert db.session.scalar(select(Subscriber.id).limit(1)) is not None


def test_a_search_with_an_at_pages_in_address_order(app: Flask):
    addresses = sorted(
        [f"{name}@kl.dk" for name in ("anna", "bo", "carl", "dorte", "erik")]
        + ["anna@kl.dkx.org", "kl.dk@example.dk", "x@kk.dk", "bo@kl.d"]
    )
    with app.app_context():
        db.session.execute(
            insert(Subscriber),
            [{"email": a, "name": "", "created_at": AT, "updated_at": AT} for a in addresses],
        )
        db.session.commit()
        want = [a for a in addresses if "@kl.dk" in a]
        seen: list[str] = []
        after = None
        while True:
            page = services.search(SubscriberFilter(query="@KL.DK"), after=after, per_page=2)
            seen += [r.email for r in page.rows]
            after = page.next_after
            if after is None:
                break
        assert seen == want
        page = services.search(SubscriberFilter(query="bo@kl.dk"))
        assert [r.email for r in page.rows] == ["bo@kl.dk"]
        page = services.search(SubscriberFilter(query="@kl.dk", municipality="Aarhus"))
        assert page.rows == []
