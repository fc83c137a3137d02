"""Subscriptions per second through the REST API, beside the public subscribe form.

    .venv/bin/python benchmarks/api_subscribe.py [--duration S] [--connections N]
                                                 [--database sqlite|postgresql]

One gunicorn (2 gthread workers x 4 threads, as benchmarks/subscribe_load.py) serves the
real app on 127.0.0.1 on a fresh database. Then, one after the other and for the same
time, N keep-alive connections (a thread each) send requests that each subscribe a new
address: first POST / (the public form, with the session cookie and CSRF token of one
GET / per connection; answered 303), then POST /api/v1/subscriptions with a Bearer token
(JSON; answered 202). Both only validate and write one intake row (the worker carries the
requests out later), so the difference is the API's own cost: the token check, the JSON
and the per-token rate limit. Afterwards it checks that every 303 and 202 left exactly one
intake row, and that no answer was a 5xx. Prints both rates and their ratio.
Exit status: 0 when no request failed, 1 otherwise, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from harness.common import add_quick_argument, apply_quick

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
FLASK = [str(VENV_BIN / "flask"), "--app", "wsgi"]
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_DATABASE = "bench_api_subscribe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[3:])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def form_session(port: int) -> tuple[str, str]:
    """(Cookie header, CSRF token) of one GET /, as a browser would have them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    html = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    conn.close()
    return cookie, token


def load(port: int, kind: str, seconds: float, connections: int, api_token: str) -> dict:
    """Each connection sends requests (each a new address) until the time is up."""
    statuses: Counter = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    sessions = [form_session(port) for _ in range(connections)] if kind == "form" else []

    def client(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seq, mine, times = 0, Counter(), []
        while time.monotonic() < stop:
            seq += 1
            address = f"{kind}-c{number}-{seq}@bench.example.org"
            if kind == "form":
                cookie, token = sessions[number]
                body = urllib.parse.urlencode(
                    {"csrf_token": token, "email": address, "newsletters": "momentum"}
                )
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": cookie,
                }
                path = "/"
            else:
                body = json.dumps({"email": address, "newsletters": ["momentum"]})
                headers = {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {api_token}",
                }
                path = "/api/v1/subscriptions"
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                mine[response.status] += 1
            except (OSError, http.client.HTTPException):
                mine["error"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            times.append(time.perf_counter() - started)
        conn.close()
        with lock:
            statuses.update(mine)
            latencies.extend(times)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    ok = statuses[303 if kind == "form" else 202]
    return {
        "kind": kind,
        "seconds": elapsed,
        "accepted": ok,
        "rate": ok / elapsed,
        "statuses": dict(statuses),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }


def intake_rows(env: dict[str, str]) -> Counter:
    code = (
        "from collections import Counter\n"
        "from sqlalchemy import select\n"
        "from newsletters import create_app\n"
        "from newsletters.extensions import db\n"
        "from newsletters.subscriptions.models import SubscribeRequest\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    rows = db.session.execute(select(SubscribeRequest.email, SubscribeRequest.method))\n"
        "    c = Counter((e.split('-', 1)[0], m or 'web_form') for e, m in rows)\n"
        "    print(';'.join(f'{k[0]},{k[1]},{v}' for k, v in c.items()))\n"
    )
    out = run([str(VENV_BIN / "python"), "-c", code], env).strip()
    counts: Counter = Counter()
    for part in filter(None, out.split(";")):
        kind, method, n = part.split(",")
        counts[(kind, method)] = int(n)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run [10]")
    parser.add_argument("--connections", type=int, default=8, help="connections [8]")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    add_quick_argument(parser, "--duration 2")
    args = parser.parse_args()
    apply_quick(args, parser, duration=2.0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    if args.database == "postgresql":
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        url = f"{PG_SERVER}/{PG_DATABASE}"
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env.update(
        NEWSLETTERS_SECRET_KEY="api-subscribe-benchmark-" + os.urandom(8).hex(),
        NEWSLETTERS_SQLALCHEMY_DATABASE_URI=url,
        NEWSLETTERS_INSTANCE_PATH=str(tmp / "instance"),
        NEWSLETTERS_WORKER_IN_PROCESS="false",
        # All load comes from one address and one token: lift both limits.
        NEWSLETTERS_RATELIMIT_SUBSCRIBE="100000000 per hour",
        NEWSLETTERS_API_RATE_LIMIT="100000000 per hour",
        NEWSLETTERS_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    run([*FLASK, "db", "upgrade"], env)
    run([*FLASK, "seed"], env)
    token = run([*FLASK, "api-tokens", "create", "bench", "--scope", "subscriptions:write"], env)
    token = token.strip().splitlines()[-1]
    log_path = tmp / "gunicorn.log"
    server = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--keep-alive",
            "5",
            "--timeout",
            "30",
            "--log-level",
            "warning",
            "--chdir",
            str(ROOT),
            "wsgi:app",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                form_session(port)
                break
            except (OSError, AttributeError):
                if time.monotonic() > deadline or server.poll() is not None:
                    print(log_path.read_text()[-3000:], file=sys.stderr)
                    return 2
                time.sleep(0.2)
        # Warm-up of both paths (imports, connection pools, the newsletters cache).
        warm = [load(port, kind, 1.0, args.connections, token) for kind in ("form", "api")]
        results = [
            load(port, kind, args.duration, args.connections, token) for kind in ("form", "api")
        ]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    rows = intake_rows(env)
    print(
        f"database {args.database}; gunicorn 2 workers x 4 threads; "
        f"{args.connections} connections; {args.duration:.0f} s per run"
    )
    failed = False
    for r in results:
        print(
            f"{r['kind']:5} {r['rate']:8.1f} subscriptions/s  ({r['accepted']} accepted; "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; statuses {r['statuses']})"
        )
        bad = {k: v for k, v in r["statuses"].items() if k == "error" or int(k) >= 500}
        failed |= bool(bad)
    form, api = results
    print(f"api / form: {api['rate'] / form['rate']:.2f}")
    expected = {
        kind: w["accepted"] + r["accepted"]
        for kind, w, r in zip(("form", "api"), warm, results, strict=True)
    }
    found = {"form": rows[("form", "web_form")], "api": rows[("api", "api:bench")]}
    print(f"intake rows (warm-up included): {found}; accepted: {expected}")
    failed |= found != expected
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
