"""The report and archive pages at 100 000 deliveries (bar: each under 100 ms).

Times (median of --repeat runs, in-process through Flask's test client, so the figures
are the server's own work without HTTP) of an edition's report page and its chart, the
newsletter's report page and its three charts, and the public archive and its Atom
feed, after one edition was sent to --deliveries subscribers (with bounces, withdrawals
from its links and counted clicks) and --editions more were sent before it. The send is
finished as the worker finishes one (lifecycle.finish_complete_editions, which counts
and keeps its figures); that step's time is printed too, and the edition report once
more with its figures counted from the deliveries (as for a send still running; shown,
not judged).

    .venv/bin/python benchmarks/report_pages.py                        # SQLite
    .venv/bin/python benchmarks/report_pages.py --database postgresql  # bench_report_pages
    .venv/bin/python benchmarks/report_pages.py --profile  # + each page's SQL, timed

On PostgreSQL it drops and re-creates the database `bench_report_pages` on
postgresql://postgres@127.0.0.1:5432 (--pg-server) and drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from harness.app import admin_client, in_process_app
from harness.common import ROOT, add_quick_argument, apply_quick
from harness.databases import add_database_arguments, drop_databases, fresh_database
from harness.report import Table
from harness.seeding import insert_subscribers, subscriber_row

sys.path.insert(0, str(ROOT))
BAR_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_arguments(parser, pg_database="bench_report_pages")
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--editions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the table, each page once more with every SQL statement timed",
    )
    add_quick_argument(parser, "--deliveries 2000 --editions 10 --repeat 2")
    args = parser.parse_args()
    apply_quick(args, parser, deliveries=2000, editions=10, repeat=2)
    try:
        failed = run(args)
    finally:
        drop_databases(args, [args.pg_database])
    sys.exit(1 if failed else 0)


def run(args: argparse.Namespace) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp)
    url = fresh_database(args, tmp, args.pg_database, "bench.db").url

    from sqlalchemy import delete, insert, select, update

    from newsletters.bounces.models import Bounce, BounceKind
    from newsletters.catalog.models import Newsletter
    from newsletters.catalog.services import newsletter_by_slug
    from newsletters.editions import lifecycle
    from newsletters.editions.models import (
        Delivery,
        DeliveryStatus,
        Edition,
        EditionLink,
        EditionStatus,
    )
    from newsletters.extensions import db
    from newsletters.subscriptions.models import (
        ConsentAction,
        ConsentEvent,
        Subscriber,
        Subscription,
        SubscriptionStatus,
    )
    from newsletters.subscriptions.municipalities import MUNICIPALITIES
    from newsletters.timeutil import utcnow

    app = in_process_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench-secret-key-0123456789",
            "SQLALCHEMY_DATABASE_URI": url,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        }
    )
    n = args.deliveries
    started = time.perf_counter()
    with app.app_context():
        board = newsletter_by_slug("bestyrelse")
        db.session.execute(
            update(Newsletter).where(Newsletter.id == board.id).values(engagement_counting=True)
        )
        now = utcnow()
        batch = 10_000
        insert_subscribers(
            [
                subscriber_row(
                    f"person{i:07d}@kommune{i % 98}.dk",
                    "",
                    MUNICIPALITIES[i % 98],
                    now,
                    role="borgmester" if i % 10 == 0 else "",
                )
                for i in range(n)
            ]
        )
        ids = db.session.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        for start in range(0, n, batch):
            db.session.execute(
                insert(Subscription),
                [
                    {
                        "subscriber_id": sid,
                        "newsletter_id": board.id,
                        "status": SubscriptionStatus.CONFIRMED,
                        "requested_at": now - timedelta(days=sid % 180),
                        "confirmed_at": now - timedelta(days=sid % 180),
                    }
                    for sid in ids[start : start + batch]
                ],
            )
        subscription_ids = db.session.scalars(
            select(Subscription.id).order_by(Subscription.id)
        ).all()
        for start in range(0, n, batch):
            db.session.execute(
                insert(ConsentEvent),
                [
                    {
                        "subscription_id": sub,
                        "action": ConsentAction.CONFIRMED,
                        "method": "confirm_link",
                        "at": now - timedelta(days=sub % 180),
                    }
                    for sub in subscription_ids[start : start + batch]
                ],
            )
        # Earlier sends, for the archive.
        for k in range(args.editions):
            db.session.add(
                Edition(
                    newsletter_id=board.id,
                    subject=f"Nyt fra bestyrelsesmødet nr. {k}",
                    body_markdown="Tekst",
                    status=EditionStatus.SENT,
                    started_at=now - timedelta(days=k + 1),
                    finished_at=now - timedelta(days=k + 1),
                    recipients=n,
                )
            )
        # Sending until its deliveries are in: then finished as the worker finishes a
        # send (lifecycle.finish_complete_editions, which keeps its figures).
        edition = Edition(
            newsletter_id=board.id,
            subject="Nyt fra bestyrelsesmødet",
            body_markdown="Tekst",
            status=EditionStatus.SENDING,
            started_at=now,
            recipients=n,
        )
        db.session.add(edition)
        db.session.flush()
        edition_id = edition.id
        for start in range(0, n, batch):
            db.session.execute(
                insert(Delivery),
                [
                    {
                        "edition_id": edition_id,
                        "subscriber_id": sid,
                        "status": DeliveryStatus.FAILED if sid % 200 == 0 else DeliveryStatus.SENT,
                        "attempts": 1,
                        "next_attempt_at": now,
                        "sent_at": None if sid % 200 == 0 else now + timedelta(seconds=sid // 50),
                        "possible_duplicates": 1 if sid % 5000 == 0 else 0,
                    }
                    for sid in ids[start : start + batch]
                ],
            )
        delivery_ids = db.session.execute(
            select(Delivery.id, Delivery.subscriber_id)
            .where(Delivery.edition_id == edition_id)
            .order_by(Delivery.id)
        ).all()
        db.session.execute(
            insert(Bounce),
            [
                {
                    "subscriber_id": sid,
                    "delivery_id": did,
                    "kind": BounceKind.HARD if did % 2 else BounceKind.SOFT,
                    "status": "5.1.1",
                    "source": "dsn",
                    "at": now,
                }
                for did, sid in delivery_ids[:: max(1, n // 500)]
            ],
        )
        db.session.execute(
            insert(ConsentEvent),
            [
                {
                    "subscription_id": sub,
                    "action": ConsentAction.WITHDRAWN,
                    "method": "one_click",
                    "edition_id": edition_id,
                    "at": now,
                }
                for sub in subscription_ids[:: max(1, n // 300)]
            ],
        )
        db.session.execute(
            insert(EditionLink),
            [
                {
                    "edition_id": edition_id,
                    "url_hash": f"{k:064d}",
                    "url": f"https://www.kl.dk/{k}",
                    "clicks": k * 7,
                }
                for k in range(12)
            ],
        )
        db.session.commit()
        t0 = time.perf_counter()
        assert lifecycle.finish_complete_editions() == [edition_id]
        finish_ms = (time.perf_counter() - t0) * 1000
    setup = time.perf_counter() - started

    client = admin_client(app)
    pages = [
        ("edition report", f"/staff/editions/{edition_id}/report"),
        ("edition chart (per minute)", f"/staff/editions/{edition_id}/report/per-minute.svg"),
        ("newsletter report", "/staff/newsletters/bestyrelse/report"),
        ("newsletter chart (readers)", "/staff/newsletters/bestyrelse/report/readers.svg"),
        ("newsletter chart (weekly)", "/staff/newsletters/bestyrelse/report/weekly.svg"),
        ("newsletter chart (sources)", "/staff/newsletters/bestyrelse/report/sources.svg"),
        ("public archive", "/newsletters/bestyrelse/archive"),
        ("public archive, page 5", "/newsletters/bestyrelse/archive?page=5"),
        ("archive Atom feed", "/newsletters/bestyrelse/archive.atom"),
    ]
    table = Table(
        f"report and archive pages, {args.database}, {n:,} deliveries, "
        f"{args.editions + 1} sent editions (set-up {setup:.1f} s), median of {args.repeat}",
        judged=not args.quick,
    )
    for label, path in pages:
        times = []
        for _ in range(args.repeat + 1):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{path}: HTTP {response.status_code}")
        median = statistics.median(times[1:])  # the first warms the caches
        table.add(label, f"{median:.1f} ms", "", f"< {BAR_MS:.0f} ms", median < BAR_MS)
    table.add("finishing the send (its figures counted and kept once)", f"{finish_ms:.0f} ms")
    # The same page for a send whose figures are not kept (one still sending, or
    # cancelled): counted from the deliveries on every view. Shown, not judged.
    from newsletters.editions import summaries
    from newsletters.editions.models import EditionSendMinute, EditionSendSummary

    with app.app_context():
        for model in (EditionSendMinute, EditionSendSummary):
            db.session.execute(delete(model).where(model.edition_id == edition_id))
        db.session.commit()
    live_path = f"/staff/editions/{edition_id}/report"
    times = []
    for _ in range(args.repeat + 1):
        t0 = time.perf_counter()
        client.get(live_path)
        times.append((time.perf_counter() - t0) * 1000)
    table.add(
        "edition report, figures counted live (a running send)",
        f"{statistics.median(times[1:]):.1f} ms",
    )
    with app.app_context():
        summaries.summarise(edition_id)
        db.session.commit()
    table.print()
    if args.profile:
        profile(app, client, pages)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)  # the SQLite file: 70 MB at 100 000
    return table.failed


def profile(app, client, pages: list[tuple[str, str]]) -> None:
    """Each page once more: its time, the time spent in SQL statements (from the cursor's
    execute to its return, fetching included for the drivers that fetch eagerly) and the
    slowest statements; the rest is Python (ORM, templates, charts)."""
    from sqlalchemy import event

    from newsletters.extensions import db

    timings: list[tuple[float, str]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("started", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):
        took = (time.perf_counter() - conn.info["started"].pop()) * 1000
        timings.append((took, " ".join(statement.split())))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for label, path in pages:
            timings.clear()
            t0 = time.perf_counter()
            client.get(path)
            total = (time.perf_counter() - t0) * 1000
            sql = sum(t for t, _ in timings)
            print(f"\n{label}: {total:.1f} ms, SQL {sql:.1f} ms in {len(timings)} statements")
            for took, statement in sorted(timings, reverse=True)[:4]:
                print(f"  {took:7.1f} ms  {statement[:150]}")
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


if __name__ == "__main__":
    main()
