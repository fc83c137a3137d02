"""Where the time of one subscribe POST goes: a CPU breakdown, in process, no server.

    .venv/bin/python benchmarks/profile_subscribe.py [--requests N] [--database sqlite|postgresql]
                                                     [--tree]

Builds the same fresh database as subscribe_load.py, then sends N subscribe POSTs (each a
new address) through Flask's test client in one thread, with light wrappers around the
parts of the request that matter. Each part's time is exclusive (a part called inside
another is subtracted from the outer one). Prints CPU and wall milliseconds per request
for each part, the time each request keeps its write transaction open (on SQLite that is
the database-wide write lock), and the same total for the two bare one-INSERT views
(Flask-SQLAlchemy, and the raw DB driver; see bare_app.py).
--tree adds a pyinstrument call tree (pip install pyinstrument into the venv).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import subscribe_load as sl  # noqa: E402
from harness.common import add_quick_argument, apply_quick  # noqa: E402
from harness.databases import add_database_arguments, drop_databases, fresh_database  # noqa: E402

CPU = time.thread_time
WALL = time.perf_counter


class Parts:
    """Exclusive CPU and wall time per named part of a request."""

    def __init__(self) -> None:
        self.cpu: Counter = Counter()
        self.wall: Counter = Counter()
        self.calls: Counter = Counter()
        self.stack: list[list] = []  # [part, cpu mark, wall mark]
        self.txn_start: float | None = None
        self.txn_times: list[float] = []

    def wrap(self, part: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            cpu, wall = CPU(), WALL()
            if self.stack:
                outer = self.stack[-1]
                self.cpu[outer[0]] += cpu - outer[1]
                self.wall[outer[0]] += wall - outer[2]
            self.stack.append([part, cpu, wall])
            self.calls[part] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                cpu, wall = CPU(), WALL()
                name, cpu0, wall0 = self.stack.pop()
                self.cpu[name] += cpu - cpu0
                self.wall[name] += wall - wall0
                if self.stack:
                    self.stack[-1][1], self.stack[-1][2] = cpu, wall

        return timed

    def patch(self, owner, attr: str, part: str) -> None:
        setattr(owner, attr, self.wrap(part, getattr(owner, attr)))

    def reset(self) -> None:
        self.cpu.clear()
        self.wall.clear()
        self.calls.clear()
        self.txn_times.clear()


def instrument(parts: Parts) -> None:
    """Wrap the parts of a subscribe request. Must run before create_app()."""
    import flask_limiter
    import flask_wtf.csrf
    import wtforms.form
    from sqlalchemy.engine import default
    from sqlalchemy.orm import Session

    from newsletters.mailing import compose, outbox
    from newsletters.subscriptions import forms, intake, links, mails, routes

    driver = "DB driver (sqlite3/psycopg: execute, commit)"
    for attr in ("do_execute", "do_executemany", "do_execute_no_params", "do_commit"):
        parts.patch(default.DefaultDialect, attr, driver)
    queries = "SQLAlchemy: queries (build, run, load objects)"
    for attr in ("execute", "get"):
        parts.patch(Session, attr, queries)
    for fn in ("lock_subscriber", "subscriptions_of"):
        parts.patch(intake, fn, queries)
    parts.patch(mails, "may_mail", queries)
    parts.patch(routes, "public_newsletters", queries)
    unit_of_work = "SQLAlchemy: flush + commit"
    for attr in ("flush", "commit"):
        parts.patch(Session, attr, unit_of_work)
    parts.patch(intake, "record_event", unit_of_work)
    parts.patch(compose, "render_template", "mail: Jinja templates (txt + html)")
    parts.patch(compose, "inline_css", "mail: CSS inlining (css_inline)")
    parts.patch(mails, "render_mail", "mail: force_locale around rendering")
    parts.patch(outbox, "build_message", "mail: MIME message (email package)")
    parts.patch(links, "sign", "links: sign 2 tokens (itsdangerous)")
    parts.patch(intake, "normalise_email", "email address validation (x2)")
    parts.patch(forms, "normalise_email", "email address validation (x2)")
    parts.patch(wtforms.form.Form, "validate", "WTForms: build + validate the form")
    parts.patch(forms.SubscribeForm, "__init__", "WTForms: build + validate the form")
    parts.patch(flask_wtf.csrf.CSRFProtect, "protect", "CSRF check (Flask-WTF)")
    parts.patch(flask_limiter.Limiter, "_check_request_limit", "rate limit (Flask-Limiter)")

    # How long each request keeps a write transaction open: first INSERT/UPDATE/DELETE
    # until its COMMIT returns. On SQLite the whole database is locked for writers then.
    execute, commit = default.DefaultDialect.do_execute, default.DefaultDialect.do_commit

    def do_execute(self, cursor, statement, *args, **kwargs):
        if parts.txn_start is None and re.match(r"\s*(INSERT|UPDATE|DELETE)", statement, re.I):
            parts.txn_start = WALL()
        return execute(self, cursor, statement, *args, **kwargs)

    def do_commit(self, dbapi_connection):
        try:
            return commit(self, dbapi_connection)
        finally:
            if parts.txn_start is not None:
                parts.txn_times.append(WALL() - parts.txn_start)
                parts.txn_start = None

    default.DefaultDialect.do_execute = do_execute
    default.DefaultDialect.do_commit = do_commit


def csrf_of(client) -> str:
    html = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def form(token: str, email: str, args) -> dict:
    return {
        "csrf_token": token,
        "email": email,
        "name": args.name,
        "municipality": args.municipality,
        "newsletters": args.newsletters.split(","),
    }


def post_many(client, token: str, tag: str, n: int, args) -> tuple[float, float]:
    cpu, wall = CPU(), WALL()
    for i in range(n):
        response = client.post("/", data=form(token, f"p-{tag}-{i}@bench.example.org", args))
        if response.status_code != 303:
            raise SystemExit(f"POST / answered {response.status_code}, not 303")
    return (CPU() - cpu) / n, (WALL() - wall) / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--newsletters", default="momentum")
    p.add_argument("--municipality", default="Aarhus")
    p.add_argument("--name", default="Bench Bruger")
    add_database_arguments(p, pg_database="bench_subscribe_profile")
    p.add_argument("--tree", action="store_true", help="also print a pyinstrument call tree")
    add_quick_argument(p, "--requests 20, warm-ups of 10")
    args = p.parse_args()
    apply_quick(args, p, requests=20)

    tmp = Path(tempfile.mkdtemp(prefix="subscribe-profile-"))
    names = [args.pg_database, f"{args.pg_database}_bare"]
    try:
        app_db = fresh_database(args, tmp, names[0], "app.db")
        bare_db = fresh_database(args, tmp, names[1], "bare.db")
        target = sl.prepare_app(app_db, tmp, 5000)
        bare = sl.prepare_baseline(bare_db, tmp)
        os.environ.update({k: v for k, v in target.env.items() if k.startswith("NEWSLETTERS_")})
        os.environ["BARE_DATABASE_URL"] = bare.env["BARE_DATABASE_URL"]
        return profile(args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        drop_databases(args, names)


def profile(args) -> int:
    parts = Parts()
    instrument(parts)
    from newsletters import create_app

    app = create_app()
    client = app.test_client()
    token = csrf_of(client)
    post_many(client, token, "warm", 10 if args.quick else 100, args)
    parts.reset()
    n = args.requests
    cpu, wall = post_many(client, token, "measure", n, args)
    # Taken now: the wrappers around Session would also time the ORM baseline below.
    accounted = sum(parts.cpu.values())
    rows = sorted(parts.cpu.items(), key=lambda kv: -kv[1])
    rows.append(("rest: Flask/Werkzeug, test client, view + service code", cpu * n - accounted))
    part_wall, part_calls = dict(parts.wall), dict(parts.calls)
    txn = sorted(parts.txn_times)

    import bare_app

    bare = {}
    for mode in bare_app.MODES:
        bare_client = bare_app.create_app(mode).test_client()
        post_many(bare_client, "x", f"bare-{mode}-warm", 10 if args.quick else 200, args)
        bare[mode] = post_many(bare_client, "x", f"bare-{mode}-measure", n, args)
    print(
        f"\nOne subscribe POST, in process (Flask test client, one thread, {args.database}, "
        f"{n} requests, newsletters={args.newsletters})"
    )
    print(f"  {'part':<56} {'CPU ms':>7} {'%':>5} {'wall ms':>8} {'calls':>6}")
    for part, seconds in rows:
        wall_part = part_wall.get(part, wall * n - sum(part_wall.values()))
        print(
            f"  {part:<56} {seconds / n * 1000:7.2f} {seconds / (cpu * n) * 100:5.1f} "
            f"{wall_part / n * 1000:8.2f} {part_calls.get(part, 0) / n:6.1f}"
        )
    print(f"  {'total':<56} {cpu * 1000:7.2f} {100:5.1f} {wall * 1000:8.2f}")
    if txn:
        print(
            f"\n  write transaction open per request (first INSERT -> COMMIT): median "
            f"{txn[len(txn) // 2] * 1000:.2f} ms, p90 {txn[int(len(txn) * 0.9)] * 1000:.2f} ms"
            + (
                "; on SQLite no other request can write meanwhile, so all workers together "
                f"top out near {1 / txn[len(txn) // 2]:.0f} subscribes/s"
                if args.database == "sqlite"
                else ""
            )
        )
    print()
    for mode, label in (("orm", "Flask-SQLAlchemy"), ("driver", "raw DB driver")):
        bare_cpu, bare_wall = bare[mode]
        print(
            f"Bare one-INSERT view ({label}), same way: CPU {bare_cpu * 1000:.2f} ms, wall "
            f"{bare_wall * 1000:.2f} ms per request -> the app costs {cpu / bare_cpu:.1f}x "
            "the CPU"
        )
    if args.tree:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        post_many(client, token, "tree", min(n, 200), args)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
