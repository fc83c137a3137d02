"""Staff login throttling (issue 18, finding 4): failed attempts slow the place they come
from with growing waits; nobody can lock the owner out of a place they have logged in
from before; unknown accounts get the same answers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from newsletters.staff import throttle
from newsletters.staff.models import LoginThrottle, StaffSession
from tests.support.appclock import AppClock, controlled_clock
from tests.test_staff import EDITOR, PASSWORD, login, make_staff

WRONG = "forkert-kodeord-men-langt"
SETTINGS = {
    "RATELIMIT_LOGIN": "1000 per minute",
    "RATELIMIT_LOGIN_EMAIL": "10 per hour",
    "LOGIN_FAILURES_BEFORE_DELAY": 5,
    "LOGIN_MAX_DELAY_SECONDS": 900,
}


@pytest.fixture
def clock() -> Iterator[AppClock]:
    yield from controlled_clock()


@pytest.fixture
def app(make_app, clock) -> Flask:
    app = make_app(**SETTINGS)
    make_staff(app)
    return app


def _client(app: Flask, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def _wait(response) -> int:
    assert response.status_code == 429, response.status_code
    html = response.get_data(as_text=True)
    assert "For mange mislykkede forsøg på at logge ind" in html
    return int(response.headers["Retry-After"])


def _owner_with_a_known_browser(app: Flask) -> FlaskClient:
    """The owner logs in once at the office (which sets the device cookie) and out."""
    owner = _client(app, "198.51.100.7")
    assert login(owner, EDITOR).status_code == 303
    assert owner.get_cookie(throttle.DEVICE_COOKIE, path="/staff") is not None
    owner.post("/staff/logout", data={"csrf_token": _csrf(owner)})
    return owner


def _csrf(client: FlaskClient) -> str:
    from tests.support.pages import csrf_token

    return csrf_token(client.get("/staff/").data)


def _attack(app: Flask, clock: AppClock, email: str, attempts: int) -> list[int]:
    """Wrong passwords from ever new addresses, each waiting as long as it is told."""
    statuses = []
    for n in range(attempts):
        response = login(_client(app, f"203.0.113.{n % 250 + 1}"), email, WRONG)
        if response.status_code == 429:
            clock.advance(seconds=int(response.headers["Retry-After"]))
            response = login(_client(app, f"203.0.113.{n % 250 + 1}"), email, WRONG)
        statuses.append(response.status_code)
    return statuses


def test_the_owner_logs_in_from_a_known_browser_however_many_strangers_failed(app, clock):
    owner = _owner_with_a_known_browser(app)
    assert set(_attack(app, clock, EDITOR, 40)) == {422}
    # The strangers' next try is held up, and so is the right password from a new place ...
    assert _wait(login(_client(app, "203.0.113.99"), EDITOR, WRONG)) > 1
    assert _wait(login(_client(app, "192.0.2.50"), EDITOR)) > 1
    # ... but not on the browser they have logged in with, even from a third address.
    owner.environ_base["REMOTE_ADDR"] = "192.0.2.51"
    assert login(owner, EDITOR).status_code == 303


def test_the_owner_logs_in_from_a_known_address_without_the_cookie(app, clock):
    _owner_with_a_known_browser(app)
    _attack(app, clock, EDITOR, 30)
    # Cookies cleared, same office address as the earlier login.
    assert login(_client(app, "198.51.100.7"), EDITOR).status_code == 303


def test_an_attacker_from_one_address_meets_growing_waits(app, clock):
    attacker = _client(app, "203.0.113.5")
    for _ in range(5):
        assert login(attacker, EDITOR, WRONG).status_code == 422
    waits = []
    for _ in range(6):
        wait = _wait(login(attacker, EDITOR, WRONG))
        waits.append(wait)
        # Still held up a moment before the wait is over, even with the right password.
        clock.advance(seconds=wait - 0.5)
        assert _wait(login(attacker, EDITOR, PASSWORD)) == 1
        clock.advance(seconds=0.5)
        assert login(attacker, EDITOR, WRONG).status_code == 422
    assert waits == [1, 2, 4, 8, 16, 32]
    # The waits end: with the right password after waiting, the attacker's place is
    # the owner's (a shared office), who gets in.
    clock.advance(seconds=64)
    assert login(attacker, EDITOR).status_code == 303


def test_waits_stop_growing_at_the_maximum_and_are_forgotten_after_the_period(app, clock):
    attacker = _client(app, "203.0.113.5")
    failures = 0
    while failures < 20:
        response = login(attacker, EDITOR, WRONG)
        if response.status_code == 429:
            clock.advance(seconds=int(response.headers["Retry-After"]))
        else:
            failures += 1
    # 2 ** 15 seconds would be nine hours; it stops at LOGIN_MAX_DELAY_SECONDS.
    assert _wait(login(attacker, EDITOR, WRONG)) == 900
    clock.advance(hours=1, seconds=1)
    assert login(attacker, EDITOR, WRONG).status_code == 422


def test_strangers_failures_slow_unknown_places_only_past_the_account_limit(make_app, clock):
    app = make_app(**{**SETTINGS, "RATELIMIT_LOGIN_EMAIL": "3 per hour"})
    make_staff(app)
    for n in range(3):
        assert login(_client(app, f"203.0.113.{n}"), EDITOR, WRONG).status_code == 422
    assert _wait(login(_client(app, "203.0.113.50"), EDITOR, PASSWORD)) == 1
    clock.advance(seconds=1)
    # After the wait the right password from a new place works.
    assert login(_client(app, "203.0.113.50"), EDITOR).status_code == 303


def test_unknown_accounts_get_the_same_answers(app, clock):
    def run(email: str) -> list[tuple[int, str | None, str]]:
        answers = []
        client = _client(app, "203.0.113.9")
        for _ in range(9):
            response = login(client, email, WRONG)
            html = re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))
            answers.append((response.status_code, response.headers.get("Retry-After"), html))
            if response.status_code == 429:
                clock.advance(seconds=int(response.headers["Retry-After"]))
        return answers

    known = run(EDITOR)
    unknown = run("findes-ikke@kl.dk")
    assert [a[:2] for a in known] == [a[:2] for a in unknown]
    assert [a[2] for a in known] == [a[2] for a in unknown]
    assert {a[0] for a in known} == {422, 429}


def test_failures_are_seen_by_every_web_process(make_app, clock):
    first = make_app(**SETTINGS)
    make_staff(first)
    second = make_app(**SETTINGS)
    for _ in range(5):
        assert login(_client(first, "203.0.113.5"), EDITOR, WRONG).status_code == 422
    assert _wait(login(_client(second, "203.0.113.5"), EDITOR, WRONG)) == 1


def test_two_attempts_at_the_same_moment_cannot_both_pass_a_wait(app, clock):
    with app.test_request_context("/staff/login", environ_base={"REMOTE_ADDR": "203.0.113.5"}):
        now = clock()
        key = throttle.account_key(EDITOR)
        assert throttle._claim(key, "ip:203.0.113.5", None, 0, now) is True
        # Both read the same row before either counted its attempt.
        row = throttle._row(key, "ip:203.0.113.5")
        db.session.expunge(row)
        db.session.commit()
        assert throttle._claim(key, "ip:203.0.113.5", row, 1, now) is True
        assert throttle._claim(key, "ip:203.0.113.5", row, 1, now) is False
        db.session.commit()


@pytest.mark.parametrize(
    "cookie", ["garbage", "x" * 4000, ".eJyrVkpUslIqzs9NVdJRSs7PS8tMBwA7DQXU.Zz.abc", "\x00"]
)
def test_odd_device_cookies_are_only_unknown_places(app, clock, cookie):
    client = _client(app, "203.0.113.5")
    client.set_cookie(throttle.DEVICE_COOKIE, cookie, path="/staff")
    assert login(client, EDITOR, WRONG).status_code == 422
    assert login(client, EDITOR).status_code == 303


def test_a_device_cookie_of_another_account_is_no_key_to_this_one(app, clock):
    make_staff(app, "kollega@kl.dk", "editor")
    insider = _client(app, "203.0.113.5")
    assert login(insider, "kollega@kl.dk").status_code == 303
    insider.post("/staff/logout", data={"csrf_token": _csrf(insider)})
    _attack(app, clock, EDITOR, 15)
    assert login(insider, EDITOR, WRONG).status_code == 429


def test_attempts_are_audited_and_no_typed_address_is_stored(app, clock):
    attacker = _client(app, "203.0.113.5")
    for _ in range(6):
        login(attacker, "findes-ikke@kl.dk", WRONG)
    login(_client(app, "198.51.100.7"), EDITOR)
    with app.app_context():
        actions = [
            (e.action, e.target, e.ip)
            for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
        rows = db.session.scalars(select(LoginThrottle)).all()
    assert actions[:5] == [("staff.login_failed", "staff:unknown", "203.0.113.5")] * 5
    assert actions[5] == ("staff.login_throttled", "staff:unknown", "203.0.113.5")
    assert actions[6][0] == "staff.login" and actions[6][2] == "198.51.100.7"
    assert len(actions) == 7
    # A login is recorded by its session row too.
    with app.app_context():
        [session] = db.session.scalars(select(StaffSession)).all()
        assert session.ip == "198.51.100.7" and session.staff_id is not None
    assert all("findes-ikke" not in r.account_key for r in rows) and rows
