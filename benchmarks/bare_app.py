"""The baseline for benchmarks/subscribe_load.py: a bare Flask view that does one INSERT.

One table, one view, no ORM, no extensions: what "Flask plus one write to the same kind
of database" costs on this machine. It takes the same form POST as the real subscribe
form (and ignores the fields it does not store), inserts one row and answers 303, so the
load generator sends byte-for-byte the same kind of request to both servers.

The database comes from BARE_DATABASE_URL:
  sqlite:////abs/path/bare.db              (stdlib sqlite3, same pragmas as the app)
  postgresql://user@host:port/dbname       (psycopg 3, the app's driver)

Create the table first (drops it if it exists):
  .venv/bin/python benchmarks/bare_app.py init
Serve it the way the benchmark does:
  BARE_DATABASE_URL=... .venv/bin/gunicorn --chdir benchmarks bare_app:app
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading

from flask import Flask, make_response, redirect, request

DATABASE_URL = os.environ.get("BARE_DATABASE_URL", "")

SQLITE_SCHEMA = """
CREATE TABLE subscribers (
    id INTEGER PRIMARY KEY,
    email VARCHAR(320) NOT NULL UNIQUE,
    name VARCHAR(200) NOT NULL,
    municipality VARCHAR(64) NOT NULL,
    created_at TIMESTAMP NOT NULL
)
"""
POSTGRES_SCHEMA = """
CREATE TABLE subscribers (
    id BIGSERIAL PRIMARY KEY,
    email VARCHAR(320) NOT NULL UNIQUE,
    name VARCHAR(200) NOT NULL,
    municipality VARCHAR(64) NOT NULL,
    created_at TIMESTAMP NOT NULL
)
"""
INSERT = "INSERT INTO subscribers (email, name, municipality, created_at) VALUES ({})"
SQLITE_INSERT = INSERT.format("?, ?, ?, CURRENT_TIMESTAMP")
POSTGRES_INSERT = INSERT.format("%s, %s, %s, CURRENT_TIMESTAMP")


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:///")


def _connect():
    """A new connection, set up like the real app's (see newsletters/extensions.py)."""
    if _is_sqlite(DATABASE_URL):
        # The app's engine: timeout 30 s, WAL, synchronous=NORMAL, foreign keys on.
        conn = sqlite3.connect(DATABASE_URL[len("sqlite:///") :], timeout=30)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn, SQLITE_INSERT
    if DATABASE_URL.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(DATABASE_URL), POSTGRES_INSERT
    raise SystemExit(
        f"BARE_DATABASE_URL must be sqlite:////path or postgresql://..., not {DATABASE_URL!r}"
    )


# One connection per worker thread, opened on first use and kept (what a pool gives the app).
_local = threading.local()


def _connection():
    if getattr(_local, "conn", None) is None:
        _local.conn, _local.insert = _connect()
    return _local.conn


app = Flask(__name__)


@app.get("/")
def index():
    # Only so the load generator can prepare both servers the same way (it reads a
    # session cookie and a csrf_token here); the bare view does not check them.
    response = make_response(
        '<form method="post"><input name="csrf_token" type="hidden" value="bare"></form>'
    )
    response.set_cookie("nl_session", "bare", httponly=True, samesite="Lax")
    return response


@app.post("/")
def subscribe():
    conn = _connection()
    conn.execute(
        _local.insert,
        (
            request.form["email"],
            request.form.get("name", ""),
            request.form.get("municipality", ""),
        ),
    )
    conn.commit()
    return redirect("/subscribed", code=303)


def init_schema() -> None:
    conn, _ = _connect()
    conn.execute("DROP TABLE IF EXISTS subscribers")
    conn.execute(SQLITE_SCHEMA if _is_sqlite(DATABASE_URL) else POSTGRES_SCHEMA)
    conn.commit()
    conn.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["init"]:
        raise SystemExit("usage: BARE_DATABASE_URL=... python benchmarks/bare_app.py init")
    init_schema()
