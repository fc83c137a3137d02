"""Webhooks: events delivered per second to a receiver on loopback, beside a bare loop of
POSTs to the same receiver in the same run.

    .venv/bin/python benchmarks/webhooks.py [--database sqlite|postgresql] [--events 2000]
                                            [--endpoints 4] [--concurrency 4] [--repeat 3]

One round:

1. a receiver in a separate process (`python -m tests.support.hookserver PORT`: a
   ThreadingHTTPServer that reads each body and answers 204, keep-alive);
2. the baselines: the same number of POSTs of a prebuilt signed body of the same size,
   with one httpx client (keep-alive): one after the other ("bare loop"), and spread
   over --endpoints threads, one per endpoint ("bare threads");
3. the app on a fresh database (SQLite file in a temp dir, or the PostgreSQL database
   `bench_webhooks`, dropped and created, dropped again at the end), migrated, with
   --endpoints endpoints on the receiver; --events events queued for each (not timed:
   queueing is part of the transaction that reports the change), then the worker's job
   (`delivery.deliver_due`, what the webhooks lane runs) until nothing is due: claim
   under a lease, sign (Standard Webhooks), POST through the guarded transport with its
   deadline, record each outcome in its own transaction.

The best round of each side is taken (the machine is shared). Exit status 0, or 2 when
it could not run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.common import add_quick_argument, apply_quick

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_DATABASE = "bench_webhooks"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.hookserver", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(2)


def sample_body() -> str:
    from newsletters.webhooks.services import envelope

    return envelope(
        "msg_" + "0" * 32,
        "subscription.confirmed",
        "2026-12-03T08:00:00.000000Z",
        {
            "subscriber_id": 123456,
            "email": "borgmester@aarhus.dk",
            "name": "Anders Aarhus",
            "municipality": "Aarhus Kommune",
            "newsletter": "bestyrelse",
            "method": "confirm_link",
            "at": "2026-12-03T08:00:00+00:00",
        },
    )


def bare(port: int, total: int, threads: int) -> float:
    """Seconds for `total` signed POSTs, over `threads` threads (one client)."""
    import httpx
    from standardwebhooks.webhooks import Webhook

    from newsletters.webhooks.services import new_secret

    body = sample_body()
    hook = Webhook(new_secret())
    client = httpx.Client(
        limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    )

    def run(n: int, path: str) -> None:
        from datetime import UTC, datetime

        for _ in range(n):
            now = datetime.now(UTC)
            headers = {
                "webhook-id": "msg_x",
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": hook.sign("msg_x", now, body),
                "content-type": "application/json",
            }
            response = client.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers)
            assert 200 <= response.status_code < 300

    started = time.perf_counter()
    workers = [
        threading.Thread(target=run, args=(total // threads, f"/e{i}")) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    client.close()
    return seconds


def database_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        path = tmp / "bench.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    return f"{PG_SERVER}/{PG_DATABASE}"


def drop_pg() -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")


def app_round(
    url: str, port: int, events: int, endpoints: int, concurrency: int, tmp: Path
) -> float:
    """Seconds for the worker's job to deliver events x endpoints."""
    os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp / "instance")
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from newsletters import create_app
    from newsletters.extensions import db
    from newsletters.webhooks import delivery, services
    from newsletters.webhooks.models import WebhookDelivery

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "benchmark-secret-key-0123456789",
            "SQLALCHEMY_DATABASE_URI": url,
            "WORKER_IN_PROCESS": False,
            "WEBHOOKS_ALLOW_PRIVATE": True,
            "WEBHOOKS_CONCURRENCY": concurrency,
            "WEBHOOKS_BATCH_SIZE": 50 * endpoints,
        }
    )
    with app.app_context():
        upgrade()
        for i in range(endpoints):
            services.add_endpoint(f"http://127.0.0.1:{port}/e{i}", "subscription.confirmed")
        data = {
            "subscriber_id": 123456,
            "email": "borgmester@aarhus.dk",
            "name": "Anders Aarhus",
            "municipality": "Aarhus Kommune",
            "newsletter": "bestyrelse",
            "method": "confirm_link",
            "at": "2026-12-03T08:00:00+00:00",
        }
        for n in range(events):
            services.queue_event("subscription.confirmed", data, subscriber_id=123456)
            if n % 500 == 499:
                db.session.commit()
        db.session.commit()
        db.session.remove()
    with app.app_context():
        started = time.perf_counter()
        while delivery.deliver_due("bench-worker"):
            pass
        seconds = time.perf_counter() - started
        left = db.session.scalar(select(func.count()).where(WebhookDelivery.delivered_at.is_(None)))
        db.session.remove()
        db.engine.dispose()
    if left:
        print(f"  {left} deliveries left undelivered", file=sys.stderr)
        raise SystemExit(2)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--events", type=int, default=2000, help="events per endpoint")
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    add_quick_argument(parser, "--events 20 --repeat 1")
    args = parser.parse_args()
    apply_quick(args, parser, events=20, repeat=1)
    total = args.events * args.endpoints
    receiver, port = start_receiver()
    best = {"loop": float("inf"), "threads": float("inf"), "app": float("inf")}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
            for round_ in range(1, args.repeat + 1):
                loop = bare(port, total, 1)
                threads = bare(port, total, args.endpoints)
                url = database_url(args.database, Path(tmp))
                app = app_round(url, port, args.events, args.endpoints, args.concurrency, Path(tmp))
                print(
                    f"round {round_}: bare loop {total / loop:,.0f}/s, "
                    f"bare threads {total / threads:,.0f}/s, app {total / app:,.0f}/s"
                )
                best["loop"] = min(best["loop"], loop)
                best["threads"] = min(best["threads"], threads)
                best["app"] = min(best["app"], app)
    finally:
        receiver.kill()
        receiver.wait()
        if args.database == "postgresql":
            drop_pg()
    loop_rate, thread_rate, app_rate = (total / best[k] for k in ("loop", "threads", "app"))
    print(
        f"\n{args.database}: {total} events ({args.endpoints} endpoints x {args.events}), "
        f"WEBHOOKS_CONCURRENCY={args.concurrency}, best of {args.repeat}"
    )
    print(f"  bare loop of POSTs (1 thread):      {loop_rate:8,.0f} POST/s")
    print(f"  bare POSTs ({args.endpoints} threads):            {thread_rate:8,.0f} POST/s")
    print(f"  app (claim, sign, POST, record):    {app_rate:8,.0f} events/s")
    print(
        f"  app / bare loop: {app_rate / loop_rate:.2f}x; app / bare threads: "
        f"{app_rate / thread_rate:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
