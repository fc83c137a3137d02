"""Segments: the condition an editor writes to send an edition to part of a newsletter's
readers, read strictly and turned into one SQL condition."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, insert, select

from newsletters.editions import segments
from newsletters.editions.segments import SegmentError
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from newsletters.subscriptions.municipalities import MUNICIPALITIES, REGIONS, region_of
from newsletters.timeutil import utcnow


def test_every_municipality_is_in_exactly_one_of_five_regions():
    assert len(REGIONS) == 5
    assert sum(len(m) for m in REGIONS.values()) == 98
    assert all(region_of(m) in REGIONS for m in MUNICIPALITIES)
    assert region_of("København") == "Hovedstaden" and region_of("Aalborg") == "Nordjylland"
    assert region_of("Ærø") == "Syddanmark" and region_of("Samsø") == "Midtjylland"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("region=Hovedstaden AND role=borgmester", "region=Hovedstaden AND role=borgmester"),
        ("REGION = hovedstaden and ROLE = Borgmester", "region=Hovedstaden AND role=borgmester"),
        ('region="Region Sjælland"', "region=Sjælland"),
        (
            '(kommune=aarhus ELLER kommune="ringkøbing-skjern") og ikke rolle=Direktør',
            "(municipality=Aarhus OR municipality=Ringkøbing-Skjern) AND NOT role=direktør",
        ),
        (
            "region=Nordjylland OR region=Sjælland AND role!=x",
            "region=Nordjylland OR (region=Sjælland AND role!=x)",
        ),
        ('role="kommunal direktør"', 'role="kommunal direktør"'),
        ("", None),
        ("   ", None),
    ],
)
def test_canonical_spelling(app: Flask, text: str, canonical: str | None):
    with app.test_request_context():
        assert segments.canonical(text) == canonical
        if canonical:
            assert segments.canonical(canonical) == canonical  # stable


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x=1", "Ukendt felt"),
        ("region=Fyn", "er ikke en region"),
        ("kommune=Atlantis", "er ikke en af de 98 kommuner"),
        ("role=", "slutter for tidligt"),
        ("(region=Hovedstaden", "slutter for tidligt"),
        ("region=Hovedstaden)", "kan ikke læses"),
        ("region Hovedstaden", "Forventede = eller !="),
        ("AND role=a", "Ukendt felt"),
        ("role=a AND", "slutter for tidligt"),
        ("role=a\r\nBcc: x", "én linje"),
        ("role=a\x00", "én linje"),
        ("role=" + "a" * 2000, "for langt"),
        ("(" * 30 + "role=a" + ")" * 30, "for mange niveauer"),
        ('role="unclosed', "kan ikke læses"),
    ],
)
def test_bad_segments_are_refused_in_danish(app: Flask, text: str, message: str):
    with (
        app.test_request_context(headers={"Accept-Language": "da"}),
        pytest.raises(SegmentError) as refused,
    ):
        segments.parse(text)
    assert message in str(refused.value)


def _people(app: Flask) -> None:
    now = utcnow()
    rows = [
        ("a@x.dk", "København", "Borgmester"),
        ("b@x.dk", "Gentofte", "borgmester"),
        ("c@x.dk", "Gentofte", "direktør"),
        ("d@x.dk", "Aarhus", "borgmester"),
        ("e@x.dk", "", ""),
    ]
    with app.app_context():
        db.session.execute(
            insert(Subscriber),
            [
                {
                    "email": e,
                    "name": "",
                    "municipality": m,
                    "role": r,
                    "locale": "da",
                    "token_version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for e, m, r in rows
            ],
        )
        db.session.commit()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region=Hovedstaden AND role=borgmester", {"a@x.dk", "b@x.dk"}),
        ("region=Hovedstaden", {"a@x.dk", "b@x.dk", "c@x.dk"}),
        ("kommune=Aarhus OR role=direktør", {"c@x.dk", "d@x.dk"}),
        ("NOT region=Hovedstaden", {"d@x.dk", "e@x.dk"}),
        ("role!=borgmester", {"c@x.dk", "e@x.dk"}),
        ("region=Nordjylland", set()),
    ],
)
def test_condition_selects_in_sql(app: Flask, text: str, expected: set[str]):
    _people(app)
    with app.app_context():
        condition = segments.condition(segments.parse(text))
        found = set(db.session.scalars(select(Subscriber.email).where(condition)))
        assert found == expected
        # It is one SQL condition: counting needs no rows in Python.
        count = db.session.scalar(select(func.count()).select_from(Subscriber).where(condition))
        assert count == len(expected)
