"""Writing many rows at once, faster than SQLAlchemy's executemany; and naming many
values in one query (`among`).

For thousands of rows SQLAlchemy's executemany makes each row's defaults and processes
each value, and on PostgreSQL sends them as bound parameters of multi-row INSERTs: more
than the database's own work of writing them (an import's outbox rows and staged
subscribers, benchmarks/README.md). Here the caller hands plain values, already in the
form the driver takes, and they go in with COPY on PostgreSQL and with one executemany
of the driver itself on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Text, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from newsletters.extensions import db


def write_rows(
    connection: Connection, table: str, names: Sequence[str], values: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `values` (one tuple per row, in the order of `names`) into `table`, in the
    connection's transaction. The names are the caller's own, never a user's."""
    listed = ", ".join(names)
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
            for value in values:
                copy.write_row(value)
    else:
        marks = ", ".join("?" * len(names))
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({listed}) VALUES ({marks})",  # noqa: S608 - our names
            list(values),
        )


def among(column, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (values)`, the values as one parameter: on PostgreSQL
    `column = ANY(%s)` with an array, on SQLite `column IN (SELECT value FROM
    json_each(?))`. An IN list of 5 000 parameters cost psycopg a parse of the query
    text and the server a plan per chunk (most of a re-import's time there), and
    SQLAlchemy a bound parameter made and named per value (on SQLite a tenth of an
    invitation import's time)."""
    values = list(values)
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    listed = func.json_each(bindparam(None, json.dumps(values), type_=Text))
    return column.in_(select(listed.table_valued("value").c.value))
