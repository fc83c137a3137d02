"""Column types the models share."""

from __future__ import annotations

import enum

from sqlalchemy import Enum


def value_enum(cls: type[enum.Enum], name: str) -> Enum:
    """A string enum stored by its values ("sent", not "SENT"), as VARCHAR(20) with a
    named CHECK constraint: the same on SQLite and PostgreSQL, and a new value is a
    reviewable migration, not an ALTER TYPE."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda e: [m.value for m in e],
    )
