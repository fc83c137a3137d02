"""The baselines for benchmarks/subscribe_load.py: a bare Flask view that does one INSERT.

One table, one view: what "Flask plus one write to the same kind of database" costs on
this machine. It takes the same form POST as the real subscribe form (and ignores the
fields it does not store), inserts one row and answers 303, so the load generator sends
byte-for-byte the same kind of request to every server.

BARE_MODE says how the view does its INSERT:
  orm     (default) the way a Flask view in this codebase does it: Flask-SQLAlchemy, a
          small declarative model, `db.session.add(Subscriber(...)); db.session.commit()`,
          with the app's engine options (pool_pre_ping; on SQLite a 30 s busy timeout and
          the WAL / synchronous=NORMAL / foreign_keys pragmas from a connect event; on
          PostgreSQL the postgresql+psycopg driver). The judged baseline.
  driver  no ORM, no extensions: the DB driver straight (stdlib sqlite3 with the same
          pragmas, or psycopg 3) on a connection kept per thread. Shown for transparency.

The database comes from BARE_DATABASE_URL:
  sqlite:////abs/path/bare.db
  postgresql://user@host:port/dbname

Create the table first (drops it if it exists; the same table for both modes):
  BARE_DATABASE_URL=... .venv/bin/python benchmarks/bare_app.py init
Serve it the way the benchmark does:
  BARE_MODE=orm BARE_DATABASE_URL=... .venv/bin/gunicorn --chdir benchmarks bare_app:app
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from datetime import UTC, datetime

from flask import Flask, make_response, redirect, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MODES = ("orm", "driver")
DATABASE_URL = os.environ.get("BARE_DATABASE_URL", "")
MODE = os.environ.get("BARE_MODE", "orm")

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


def _check_url(url: str) -> None:
    if not (_is_sqlite(url) or url.startswith("postgresql://")):
        raise SystemExit(
            f"BARE_DATABASE_URL must be sqlite:////path or postgresql://..., not {url!r}"
        )


# --------------------------------------------------------------------------- driver mode


def _connect(url: str):
    """A new DB-API connection, set up like the real app's (see newsletters/extensions.py)."""
    _check_url(url)
    if _is_sqlite(url):
        # The app's engine: timeout 30 s, WAL, synchronous=NORMAL, foreign keys on.
        conn = sqlite3.connect(url[len("sqlite:///") :], timeout=30)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn, SQLITE_INSERT
    import psycopg

    return psycopg.connect(url), POSTGRES_INSERT


# One connection per worker thread, opened on first use and kept (what a pool gives the app).
_local = threading.local()


def _driver_insert(url: str, email: str, name: str, municipality: str) -> None:
    if getattr(_local, "conn", None) is None:
        _local.conn, _local.insert = _connect(url)
    _local.conn.execute(_local.insert, (email, name, municipality))
    _local.conn.commit()


# --------------------------------------------------------------------------- ORM mode


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Subscriber(db.Model):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    municipality: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """The app's connect event (newsletters/extensions.py), verbatim."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _orm_config(url: str) -> dict:
    """The app's engine settings (newsletters/config.py and create_app)."""
    options: dict = {"pool_pre_ping": True}
    if _is_sqlite(url):
        options["connect_args"] = {"timeout": 30}
    else:
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return {"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": options}


# --------------------------------------------------------------------------- the app


def create_app(mode: str = MODE, url: str = DATABASE_URL) -> Flask:
    if mode not in MODES:
        raise SystemExit(f"BARE_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    _check_url(url)
    app = Flask(__name__)

    @app.get("/")
    def index():
        # Only so the load generator can prepare every server the same way (it reads a
        # session cookie and a csrf_token here); the bare view does not check them.
        response = make_response(
            '<form method="post"><input name="csrf_token" type="hidden" value="bare"></form>'
        )
        response.set_cookie("nl_session", "bare", httponly=True, samesite="Lax")
        return response

    if mode == "orm":
        app.config.update(_orm_config(url))
        db.init_app(app)

        @app.post("/")
        def subscribe():
            db.session.add(
                Subscriber(
                    email=request.form["email"],
                    name=request.form.get("name", ""),
                    municipality=request.form.get("municipality", ""),
                )
            )
            db.session.commit()
            return redirect("/subscribed", code=303)

    else:

        @app.post("/")
        def subscribe():
            _driver_insert(
                url,
                request.form["email"],
                request.form.get("name", ""),
                request.form.get("municipality", ""),
            )
            return redirect("/subscribed", code=303)

    return app


def init_schema(url: str = DATABASE_URL) -> None:
    conn, _ = _connect(url)
    conn.execute("DROP TABLE IF EXISTS subscribers")
    conn.execute(SQLITE_SCHEMA if _is_sqlite(url) else POSTGRES_SCHEMA)
    conn.commit()
    conn.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["init"]:
        raise SystemExit("usage: BARE_DATABASE_URL=... python benchmarks/bare_app.py init")
    init_schema()
else:
    # gunicorn bare_app:app, or `import bare_app` with BARE_DATABASE_URL set.
    app = create_app()
