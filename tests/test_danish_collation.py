"""A PostgreSQL database made with a Danish collation, as a municipality's server may be
(ICU da-DK here; glibc's da_DK.UTF-8 sorts "aa" the same way): the migrations run on it,
and addresses compare byte by byte (migration 0030), so the search by an address's first
characters finds "aarhus..." for "a", where Danish order puts "aa" after "z"."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletters import create_app
from newsletters.admin import services
from newsletters.admin.services import SubscriberFilter
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from tests.conftest import base_config

URL = os.environ.get("NEWSLETTERS_TEST_DATABASE_URL", "")
DANISH = "test_danish_collation"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL.startswith("postgresql"), reason="a PostgreSQL server's collation"),
]


@pytest.fixture
def danish_database():
    server = create_engine(
        make_url(URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with server.connect() as connection:
        if not connection.scalar(text("SELECT 1 FROM pg_collation WHERE collname = 'da-DK-x-icu'")):
            pytest.skip("this PostgreSQL server has no ICU collation for Danish")
        connection.execute(text(f"DROP DATABASE IF EXISTS {DANISH}"))
        connection.execute(
            text(
                f"CREATE DATABASE {DANISH} TEMPLATE template0 ENCODING 'UTF8' "
                "LOCALE_PROVIDER icu ICU_LOCALE 'da-DK' LOCALE 'C.UTF-8'"
            )
        )
    try:
        yield make_url(URL).set(database=DANISH).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {DANISH} WITH (FORCE)"))
        server.dispose()


def test_a_search_by_the_first_letters_finds_aarhus_in_a_danish_database(danish_database):
    app = create_app(base_config(danish_database))
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        # The database sorts Danish: "aa" after "z".
        assert db.session.scalar(text("SELECT 'aarhus' > 'zebra'"))
        db.session.add_all(
            Subscriber(email=e, name=n)
            for e, n in [
                ("aarhus.borgmester@aarhus.dk", "Anders"),
                ("anna@kl.dk", "Anna"),
                ("zebra@kl.dk", "Zeb"),
            ]
        )
        db.session.commit()
        for term, expected in [
            ("a", ["aarhus.borgmester@aarhus.dk", "anna@kl.dk"]),
            ("aa", ["aarhus.borgmester@aarhus.dk"]),
            ("z", ["zebra@kl.dk"]),
        ]:
            page = services.search(SubscriberFilter(query=term))
            assert [row.email for row in page.rows] == expected, term
        # The list in byte order, as SQLite shows it.
        page = services.search(SubscriberFilter())
        assert [row.email for row in page.rows] == [
            "aarhus.borgmester@aarhus.dk",
            "anna@kl.dk",
            "zebra@kl.dk",
        ]
        db.session.remove()
        db.engine.dispose()
