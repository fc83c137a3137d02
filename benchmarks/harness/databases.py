"""A fresh database per benchmark: an SQLite file in the run's temp dir, or a PostgreSQL
database named bench_* (re-created, dropped again at the end; `test` is never touched)."""

from __future__ import annotations

import argparse
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .common import BenchmarkError, log

PG_DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
# Never touched, whatever --pg-database says: the test suite's and the system's databases.
PG_FORBIDDEN = {"test", "postgres", "template0", "template1", "root"}


def add_database_arguments(parser: argparse.ArgumentParser, pg_database: str | None) -> None:
    """--database sqlite|postgresql, --pg-server and (when given a default) --pg-database."""
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-server", default=PG_DEFAULT_SERVER, help=f"[{PG_DEFAULT_SERVER}]")
    if pg_database is not None:
        parser.add_argument(
            "--pg-database",
            default=pg_database,
            help=f"re-created and dropped; must start with bench_ [{pg_database}]",
        )


@dataclass
class Database:
    kind: str  # sqlite | postgresql
    url: str  # what the app gets
    name: str  # file or database name, for the report

    def connect(self):
        if self.kind == "sqlite":
            return sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30)
        import psycopg

        return psycopg.connect(self.url)

    def emails(self, table: str, column: str, prefix: str) -> list[str]:
        conn = self.connect()
        try:
            mark = "?" if self.kind == "sqlite" else "%s"
            rows = conn.execute(
                f"SELECT {column} FROM {table} WHERE {column} LIKE {mark}",  # noqa: S608
                (prefix + "%",),
            ).fetchall()
        finally:
            conn.close()
        return [r[0] for r in rows]

    def count(self, sql: str, params: tuple = ()) -> int:
        conn = self.connect()
        try:
            if self.kind != "sqlite":
                sql = sql.replace("?", "%s")
            return int(conn.execute(sql, params).fetchone()[0])
        finally:
            conn.close()

    def backend_pids(self) -> list[int]:
        """PostgreSQL server processes serving this database (for their CPU time)."""
        if self.kind != "postgresql":
            return []
        conn = self.connect()
        try:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        finally:
            conn.close()
        return [r[0] for r in rows]


def sqlite_database(path: Path) -> Database:
    return Database("sqlite", f"sqlite:///{path}", str(path))


def fresh_postgres_database(server: str, name: str) -> Database:
    import psycopg
    from psycopg import sql

    if name in PG_FORBIDDEN or not re.fullmatch(r"bench_[a-z0-9_]+", name):
        raise BenchmarkError(
            f"refusing to use PostgreSQL database {name!r}: "
            "benchmark databases must be named bench_* (and never `test`)"
        )
    try:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise BenchmarkError(
            f"cannot create PostgreSQL database {name} on {server}: {exc}"
        ) from exc
    return Database("postgresql", f"{server}/{name}", name)


def drop_postgres_database(server: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    if name in PG_FORBIDDEN or not name.startswith("bench_"):
        return
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def fresh_database(args: argparse.Namespace, tmp: Path, name: str, file: str) -> Database:
    """--database's choice: tmp/<file> on SQLite, else the database <name> re-created."""
    if args.database == "postgresql":
        return fresh_postgres_database(args.pg_server, name)
    return sqlite_database(tmp / file)


def drop_databases(args: argparse.Namespace, names: list[str]) -> None:
    """Drop the PostgreSQL databases of this run (nothing to do on SQLite); a failure is
    reported, not raised, so that it never hides the run's own outcome."""
    if args.database != "postgresql":
        return
    for name in names:
        try:
            drop_postgres_database(args.pg_server, name)
        except Exception as exc:  # noqa: BLE001
            log(f"could not drop {name}: {exc}")


def drop_all_tables(url: str) -> None:
    """Every table of the database at url, dropped (for a database given by URL)."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)
    engine.dispose()
