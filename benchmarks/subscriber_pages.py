"""The administrators' subscriber pages and the start of a send, at 100 000 subscribers.

Times (median of --repeat runs, in-process through Flask's test client, so the figures
are the server's own work without HTTP) for the subscriber list unfiltered, filtered by
newsletter + status, by municipality, by role, a search, the 50th page by keyset, one
subscriber's history and the audit log; then `start_send` of one edition to the 100 000
(the brief's bar: < 2 s), now with the suppression list's NOT EXISTS in its INSERT ...
SELECT and 1 000 suppressed addresses.

    .venv/bin/python benchmarks/subscriber_pages.py                        # SQLite
    .venv/bin/python benchmarks/subscriber_pages.py --database postgresql  # bench_admin_pages

On PostgreSQL it drops and re-creates the database `bench_admin_pages` on
postgresql://postgres@127.0.0.1:5432 (--pg-server) and drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp)
    if args.database == "postgresql":
        import psycopg

        name = "bench_admin_pages"
        with psycopg.connect(f"{args.pg_server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        url = f"{args.pg_server}/{name}"
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"

    from flask_migrate import upgrade
    from sqlalchemy import insert, select

    from newsletters import create_app
    from newsletters.catalog.services import newsletter_by_slug, seed_newsletters
    from newsletters.editions import editing, sending
    from newsletters.extensions import db
    from newsletters.staff import services as staff
    from newsletters.subscriptions.models import (
        Subscriber,
        Subscription,
        SubscriptionStatus,
        Suppression,
        SuppressionReason,
    )
    from newsletters.subscriptions.municipalities import MUNICIPALITIES
    from newsletters.subscriptions.suppression import address_hash
    from newsletters.timeutil import utcnow

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench-secret-key-0123456789",
            "SQLALCHEMY_DATABASE_URI": url,
            "WORKER_IN_PROCESS": False,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        }
    )
    rng = random.Random(7)
    with app.app_context():
        upgrade()
        seed_newsletters()
        staff.create_staff("admin@kl.dk", role="admin", password="bench-password-long")  # noqa: S106
        newsletters = [newsletter_by_slug(s).id for s in ("bestyrelse", "kl-nyheder", "momentum")]
        now = utcnow()
        started = time.perf_counter()
        batch = 10_000
        for start in range(0, args.subscribers, batch):
            rows = [
                {
                    "email": f"person{n:06d}@kommune{n % 98}.dk",
                    "name": f"Person {n}",
                    "municipality": MUNICIPALITIES[n % len(MUNICIPALITIES)],
                    "role": rng.choice(["borgmester", "byrådsmedlem", "medarbejder", ""]),
                    "locale": "da",
                    "token_version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(start, min(start + batch, args.subscribers))
            ]
            db.session.execute(insert(Subscriber), rows)
            ids = db.session.scalars(
                select(Subscriber.id).where(Subscriber.email.in_([r["email"] for r in rows]))
            ).all()
            db.session.execute(
                insert(Subscription),
                [
                    {
                        "subscriber_id": i,
                        "newsletter_id": newsletter,
                        "status": SubscriptionStatus.CONFIRMED
                        if rng.random() < 0.9
                        else SubscriptionStatus.UNSUBSCRIBED,
                        "requested_at": now,
                        "confirmed_at": now,
                    }
                    for i in ids
                    for newsletter in newsletters[: 1 + i % 3]
                ],
            )
            db.session.commit()
        suppressed = [f"person{n:06d}@kommune{n % 98}.dk" for n in range(0, args.subscribers, 100)]
        db.session.execute(
            insert(Suppression),
            [
                {
                    "address_hash": address_hash(a),
                    "email": a,
                    "reason": SuppressionReason.HARD_BOUNCE,
                    "note": "",
                    "created_at": now,
                    "bounce_count": 1,
                }
                for a in suppressed
            ],
        )
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(db.text("ANALYZE"))
            db.session.commit()
        print(f"{args.database}: {args.subscribers} subscribers loaded in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        some_id = db.session.scalar(select(Subscriber.id).offset(args.subscribers // 2).limit(1))
        db.session.remove()

    client = app.test_client()
    client.post("/staff/login", data={"email": "admin@kl.dk", "password": "bench-password-long"})
    # The 50th page: walk the keyset to find its `after`.
    after = None
    with app.app_context():
        after = db.session.scalar(
            select(Subscriber.email).order_by(Subscriber.email).offset(49 * 50 - 1).limit(1)
        )
    pages = {
        "list, unfiltered": "/staff/subscribers",
        "newsletter + status": "/staff/subscribers?newsletter=momentum&status=confirmed",
        "municipality": "/staff/subscribers?municipality=Aarhus",
        "role": "/staff/subscribers?role=borgmester",
        "search 'person0999'": "/staff/subscribers?q=person0999",
        "50th page (keyset)": f"/staff/subscribers?after={after}",
        "one history": f"/staff/subscribers/{some_id}",
        "audit log": "/staff/audit",
    }
    print(f"{'page':<24} {'median ms':>10} {'max ms':>8}")
    for label, path in pages.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        print(f"{label:<24} {statistics.median(times):>10.1f} {max(times):>8.1f}")

    with app.app_context():
        edition = editing.create_draft(
            newsletter_slug="bestyrelse", subject="Benchmark", body_markdown="x", created_by=""
        )
        t0 = time.perf_counter()
        recipients = sending.start_send(edition.id)
        took = time.perf_counter() - t0
        print(f"start_send: {recipients} deliveries in {took:.2f} s (bar: < 2 s), "
              f"{len(suppressed)} suppressed addresses excluded")  # fmt: skip
        db.session.remove()
        db.engine.dispose()
    if args.database == "postgresql":
        import psycopg

        with psycopg.connect(f"{args.pg_server}/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_admin_pages")


if __name__ == "__main__":
    main()
