"""A slow feed server holds nothing up: one deadline per fetch, and the worker's lanes
(mail, editions, feeds) never wait on each other. Stopping the worker (or the app)
ends every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.fetching import unreachable
from newsletters.feeds.models import Feed
from newsletters.worker import LANES, start_in_process_worker
from tests.conftest import ROOT_DIR
from tests.support.drip import DripServer
from tests.support.flows import subscribe
from tests.support.smtp import free_port


@pytest.fixture
def drip_server() -> Iterator[DripServer]:
    server = DripServer(interval=0.2).start()
    yield server
    server.stop()


def add(app: Flask, url: str) -> int:
    with app.app_context():
        return services.add_feed("kl-nyheder", url, by="test").id


def feed_row(app: Flask, feed_id: int) -> Feed:
    with app.app_context():
        row = db.session.get(Feed, feed_id)
        db.session.expunge(row)
        return row


def timed_fetch(app: Flask) -> tuple[float, list[services.FetchOutcome]]:
    started = time.monotonic()
    with app.app_context():
        outcomes = services.fetch_feeds()
        db.session.remove()
    return time.monotonic() - started, outcomes


@pytest.mark.e2e
def test_a_server_dripping_its_headers_is_cut_off_at_the_deadline(make_app, drip_server):
    app = make_app(FEEDS_TIMEOUT_SECONDS=1.5, FEEDS_PARSE_PROCESSES=0)
    feed_id = add(app, drip_server.url())
    seconds, [outcome] = timed_fetch(app)
    # Each byte came well within any per-read timeout; the whole fetch still ended.
    assert drip_server.bytes_sent >= 3
    assert 1.4 <= seconds < 3.0
    assert outcome.error == unreachable(1.5)
    row = feed_row(app, feed_id)
    assert row.last_error == unreachable(1.5) and row.failures_in_a_row == 1
    assert row.last_success_at is None


@pytest.mark.e2e
def test_the_deadline_covers_every_redirect_together(make_app, feed_server):
    # Three hops, each answering well within the timeout, together beyond it.
    app = make_app(FEEDS_TIMEOUT_SECONDS=1.5, FEEDS_PARSE_PROCESSES=0)
    final = feed_server.serve("final.xml", "rss20.xml", delay=0.6)
    second = feed_server.serve("b.xml", status=302, location=final, delay=0.6, conditional=False)
    first = feed_server.serve("a.xml", status=302, location=second, delay=0.6, conditional=False)
    feed_id = add(app, first)
    seconds, [outcome] = timed_fetch(app)
    assert 1.4 <= seconds < 3.0
    assert outcome.error == unreachable(1.5)
    assert feed_row(app, feed_id).last_success_at is None


def test_the_worker_runs_mail_editions_feeds_and_webhooks_in_lanes_of_their_own():
    from newsletters import worker

    lanes = {lane.name: lane.jobs for lane in LANES}
    assert lanes == {
        "mail": (worker._intake_job, worker._outbox_job),
        "editions": (worker._editions_job,),
        "feeds": (worker._feeds_job, worker._digests_job, worker._purge_daily),
        "webhooks": (worker._webhooks_job,),
    }
    # `run_once` (flask worker --once) still runs every job, each once.
    assert sorted(map(id, worker.JOBS)) == sorted(id(j) for jobs in lanes.values() for j in jobs)


@pytest.mark.e2e
def test_a_dripping_feed_does_not_hold_up_a_confirmation_mail(make_app, smtp_server, drip_server):
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        WORKER_IN_PROCESS=True,
        # Long idle sleeps: only the wake-up of the mail lane can make the mail prompt.
        WORKER_POLL_SECONDS=30,
        FEEDS_TIMEOUT_SECONDS=8,
        FEEDS_PARSE_PROCESSES=0,
    )
    add(app, drip_server.url())
    worker = start_in_process_worker(app)
    assert drip_server.connected.wait(10), "the feeds lane did not start fetching"
    dripping_since = time.monotonic()
    client = app.test_client()
    subscribe(client, "hurtig@example.dk", ["momentum"], process=False)
    posted = time.monotonic()
    [mail] = smtp_server.wait_for(1, timeout=20, address="hurtig@example.dk")
    waited = time.monotonic() - posted
    assert "/confirm/" in mail.text
    # The mail went out while the feed was still dripping (its deadline is 8 s away).
    assert waited < 2.0, f"the confirmation mail waited {waited:.1f} s"
    assert time.monotonic() - dripping_since < 8
    assert drip_server.connections == 1
    with app.app_context():
        feed = db.session.scalar(db.select(Feed))
        assert feed.last_fetch_at is None  # the fetch had not ended
    worker.stop()


@pytest.mark.e2e
def test_stopping_the_worker_stops_every_lane_within_the_fetch_deadline(make_app, drip_server):
    app = make_app(
        WORKER_IN_PROCESS=True,
        WORKER_POLL_SECONDS=30,
        FEEDS_TIMEOUT_SECONDS=2,
        FEEDS_PARSE_PROCESSES=0,
    )
    feed_id = add(app, drip_server.url())
    worker = start_in_process_worker(app)
    assert drip_server.connected.wait(10)
    stopped_at = time.monotonic()
    worker.stop()
    worker.thread.join(timeout=10)
    assert not worker.thread.is_alive()
    assert [t.name for t in worker.lane_threads if t.is_alive()] == []
    assert time.monotonic() - stopped_at < 4  # the fetch's deadline, not the poll's 30 s
    row = feed_row(app, feed_id)
    assert row.last_error == unreachable(2) and row.leased_by is None


@pytest.mark.e2e
def test_a_stopping_worker_fetches_no_more_feeds_and_releases_them(make_app, feed_server):
    import threading

    app = make_app(FEEDS_PARSE_PROCESSES=0)
    ids = [add(app, feed_server.serve(f"f{n}.xml", "rss20.xml")) for n in range(3)]
    stop = threading.Event()
    stop.set()
    with app.app_context():
        assert services.fetch_due("stopping-worker", stop=stop) == 0
    assert feed_server.requests == []
    for feed_id in ids:
        row = feed_row(app, feed_id)
        assert row.leased_by is None and row.leased_until is None and row.last_fetch_at is None


# --------------------------------------------------------------------------- SIGTERM


def session_processes(session: int) -> dict[int, tuple[int, str]]:
    """Every live process of a session (pid: (parent, command line)), from /proc: also
    those whose parent died and that were handed to init."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        state, parent, sid = fields[0], int(fields[1]), int(fields[3])
        if sid == session and state not in ("Z", "X"):
            found[int(entry.name)] = (parent, cmdline.strip())
    return found


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def operator_env(tmp_path, feed_server) -> dict[str, str]:
    """A fresh SQLite installation with one due feed on loopback, as an operator has it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")},
        "NEWSLETTERS_SECRET_KEY": "operator-test-secret-0123456789",
        "NEWSLETTERS_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTERS_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'app.db'}",
        "NEWSLETTERS_WORKER_POLL_SECONDS": "0.2",
        "NEWSLETTERS_FEEDS_ALLOW_PRIVATE": "true",
        "NEWSLETTERS_FEEDS_PARSE_PROCESSES": "2",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    url = feed_server.serve("kl.xml", "rss20.xml")
    for args in (["db", "upgrade"], ["seed"], ["feeds", "add", "kl-nyheder", url]):
        subprocess.run([*flask, *args], cwd=ROOT_DIR, env=env, check=True, capture_output=True)
    return env


def _http_get(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["flask worker", "flask run", "gunicorn"])
def test_sigterm_ends_every_process_the_app_started(how, operator_env, feed_server):
    port = free_port()
    command = {
        "flask worker": [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        "flask run": [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", str(port)],
        "gunicorn": [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}"]
        + ["wsgi:app"],
    }[how]
    process = subprocess.Popen(
        command,
        cwd=ROOT_DIR,
        env=operator_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own session: every descendant is found by it
    )
    try:
        if how != "flask worker":
            # The in-process worker starts with the first request.
            wait_until(lambda: _http_get(port), 30, "the app to answer")
        wait_until(lambda: feed_server.seen("kl.xml"), 30, "the feed to be fetched")
        # A parser process (started on demand) and multiprocessing's resource tracker.
        started = wait_until(
            lambda: (
                (p := session_processes(process.pid))
                and any("spawn_main" in cmd for _, cmd in p.values())
                and any("resource_tracker" in cmd for _, cmd in p.values())
                and p
            ),
            30,
            "the parser process and the resource tracker",
        )
        assert len(started) >= 3, started
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        wait_until(lambda: not session_processes(process.pid), 5, "every descendant to end")
    finally:
        for pid in session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert "Traceback" not in output, output
