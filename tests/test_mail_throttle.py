"""The mail throttle: a token bucket (a burst, then the rate; refilled while idle) that
slows the worker to SEND_RATE_PER_SECOND, and a new SMTP connection after
SEND_MAX_PER_CONNECTION messages."""

from __future__ import annotations

import time

import pytest

from newsletters.mailing.throttle import TokenBucket
from tests.conftest import deliver
from tests.support.flows import subscribe


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        assert bucket.take() == 0
    for _ in range(20):
        bucket.take()
    assert clock.now == pytest.approx(2.0)  # 20 more at 10/s


def test_bucket_refills_while_idle():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=2, clock=clock, sleep=clock.sleep)
    bucket.take(), bucket.take()
    clock.now += 10
    assert bucket.take() == 0 and bucket.take() == 0


def test_rate_limit_slows_the_worker(make_app, smtp_server):
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        SEND_RATE_PER_SECOND=20,
        RATELIMIT_SUBSCRIBE="1000 per hour",
    )
    client = app.test_client()
    for n in range(40):
        subscribe(client, f"r{n}@example.dk")
    started = time.monotonic()
    assert deliver(app).sent == 40
    # A burst of one second's worth (20), then 20 more at 20 a second.
    assert time.monotonic() - started >= 0.95


def test_reconnects_after_max_per_connection(make_app, smtp_server):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, SEND_MAX_PER_CONNECTION=2)
    client = app.test_client()
    for n in range(5):
        subscribe(client, f"c{n}@example.dk")
    sessions = []
    original = smtp_server.handler.handle_DATA

    async def record(server, session, envelope):
        sessions.append(id(session))
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = record
    assert deliver(app).sent == 5
    assert len(set(sessions)) == 3  # 2 + 2 + 1
