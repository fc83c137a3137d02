"""Scale-out: the same jobs on a real Celery worker process, with the real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from newsletters import timeutil
from newsletters.editions import sending
from tests.conftest import ROOT_DIR, TEST_SECRET
from tests.support.clock import Clock, local
from tests.support.editions import confirmed_audience, draft, received_counts
from tests.support.flows import subscribe

BROKER = os.environ.get("NEWSLETTERS_TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _start_worker(
    database_url: str,
    smtp_port: int,
    tmp_path,
    *args: str,
    clock: Clock | None = None,
    **env_extra: str,
) -> subprocess.Popen:
    """A Celery worker process; with `clock`, on the same instant as this process's
    controlled clock (tests.support.clocked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env.update(
        NEWSLETTERS_SECRET_KEY=TEST_SECRET,
        NEWSLETTERS_SQLALCHEMY_DATABASE_URI=database_url,
        NEWSLETTERS_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTERS_MAIL_SERVER="127.0.0.1",
        NEWSLETTERS_MAIL_PORT=str(smtp_port),
        NEWSLETTERS_CELERY_BROKER_URL=BROKER,
        NEWSLETTERS_WORKER_POLL_SECONDS="0.5",
        NEWSLETTERS_FEEDS_ALLOW_PRIVATE="true",
        **env_extra,
    )
    launcher = ["-m", "celery"]
    if clock is not None:
        launcher = ["-m", "tests.support.clocked", str(clock.offset_seconds), "celery"]
    return subprocess.Popen(
        [sys.executable, *launcher, "-A", "wsgi.celery", "worker", "--pool=solo"]
        + ["--loglevel=WARNING", *args],
        cwd=ROOT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop_worker(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert "Traceback" not in output, output


@pytest.fixture
def redis_broker() -> None:
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379 (CI has one; the embedded default needs none)")
    import redis

    redis.Redis.from_url(BROKER).flushdb()


@pytest.fixture
def celery_clock() -> Iterator[Clock]:
    """The app's clock in this process and in the Celery worker's: Monday 30 November
    2026, 06:59:40 in Copenhagen, running (the worker waits on real seconds)."""
    clock = Clock.running_from(local(2026, 11, 30, 6, 59, 40))
    timeutil.set_clock(clock)
    yield clock
    timeutil.set_clock(None)


@pytest.fixture
def celery_worker(redis_broker, migrated_database, smtp_server, tmp_path, celery_clock):
    process = _start_worker(
        migrated_database,
        smtp_server.port,
        tmp_path,
        "--beat",
        "-s",
        str(tmp_path / "beat-schedule"),
        clock=celery_clock,
    )
    yield process
    _stop_worker(process)


@pytest.mark.e2e
def test_celery_worker_carries_out_subscriptions_and_sends_editions(
    make_app, smtp_server, celery_worker
):
    app = make_app(CELERY_BROKER_URL=BROKER, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    assert "celery" in app.extensions
    # A posted form: the commit sends a tick; the Celery worker does the rest.
    subscribe(app.test_client(), "celery@example.dk", ["momentum"], process=False)
    [mail] = smtp_server.wait_for(1, timeout=60, address="celery@example.dk")
    assert "/confirm/" in mail.text

    audience = confirmed_audience(app, 30)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
    smtp_server.wait_for(31, timeout=60)
    assert received_counts(smtp_server, audience) == {
        **{a: 1 for a in audience},
        "celery@example.dk": 1,
    }
    assert celery_worker.poll() is None


@pytest.mark.e2e
def test_celery_beat_fetches_feeds_and_sends_the_digest(make_app, smtp_server, celery_worker):
    from newsletters.feeds import services as feeds
    from tests.support.feedserver import FeedServer

    server = FeedServer().start()
    try:
        app = make_app(
            CELERY_BROKER_URL=BROKER, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port
        )
        audience = confirmed_audience(app, 3, slug="danske-kommuner")
        with app.app_context():
            # Danske Kommuner: daily at 07:00, twenty seconds from now on both clocks.
            # The worker fetches the new feed at once and sends the digest at 07:00.
            feeds.add_feed("danske-kommuner", server.serve("dk.xml", "no-dates.xml"))
        mails = smtp_server.wait_for(3, timeout=90)
        assert timeutil.utcnow() >= local(2026, 11, 30, 7, 0)
        assert sorted(m.rcpt_to for m in mails) == sorted(audience)
        assert "Udateret nyhed om affald" in mails[0].text
        assert len(server.seen("dk.xml")) >= 1
    finally:
        server.stop()
    assert celery_worker.poll() is None


def test_each_lane_has_its_own_queue(make_app):
    app = make_app(CELERY_BROKER_URL=BROKER)
    celery = app.extensions["celery"]
    routes = celery.conf.task_routes
    assert {name: route["queue"] for name, route in routes.items()} == {
        "newsletters.tick.mail": "mail",
        "newsletters.tick.editions": "editions",
        "newsletters.tick.feeds": "feeds",
        "newsletters.tick.webhooks": "webhooks",
    }
    assert {q.name for q in celery.conf.task_queues} == {"mail", "editions", "feeds", "webhooks"}
    assert {e["task"] for e in celery.conf.beat_schedule.values()} == set(routes)


@pytest.mark.e2e
def test_a_dripping_feed_on_the_feeds_queue_does_not_hold_up_mail(
    redis_broker, make_app, migrated_database, smtp_server, tmp_path
):
    """The documented deployment: one worker for mail and editions (with beat), one for
    feeds. While the feeds worker is stuck on a server that drips its headers, a
    confirmation mail goes out at once."""
    from newsletters.feeds import services as feeds
    from tests.support.drip import DripServer

    drip = DripServer(interval=0.2).start()
    mail_worker = _start_worker(
        migrated_database,
        smtp_server.port,
        tmp_path,
        "-Q",
        "mail,editions",
        "--beat",
        "-s",
        str(tmp_path / "beat-schedule"),
        "-n",
        "mail@%h",
    )
    feeds_worker = _start_worker(
        migrated_database,
        smtp_server.port,
        tmp_path,
        "-Q",
        "feeds",
        "-n",
        "feeds@%h",
        NEWSLETTERS_FEEDS_TIMEOUT_SECONDS="30",
        NEWSLETTERS_FEEDS_PARSE_PROCESSES="0",
    )
    try:
        app = make_app(
            CELERY_BROKER_URL=BROKER, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port
        )
        with app.app_context():
            feeds.add_feed("kl-nyheder", drip.url())
        assert drip.connected.wait(60), "the feeds worker did not fetch"
        import time

        started = time.monotonic()
        subscribe(app.test_client(), "hurtig@example.dk", ["momentum"], process=False)
        smtp_server.wait_for(1, timeout=20, address="hurtig@example.dk")
        waited = time.monotonic() - started
        assert waited < 5, f"the confirmation mail waited {waited:.1f} s"
        assert drip.connections == 1 and drip.bytes_sent < 150  # still dripping
    finally:
        drip.stop()
        _stop_worker(mail_worker)
        _stop_worker(feeds_worker)
