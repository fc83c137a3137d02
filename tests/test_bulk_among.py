"""`bulk.among`: a chunk's values as one parameter (PostgreSQL: an array; SQLite: JSON),
the same rows as an IN list whatever the values hold."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from newsletters.bulk import among
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber

ADDRESSES = [
    "a@kommune.dk",
    "o'brien+x=y@kommune.dk",
    'quote"d@kommune.dk',
    "comma,in@kommune.dk",
    "back\\slash@kommune.dk",
    "{brace}@kommune.dk",
    "borgmester@ærø.dk",
    "unit\x1fsep@kommune.dk",
    "NULL",
    "",
]


@pytest.mark.parametrize(
    "wanted",
    [
        [],
        ["a@kommune.dk"],
        ADDRESSES[:-2],
        ADDRESSES,
        ["nobody@kommune.dk", "borgmester@ærø.dk"],
    ],
)
def test_among_finds_exactly_the_rows_an_in_list_finds(app, wanted):
    with app.app_context():
        people = [Subscriber(email=address) for address in ADDRESSES]
        db.session.add_all(people)
        db.session.flush()
        by_email = set(
            db.session.scalars(select(Subscriber.email).where(among(Subscriber.email, wanted)))
        )
        assert by_email == set(wanted) & set(ADDRESSES)
        ids = [p.id for p in people if p.email in wanted] + [2**31 - 1, -1]
        by_id = set(db.session.scalars(select(Subscriber.email).where(among(Subscriber.id, ids))))
        assert by_id == set(wanted) & set(ADDRESSES)
        db.session.rollback()
        db.session.remove()
