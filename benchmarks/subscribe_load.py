"""Subscribe form under load: the real app against bare Flask views that do one INSERT.

The bar (PRODUCT.md): under gunicorn on this 2-core machine, POST / of the real subscribe
form sustains >= 50 % of the requests/s of a bare Flask view doing one insert, measured
with the same server settings, the same load generator and the same concurrency in the
same run, and answers no 5xx.

    .venv/bin/python benchmarks/subscribe_load.py [--duration S] [--database sqlite|postgresql]
                                                  [--baselines orm,driver]

Three servers, one after the other, each on its own fresh database: the bare view doing
its INSERT through Flask-SQLAlchemy (benchmarks/bare_app.py, BARE_MODE=orm: the judged
baseline, a Flask view written the way this codebase writes them), the bare view doing
it with the raw DB driver (BARE_MODE=driver: shown for transparency, not judged), then
the app (wsgi:app). For each: gunicorn on 127.0.0.1, one GET / per connection for a
session cookie and its CSRF token, a warm-up, then a timed wrk run
(benchmarks/subscribe.lua) in which every request subscribes a new address. Afterwards
it stops the server and checks, address by address, that every 303 wrote exactly one row
(and that no other answer did): a subscriber for the bare views, an intake row
(subscribe_requests) for the app. For the app it then runs `flask --app wsgi worker
--once`, times it, and checks that the intake is empty and that every address that had
an intake row has exactly one subscriber and one outbox row.
It prints the three rates, the two ratios, latencies, status counts, server CPU per
request, the worker's rate and PASS/FAIL. Exit status: 0 PASS, 1 FAIL, 2 could not run.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.app import migrate_and_seed, newsletters_env
from harness.common import (
    BENCH,
    ROOT,
    VENV_BIN,
    BenchmarkError,
    add_quick_argument,
    apply_quick,
    free_port,
    log,
    quick_note,
    run_checked,
)
from harness.databases import (
    Database,
    add_database_arguments,
    drop_databases,
    fresh_database,
)
from harness.measure import (
    children_cpu_seconds,
    cpu_of,
    cpu_used,
    loadavg,
    machine_busy_seconds,
    process_tree,
)
from harness.report import Table

LUA_SCRIPT = BENCH / "subscribe.lua"

BAR_RATIO = 0.50
LOG_PATTERNS = {
    "tracebacks": "Traceback (most recent call last)",
    "database is locked": "database is locked",
    "worker timeouts": "WORKER TIMEOUT",
    "error lines": "[ERROR]",
}


# --------------------------------------------------------------------------- helpers


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: installing it with apt-get (running as root)")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False)
        path = shutil.which("wrk")
        if path:
            return path
    raise BenchmarkError(
        "wrk is needed as the load generator: `sudo apt-get install -y wrk` "
        "(or build it from https://github.com/wg/wrk) and run again"
    )


# --------------------------------------------------------------------------- the servers

# The two bare views (benchmarks/bare_app.py, BARE_MODE), in the order they run.
BASELINES = {
    "orm": (
        "bare-orm",
        "bare Flask view, one INSERT through Flask-SQLAlchemy (JUDGED baseline)",
    ),
    "driver": (
        "bare-driver",
        "bare Flask view, one INSERT with the raw DB driver (for transparency, NOT judged)",
    ),
}
JUDGED_BASELINE = "orm"


@dataclass
class Target:
    label: str  # "bare-orm" | "bare-driver" | "app"
    title: str
    wsgi: list[str]  # gunicorn arguments naming the app
    env: dict[str, str]
    db: Database
    table: str  # where one row per 303 must appear
    email_column: str
    log_path: Path
    worker: bool = False  # the app: run `flask worker --once` afterwards and check it


def app_env(db: Database, tmp: Path, port: int) -> dict[str, str]:
    settings = {
        "SECRET_KEY": "subscribe-load-benchmark-" + os.urandom(8).hex(),
        "SQLALCHEMY_DATABASE_URI": db.url,
        # The request writes one intake row; the worker carries it out afterwards (timed
        # and checked on its own), so no worker thread competes for the CPU meanwhile.
        # MAIL_SERVER stays unset: the worker captures the mail, no SMTP needed.
        "WORKER_IN_PROCESS": "false",
        # All load comes from 127.0.0.1: lift the per-IP limit (kept per worker in memory).
        "RATELIMIT_SUBSCRIBE": "100000000 per hour",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    return newsletters_env(settings, tmp)


FLASK = [str(VENV_BIN / "flask"), "--app", "wsgi"]


def prepare_app(db: Database, tmp: Path, port: int) -> Target:
    env = app_env(db, tmp, port)
    migrate_and_seed(env)
    return Target(
        label="app",
        title="app: POST / (subscribe form: validate, one intake row; the worker does the rest)",
        wsgi=["--chdir", str(ROOT), "wsgi:app"],
        env=env,
        db=db,
        table="subscribe_requests",
        email_column="email",
        log_path=tmp / "app-gunicorn.log",
        worker=True,
    )


def prepare_baseline(db: Database, tmp: Path, mode: str = JUDGED_BASELINE) -> Target:
    label, title = BASELINES[mode]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTERS_", "BARE_"))}
    env.update(BARE_DATABASE_URL=db.url, BARE_MODE=mode)
    run_checked([str(VENV_BIN / "python"), str(BENCH / "bare_app.py"), "init"], env, "bare init")
    return Target(
        label=label,
        title=f"{label}: {title}",
        wsgi=["--chdir", str(BENCH), "bare_app:app"],
        env=env,
        db=db,
        table="subscribers",
        email_column="email",
        log_path=tmp / f"{label}-gunicorn.log",
    )


class Server:
    """gunicorn in its own process group, stopped (TERM, then KILL) by that group's id."""

    def __init__(self, target: Target, port: int, args: argparse.Namespace) -> None:
        self.target, self.port = target, port
        self.cmd = [
            str(VENV_BIN / "gunicorn"),
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.workers),
            "--worker-class", args.worker_class,
            "--threads", str(args.threads),
            "--keep-alive", "5",
            "--timeout", "30",
            "--graceful-timeout", "10",
            "--log-level", "warning",
            "--no-control-socket",
            *target.wsgi,
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_file = open(self.target.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=self.target.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchmarkError(
                    f"gunicorn for the {self.target.label} exited; see {self.target.log_path}:\n"
                    + self.target.log_path.read_text()[-3000:]
                )
            try:
                status, _, _ = http_get(self.port, "/")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchmarkError(f"gunicorn for the {self.target.label} did not answer in 60 s")

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.proc = None
        self.log_file.close()


def http_get(port: int, path: str) -> tuple[int, list[tuple[str, str]], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept-Language": "da"})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def fetch_sessions(port: int, count: int, path: Path) -> None:
    """One GET / per connection: its session cookie and the CSRF token tied to it."""
    lines = []
    for _ in range(count):
        status, headers, body = http_get(port, "/")
        cookie = next(
            (
                v.split(";", 1)[0]
                for k, v in headers
                if k.lower() == "set-cookie" and v.startswith("nl_session=")
            ),
            None,
        )
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', body)
        if status != 200 or not cookie or not token:
            raise BenchmarkError(f"GET / gave no session cookie and CSRF token (status {status})")
        lines.append(f"{cookie}\t{token.group(1)}\n")
    path.write_text("".join(lines))


# --------------------------------------------------------------------------- one wrk run


@dataclass
class Phase:
    """One wrk run against one server, with its accounting."""

    tag: str
    raw: dict
    statuses: Counter
    answered_303: set[tuple[int, int]]
    answered_other: dict[tuple[int, int], int]
    unanswered: set[tuple[int, int]]
    server_cpu: float = 0.0
    db_cpu: float | None = None
    wrk_cpu: float = 0.0
    machine_cpu: float = 0.0  # all CPUs, every process

    @property
    def seconds(self) -> float:
        return self.raw["duration_us"] / 1e6

    @property
    def rate(self) -> float:
        """Subscriptions per second: 303 answers per second of the run."""
        return self.statuses.get(303, 0) / self.seconds

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> dict[str, int]:
        """Socket errors (wrk's "status" errors are the non-2xx/3xx answers, counted apart)."""
        return {k: v for k, v in self.raw["errors"].items() if v and k != "status"}


def run_wrk(
    wrk: str, port: int, tag: str, seconds: float, args: argparse.Namespace, tmp: Path
) -> Phase:
    body_tail = "&" + urllib.parse.urlencode(
        [("name", args.name), ("municipality", args.municipality)]
        + [("newsletters", slug) for slug in args.newsletters.split(",")]
    )
    cmd = [
        wrk,
        "--threads", str(args.connections),
        "--connections", str(args.connections),
        "--duration", f"{max(1, round(seconds))}s",
        "--timeout", "10s",
        "--script", str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}/",
        "--", tag, str(tmp / "sessions.txt"), body_tail,
        str(-(-args.max_requests // args.connections)),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, capture_output=True, text=True, errors="replace", timeout=seconds + 120
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchmarkError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    statuses: Counter = Counter()
    answered_303: set[tuple[int, int]] = set()
    answered_other: dict[tuple[int, int], int] = {}
    unanswered: set[tuple[int, int]] = set()
    for t in raw["threads"]:
        tid = t["id"]
        statuses.update({int(k): v for k, v in t["statuses"].items()})
        lost = {(tid, s) for s in t["lost"]}
        other = {(tid, int(s)): st for s, st in t["odd"].items()}
        unanswered |= lost
        answered_other.update(other)
        answered_303 |= {(tid, s) for s in range(1, t["seq"] + 1)} - lost - other.keys()
    if len(answered_303) != statuses.get(303, 0):
        raise BenchmarkError(
            f"wrk accounting is inconsistent: {len(answered_303)} addresses answered 303 "
            f"but {statuses.get(303, 0)} 303 responses counted"
        )
    return Phase(tag, raw, statuses, answered_303, answered_other, unanswered)


# --------------------------------------------------------------------------- checks


ADDRESS = re.compile(r"^b-(?P<tag>[a-z0-9-]+?)-t(?P<t>\d+)-(?P<s>\d+)@bench\.example\.org$")


def parse_addresses(emails: list[str], tag: str) -> Counter:
    """(connection, seq) -> how many rows, for this wrk run's addresses."""
    out: Counter = Counter()
    for email in emails:
        m = ADDRESS.match(email)
        if m and m["tag"] == tag:
            out[(int(m["t"]), int(m["s"]))] += 1
    return out


@dataclass
class DbCheck:
    """One row per 303, none for any other answer, in target.table (one wrk run)."""

    table: str
    rows: int  # rows for this run's addresses
    addresses: int  # distinct addresses among them
    answered_303: int
    missing: int  # 303 but no row
    duplicated: int  # addresses with more than one row
    from_other_answers: int  # a row for a request answered with something else
    from_unanswered: int  # rows for requests whose answer wrk never read (in flight at stop)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.from_other_answers == 0

    def describe(self) -> str:
        return (
            f"{self.rows} rows in {self.table} for {self.addresses} addresses; "
            f"{self.answered_303} answered 303, {self.missing} of them without a row; "
            f"{self.duplicated} addresses with more than one row; {self.from_other_answers} "
            f"written by a non-303 answer; {self.from_unanswered} by requests still in flight "
            f"when wrk stopped -> {'OK' if self.ok else 'MISMATCH'}"
        )


def check_database(target: Target, phase: Phase) -> DbCheck:
    prefix = f"b-{phase.tag}-t"
    rows = parse_addresses(target.db.emails(target.table, target.email_column, prefix), phase.tag)
    return DbCheck(
        table=target.table,
        rows=sum(rows.values()),
        addresses=len(rows),
        answered_303=len(phase.answered_303),
        missing=len(phase.answered_303 - rows.keys()),
        duplicated=sum(1 for n in rows.values() if n > 1),
        from_other_answers=len(rows.keys() & phase.answered_other.keys()),
        from_unanswered=len(rows.keys() & phase.unanswered),
    )


@dataclass
class WorkerCheck:
    """`flask worker --once` on the app's intake, and what it left behind."""

    intake_before: int  # intake rows (all of them) before the worker
    addresses: int  # distinct addresses among this run's intake rows
    subscribers_before: int  # this run's subscribers before the worker (expected 0)
    seconds: float  # wall time of `flask --app wsgi worker --once`
    cpu: float  # its CPU (the worker process only, not the database server)
    machine_cpu: float  # all CPUs, every process, meanwhile
    idle_seconds: float  # a second `worker --once` on the empty intake: start-up + polling
    intake_after: int
    subscribers: int  # this run's subscribers after the worker
    without_subscriber: int  # intake addresses with no subscriber
    duplicate_subscribers: int  # ... with more than one
    stray_subscribers: int  # subscribers for addresses that had no intake row
    outbox_rows: int  # this run's outbox rows after the worker
    without_outbox: int
    duplicate_outbox: int
    stray_outbox: int
    outbox_statuses: dict[str, int]
    log_findings: dict[str, int]

    @property
    def processed(self) -> int:
        return self.intake_before - self.intake_after

    @property
    def rate(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0

    @property
    def intake_ok(self) -> bool:
        return self.intake_after == 0 and self.subscribers_before == 0

    @property
    def result_ok(self) -> bool:
        return not (
            self.without_subscriber
            or self.duplicate_subscribers
            or self.stray_subscribers
            or self.without_outbox
            or self.duplicate_outbox
            or self.stray_outbox
        )

    @property
    def ok(self) -> bool:
        return self.intake_ok and self.result_ok


WORKER_LOG_PATTERNS = {
    "tracebacks": "Traceback (most recent call last)",
    "warnings": " WARNING ",
    "errors": " ERROR ",
    "will retry": "will retry",
    "database is locked": "database is locked",
}


def run_worker(env: dict[str, str], timeout: float) -> tuple[float, float, float, str]:
    """`flask --app wsgi worker --once`: wall s, its CPU s, all CPUs' busy s, its output."""
    wall, cpu, machine = time.perf_counter(), children_cpu_seconds(), machine_busy_seconds()
    try:
        done = subprocess.run(
            [*FLASK, "worker", "--once"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"flask worker --once did not finish in {timeout:g} s") from exc
    wall = time.perf_counter() - wall
    cpu = children_cpu_seconds() - cpu
    machine = machine_busy_seconds() - machine
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise BenchmarkError(f"flask worker --once failed ({done.returncode}):\n{output[-3000:]}")
    return wall, cpu, machine, output


def check_worker(target: Target, run_id: str, args: argparse.Namespace) -> WorkerCheck:
    db = target.db
    prefix = f"b-{run_id}-{target.label}-"  # warm-up and measured run alike
    intake_before = db.count("SELECT count(*) FROM subscribe_requests")
    intake = Counter(db.emails("subscribe_requests", "email", prefix))
    subscribers_before = len(db.emails("subscribers", "email", prefix))
    log(f"{target.label}: running `flask --app wsgi worker --once` on {intake_before} intake rows")
    seconds, cpu, machine_cpu, output = run_worker(target.env, args.worker_timeout)
    intake_after = db.count("SELECT count(*) FROM subscribe_requests")
    # A second pass finds nothing due: what start-up and one empty poll cost.
    idle_seconds, _, _, idle_output = run_worker(target.env, args.worker_timeout)
    subscribers = Counter(db.emails("subscribers", "email", prefix))
    outbox = Counter(db.emails("outbox_messages", "to_address", prefix))
    conn = db.connect()
    try:
        mark = "?" if db.kind == "sqlite" else "%s"
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM outbox_messages "  # noqa: S608
                f"WHERE to_address LIKE {mark} GROUP BY status",
                (prefix + "%",),
            ).fetchall()
        )
    finally:
        conn.close()
    text = output + idle_output
    return WorkerCheck(
        intake_before=intake_before,
        addresses=len(intake),
        subscribers_before=subscribers_before,
        seconds=seconds,
        cpu=cpu,
        machine_cpu=machine_cpu,
        idle_seconds=idle_seconds,
        intake_after=intake_after,
        subscribers=sum(subscribers.values()),
        without_subscriber=len(intake.keys() - subscribers.keys()),
        duplicate_subscribers=sum(1 for a in intake if subscribers[a] > 1),
        stray_subscribers=len(subscribers.keys() - intake.keys()),
        outbox_rows=sum(outbox.values()),
        without_outbox=len(intake.keys() - outbox.keys()),
        duplicate_outbox=sum(1 for a in intake if outbox[a] > 1),
        stray_outbox=len(outbox.keys() - intake.keys()),
        outbox_statuses={str(k): int(v) for k, v in statuses.items()},
        log_findings={name: text.count(p) for name, p in WORKER_LOG_PATTERNS.items()},
    )


def scan_log(path: Path, start: int) -> dict[str, int]:
    text = path.read_text(errors="replace")[start:] if path.exists() else ""
    return {name: text.count(pattern) for name, pattern in LOG_PATTERNS.items()}


# --------------------------------------------------------------------------- one server


@dataclass
class Result:
    target: Target
    warmup: Phase
    measured: Phase
    db_check: DbCheck  # the measured run
    warmup_check: DbCheck
    log_findings: dict[str, int]
    worker: WorkerCheck | None = None

    @property
    def cpu_per_request(self) -> float:
        return self.measured.server_cpu / max(self.measured.responses, 1)


def bench_target(target: Target, port: int, wrk: str, run_id: str, args, tmp: Path) -> Result:
    server = Server(target, port, args)
    log_start = target.log_path.stat().st_size if target.log_path.exists() else 0
    log(f"{target.label}: starting gunicorn on 127.0.0.1:{port}")
    try:
        server.start()
        fetch_sessions(port, args.connections, tmp / "sessions.txt")
        log(f"{target.label}: warm-up {args.warmup:g} s (load average {loadavg()})")
        warmup = run_wrk(wrk, port, f"{run_id}-{target.label}-w", args.warmup, args, tmp)
        time.sleep(1)
        log(f"{target.label}: measuring {args.duration:g} s (load average {loadavg()})")
        pids = server.pids()
        db_pids = target.db.backend_pids()
        cpu_before, db_before = cpu_of(pids), cpu_of(db_pids)
        machine_before, wrk_before = machine_busy_seconds(), children_cpu_seconds()
        measured = run_wrk(wrk, port, f"{run_id}-{target.label}-m", args.duration, args, tmp)
        measured.machine_cpu = machine_busy_seconds() - machine_before
        measured.wrk_cpu = children_cpu_seconds() - wrk_before
        measured.server_cpu = cpu_used(cpu_before, cpu_of(server.pids()))
        if db_pids:
            measured.db_cpu = cpu_used(db_before, cpu_of(target.db.backend_pids()))
    finally:
        # Graceful: requests still in flight when wrk stopped finish before the check.
        server.stop()
    log(f"{target.label}: stopped; checking the database")
    result = Result(
        target,
        warmup,
        measured,
        check_database(target, measured),
        check_database(target, warmup),
        scan_log(target.log_path, log_start),
    )
    if target.worker:
        # Only after the intake check: the worker empties the intake.
        result.worker = check_worker(target, run_id, args)
    return result


# --------------------------------------------------------------------------- report


def ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def describe(result: Result) -> list[str]:
    m = result.measured
    lat = m.raw["latency_us"]
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(m.statuses.items())) or "none"
    per_req = m.server_cpu / m.responses * 1000 if m.responses else float("nan")
    lines = [
        f"  requests/s (303s/s)  {m.rate:9.1f}   ({m.statuses.get(303, 0)} in {m.seconds:.2f} s)",
        f"  latency              p50 {ms(lat['p50'])}, p90 {ms(lat['p90'])}, p99 {ms(lat['p99'])}, "
        f"max {ms(lat['max'])}",
        f"  status codes         {codes}",
        f"  socket errors        {m.errors or 'none'}",
        f"  server CPU           {m.server_cpu:.1f} s = {per_req:.2f} ms per request, "
        f"{m.server_cpu / m.seconds:.2f} CPUs busy on average (gunicorn processes)",
    ]
    if m.db_cpu is not None:
        lines.append(
            f"  PostgreSQL CPU       {m.db_cpu:.1f} s = "
            f"{m.db_cpu / max(m.responses, 1) * 1000:.2f} ms per request (its backends)"
        )
    seconds = m.seconds
    other = m.machine_cpu - m.server_cpu - m.wrk_cpu - (m.db_cpu or 0.0)
    lines.append(
        f"  machine              {m.machine_cpu / seconds:.2f} of {os.cpu_count()} CPUs busy: "
        f"gunicorn {m.server_cpu / seconds:.2f}, wrk {m.wrk_cpu / seconds:.2f}"
        + (f", PostgreSQL {m.db_cpu / seconds:.2f}" if m.db_cpu is not None else "")
        + f", everything else {max(other, 0.0) / seconds:.2f}"
    )
    what = "intake check" if result.target.worker else "database check"
    lines.append(f"  {what:<20} {result.db_check.describe()}")
    lines.append(f"  {'  same, warm-up':<20} {result.warmup_check.describe()}")
    w = result.warmup
    lines.append(
        f"  warm-up              {w.rate:.1f}/s, status codes "
        + (", ".join(f"{k}: {v}" for k, v in sorted(w.statuses.items())) or "none")
    )
    findings = {k: v for k, v in result.log_findings.items() if v}
    lines.append(f"  server log           {findings or 'clean'}")
    if any(t.get("capped") for t in m.raw["threads"]):
        lines.append("  WARNING              --max-requests was reached: the rate is too low")
    if m.answered_other:
        body = next(
            (t["odd_body"] for t in m.raw["threads"] if t["odd_body"]),
            "",
        )
        # The form's error summary (role="alert") says what was wrong, if there is one.
        main = next((i for i in (body.find('role="alert"'), body.find("<main")) if i >= 0), -1)
        main = body.rfind("<", 0, main + 1) if main >= 0 else -1
        text = re.sub(r"<[^>]+>", " ", body[main:] if main >= 0 else body)
        lines.append("  first non-303 page:  " + " ".join(text.split())[:600])
    if result.worker:
        lines.extend(describe_worker(result.worker, m))
    return lines


def describe_worker(w: WorkerCheck, measured: Phase) -> list[str]:
    net = w.seconds - w.idle_seconds
    findings = {k: v for k, v in w.log_findings.items() if v}
    return [
        f"  worker processed {w.processed} requests in {w.seconds:.2f} s ({w.rate:.1f}/s)",
        f"                       one `flask --app wsgi worker --once` process: app start-up, "
        f"then intake -> subscribers and mail, then the outbox (mail captured); its CPU "
        f"{w.cpu:.1f} s = {w.cpu / max(w.processed, 1) * 1000:.2f} ms per request, machine "
        f"{w.machine_cpu / max(w.seconds, 1e-9):.2f} of {os.cpu_count()} CPUs busy meanwhile",
        f"                       an idle second `worker --once` (start-up, nothing due) took "
        f"{w.idle_seconds:.2f} s"
        + (f", so ~{w.processed / net:.1f}/s net of start-up" if net > 0 else ""),
        f"                       (the form took intake rows at {measured.rate:.1f}/s during "
        f"the measured run)",
        f"  worker log           {findings or 'clean'}",
        f"  intake after worker  {w.intake_after} rows left of {w.intake_before} "
        f"({w.addresses} addresses of this run); {w.subscribers_before} subscribers existed "
        f"before the worker -> {'OK' if w.intake_ok else 'MISMATCH'}",
        f"  subscriber check     {w.subscribers} subscribers for the {w.addresses} intake "
        f"addresses: {w.without_subscriber} without one, {w.duplicate_subscribers} with more "
        f"than one, {w.stray_subscribers} for an address that had no intake row; "
        f"{w.outbox_rows} outbox rows: {w.without_outbox} addresses without one, "
        f"{w.duplicate_outbox} with more than one, {w.stray_outbox} stray "
        f"(statuses {w.outbox_statuses or 'none'}) -> {'OK' if w.result_ok else 'MISMATCH'}",
    ]


def ratio_of(app: Result, base: Result | None) -> float | None:
    if base is None:
        return None
    return app.measured.rate / base.measured.rate if base.measured.rate else 0.0


def verdict(
    results: list[Result], judged: Result | None, quick: bool = False
) -> tuple[bool, list[str]]:
    app = results[-1]
    reasons = []
    ratio = ratio_of(app, judged)
    if ratio is None:
        reasons.append("bar not judged: the Flask-SQLAlchemy baseline was not run (--baselines)")
    elif ratio < BAR_RATIO and not quick:
        reasons.append(f"ratio app / Flask-SQLAlchemy view {ratio:.3f} < {BAR_RATIO:.2f}")
    for r in results:
        for phase in (r.warmup, r.measured):
            fives = sum(n for code, n in phase.statuses.items() if code >= 500)
            if fives:
                reasons.append(f"{fives} 5xx from {r.target.label}")
    for r in results:
        other = {k: v for k, v in r.measured.statuses.items() if k != 303}
        if other:
            reasons.append(
                f"{r.target.label} answered non-303 {other} (a bug: every request is valid)"
            )
        if not r.db_check.ok:
            reasons.append(f"{r.target.label}: {r.target.table} does not match the 303s")
        if not r.warmup_check.ok:
            reasons.append(f"{r.target.label}: {r.target.table} does not match the warm-up's 303s")
        if r.measured.errors:
            reasons.append(f"{r.target.label}: socket errors {r.measured.errors}")
        if r.worker and not r.worker.intake_ok:
            reasons.append(
                f"{r.target.label}: the worker left {r.worker.intake_after} intake rows "
                f"(or {r.worker.subscribers_before} subscribers existed before it ran)"
            )
        if r.worker and not r.worker.result_ok:
            reasons.append(
                f"{r.target.label}: subscribers/outbox after the worker do not match the intake"
            )
    return not reasons, reasons


# --------------------------------------------------------------------------- main


def parse_baselines(value: str) -> list[str]:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in modes if m not in BASELINES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"--baselines takes a comma-separated subset of {','.join(BASELINES)}"
        )
    return [m for m in BASELINES if m in modes]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Subscribe form under load vs bare one-insert Flask views (gunicorn, wrk).",
    )
    p.add_argument("--duration", type=float, default=15, help="measured seconds per server [15]")
    p.add_argument("--warmup", type=float, default=5, help="warm-up seconds per server [5]")
    p.add_argument(
        "--baselines",
        type=parse_baselines,
        default=list(BASELINES),
        help="bare views to run: orm (Flask-SQLAlchemy, the judged one), driver (raw DB "
        "driver, shown only) [orm,driver]",
    )
    p.add_argument(
        "--connections", type=int, default=16, help="concurrent connections (wrk threads) [16]"
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    p.add_argument("--worker-class", default="gthread", help="gunicorn worker class [gthread]")
    p.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker [4]")
    p.add_argument(
        "--newsletters", default="momentum", help="comma-separated slugs ticked in the form"
    )
    p.add_argument("--municipality", default="Aarhus")
    p.add_argument("--name", default="Bench Bruger")
    p.add_argument(
        "--max-requests",
        type=int,
        default=500_000,
        help="safety cap on requests per wrk run [500000]",
    )
    p.add_argument(
        "--worker-timeout",
        type=float,
        default=1800,
        help="seconds `flask worker --once` may take to empty the intake [1800]",
    )
    # --pg-database: the app's database, re-created; the bare views use <name>_bare_orm and
    # <name>_bare_driver.
    add_database_arguments(p, pg_database="bench_subscribe")
    p.add_argument("--keep", action="store_true", help="keep the temp dir and databases")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    add_quick_argument(p, "--duration 1 --warmup 1 --connections 4")
    args = p.parse_args(argv)
    apply_quick(args, p, duration=1.0, warmup=1.0, connections=4)
    return args


def result_json(r: Result) -> dict:
    return {
        "rate": r.measured.rate,
        "seconds": r.measured.seconds,
        "statuses": dict(r.measured.statuses),
        "errors": r.measured.errors,
        "latency_us": r.measured.raw["latency_us"],
        "server_cpu_s": r.measured.server_cpu,
        "db_cpu_s": r.measured.db_cpu,
        "wrk_cpu_s": r.measured.wrk_cpu,
        "machine_cpu_s": r.measured.machine_cpu,
        "db_check": r.db_check.__dict__,
        "warmup_db_check": r.warmup_check.__dict__,
        "log": r.log_findings,
        **(
            {
                "worker": {
                    **r.worker.__dict__,
                    "processed": r.worker.processed,
                    "rate": r.worker.rate,
                }
            }
            if r.worker
            else {}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` still runs the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="subscribe-load-"))
    run_id = f"{int(time.time()) % 10**8:x}{os.getpid() % 1000}"
    # Database (file or PostgreSQL) name per server, baselines first, the app last.
    names = {mode: f"{args.pg_database}_bare_{mode}" for mode in args.baselines}
    names["app"] = args.pg_database
    pg_names = list(names.values()) if args.database == "postgresql" else []
    try:
        wrk = ensure_wrk()
        dbs: dict[str, Database] = {}
        for key, name in names.items():
            file = "app.db" if key == "app" else f"bare-{key}.db"
            dbs[key] = fresh_database(args, tmp, name, file)
        log(f"preparing databases ({args.database}) in {tmp}")
        targets = [prepare_baseline(dbs[mode], tmp, mode) for mode in args.baselines]
        app_port = free_port()
        targets.append(prepare_app(dbs["app"], tmp, app_port))
        results = []
        for target in targets:
            port = app_port if target.worker else free_port()
            results.append(bench_target(target, port, wrk, run_id, args, tmp))
    except BenchmarkError as exc:
        log(f"could not run: {exc}")
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            drop_databases(args, pg_names)

    by_label = {r.target.label: r for r in results}
    app_result = results[-1]
    judged = by_label.get(BASELINES["orm"][0])
    driver = by_label.get(BASELINES["driver"][0])
    ok, reasons = verdict(results, judged, args.quick)
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    where = (
        ", ".join(d.name for d in dbs.values())
        if args.database == "postgresql" or args.keep
        else "files in a temp dir, removed"
    )
    print()
    print("Subscribe form under load: the app vs bare one-INSERT Flask views")
    print(
        f"  database {args.database} ({where}); gunicorn --workers "
        f"{args.workers} --worker-class {args.worker_class} --threads {args.threads} on 127.0.0.1; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"  load: {wrk_version.strip()}, {args.connections} connections, "
        f"warm-up {args.warmup:g} s, measured {args.duration:g} s per server, one server "
        f"after the other, each on its own fresh database; "
        f"form: newsletters={args.newsletters}, municipality={args.municipality}"
    )
    print(f"  load average now {loadavg()}; other work on the machine makes figures noisy")
    for result in results:
        print(f"\n{result.target.title}")
        print("\n".join(describe(result)))

    print()
    ratio = ratio_of(app_result, judged)
    ratio_driver = ratio_of(app_result, driver)
    table = Table("Subscribe form under load: the figures", judged=not args.quick)
    table.add("app", f"{app_result.measured.rate:.1f} requests/s")
    fives = sum(
        n
        for r in results
        for ph in (r.warmup, r.measured)
        for c, n in ph.statuses.items()
        if c >= 500
    )
    if ratio is not None:
        table.add(
            "ratio app / Flask-SQLAlchemy view",
            f"{ratio:.3f}",
            f"{judged.measured.rate:.1f} requests/s, JUDGED",
            f">= {BAR_RATIO:.2f}, no 5xx",
            ratio >= BAR_RATIO and not fives,
        )
    else:
        table.add(
            "ratio app / Flask-SQLAlchemy view",
            "not measured (--baselines)",
            "the bar is not judged",
        )
    if ratio_driver is not None:
        table.add(
            "ratio app / raw-driver view",
            f"{ratio_driver:.3f}",
            f"{driver.measured.rate:.1f} requests/s, not judged: shown so the choice of "
            "baseline need not be taken on trust",
        )
    cpu = []
    for base, name in ((judged, "Flask-SQLAlchemy view"), (driver, "raw-driver view")):
        if base is not None and base.cpu_per_request:
            cpu.append(
                f"{name} {base.cpu_per_request * 1000:.2f} ms "
                f"(app {app_result.cpu_per_request / base.cpu_per_request:.1f}x)"
            )
    table.add(
        "CPU per request",
        f"app {app_result.cpu_per_request * 1000:.2f} ms",
        ", ".join(cpu) + "; gunicorn processes only",
    )
    if app_result.worker:
        w = app_result.worker
        table.add(
            "worker",
            f"processed {w.processed} requests in {w.seconds:.2f} s ({w.rate:.1f}/s)",
            f"one process (not part of the bar; the form took {app_result.measured.rate:.1f}/s)",
        )
    table.print()
    print(("PASS" if ok else "FAIL") + ("" if ok else ": " + "; ".join(reasons)) + quick_note(args))
    if args.keep:
        print(f"kept: {tmp}" + (f", databases {', '.join(pg_names)}" if pg_names else ""))

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "database": args.database,
                    "quick": args.quick,
                    "ratio": ratio,
                    "ratio_judged_against": "bare-orm",
                    "ratio_driver": ratio_driver,
                    "pass": ok,
                    "reasons": reasons,
                    "gunicorn": {
                        "workers": args.workers,
                        "worker_class": args.worker_class,
                        "threads": args.threads,
                    },
                    "connections": args.connections,
                    **{r.target.label: result_json(r) for r in results},
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
