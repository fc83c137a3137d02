"""Staff login throttling: slows a password guesser, never locks the owner out.

Failed attempts are counted per account and source (login_throttle rows):
- the source is the browser when it carries a device cookie showing it has logged in
  to this account before (a "known device"), otherwise the client's IP address;
- after LOGIN_FAILURES_BEFORE_DELAY failures from one source, each further attempt from
  it must wait 1, 2, 4, ... seconds (up to LOGIN_MAX_DELAY_SECONDS) after its last one;
- failures from unknown places also count for the account as a whole (the row with
  source "*"): past RATELIMIT_LOGIN_EMAIL, attempts from every unknown place wait 1, 2,
  4, ... seconds after the account's last failure. Known places (a known device, or an
  IP address the account has logged in from) skip this rule: a stranger's failures
  never slow the owner down where they have logged in before.

An attempt is counted before the password is checked, with a compare-and-set on the
row, so parallel requests cannot all slip through when a wait ends; a successful login
takes its attempt back. The state lives in the database, shared by every web process
and worker and kept across restarts (the limiter's storage is per process with the
default memory://). An address with no account is throttled exactly like an account
attacked from unknown places, so the answers tell nothing about which accounts exist.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Response, current_app, request
from limits import parse_many
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletters.extensions import db
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.staff import services
from newsletters.staff.models import LoginThrottle, Staff
from newsletters.timeutil import utcnow
from newsletters.tokens import Purpose, TokenError, sign, verify

DEVICE_COOKIE = "nl_staff_device"
ACCOUNT_WIDE = "*"
# Accounts a device cookie remembers (the most recent ones).
DEVICE_ACCOUNTS = 10


@dataclass
class Attempt:
    account_key: str
    source: str
    known: bool
    staff: Staff | None
    device_id: str | None
    # Seconds to wait before trying again; 0 when the attempt may go ahead.
    retry_after: int = 0


def account_key(email: str) -> str:
    """A keyed hash of the address typed: the same for every spelling of one address."""
    try:
        address = normalise_email(email)
    except InvalidAddress:
        address = "invalid:" + (email or "").strip().lower()
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"staff-login:" + address.encode(), hashlib.sha256).hexdigest()


def _account_tag(key: str) -> str:
    # 64 bits of the key are plenty to tell a device's accounts apart.
    return key[:16]


def _device() -> tuple[str | None, list[str]]:
    """(device id, account tags) of a valid device cookie, or (None, [])."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 4096:
        return None, []
    try:
        payload = verify(Purpose.STAFF_DEVICE, raw)
    except TokenError:
        return None, []
    device_id, accounts = payload.get("d"), payload.get("a")
    if not isinstance(device_id, str) or not isinstance(accounts, list):
        return None, []
    return device_id, [a for a in accounts if isinstance(a, str)]


def _limit() -> tuple[int, timedelta]:
    """(failures, period) of RATELIMIT_LOGIN_EMAIL (its first limit)."""
    item = parse_many(current_app.config["RATELIMIT_LOGIN_EMAIL"])[0]
    return int(item.amount), timedelta(seconds=item.get_expiry())


def _wait(failures: int, free: int) -> int:
    if failures < free:
        return 0
    cap = int(current_app.config["LOGIN_MAX_DELAY_SECONDS"])
    return min(2 ** min(failures - free, 30), cap)


def _row(key: str, source: str) -> LoginThrottle | None:
    return db.session.scalar(
        select(LoginThrottle).where(
            LoginThrottle.account_key == key, LoginThrottle.source == source
        )
    )


def _held_up(
    row: LoginThrottle | None, free: int, now: datetime, since: datetime
) -> tuple[int, int]:
    """(failures still remembered, seconds left to wait) for one row."""
    if row is None or row.last_failure_at < since:
        return 0, 0
    wait = _wait(row.failures, free)
    left = (row.last_failure_at + timedelta(seconds=wait) - now).total_seconds()
    return row.failures, max(0, math.ceil(left))


def _insert(table):
    if db.engine.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def _claim(key: str, source: str, row: LoginThrottle | None, remembered: int, now) -> bool:
    """Count one attempt on (key, source) if nobody else did since `row` was read."""
    if row is None:
        # RETURNING, not rowcount: psycopg reports no row count for ON CONFLICT DO NOTHING.
        table = LoginThrottle.__table__
        inserted = db.session.execute(
            _insert(table)
            .values(account_key=key, source=source, failures=1, last_failure_at=now)
            .on_conflict_do_nothing()
            .returning(table.c.failures)
        ).first()
        return inserted is not None
    result = db.session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.account_key == key,
            LoginThrottle.source == source,
            LoginThrottle.failures == row.failures,
            LoginThrottle.last_failure_at == row.last_failure_at,
        )
        .values(failures=remembered + 1, last_failure_at=now)
    )
    return result.rowcount == 1


def begin(email: str) -> Attempt:
    """Decide whether a login attempt for `email` may check its password now, and count
    it (committed) if so. `retry_after` > 0: refuse it, nothing was counted."""
    key = account_key(email)
    return _begin(key, services.staff_by_email(email), _account_tag(key))


def code_key(staff_id: int) -> str:
    """The throttle's key for the second factor (a code) of one account."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"staff-code:{staff_id}".encode(), hashlib.sha256).hexdigest()


def begin_code(staff: Staff) -> Attempt:
    """The same for a code of the second factor (TOTP or recovery code) of `staff`:
    wrong codes slow down the place they come from exactly as wrong passwords do, and
    places that never signed in to the account also count for the account as a whole."""
    return _begin(code_key(staff.id), staff, _account_tag(account_key(staff.email)))


def _begin(key: str, staff: Staff | None, device_tag: str) -> Attempt:
    now = utcnow()
    amount, period = _limit()
    since = now - period
    device_id, device_accounts = _device()
    ip = request.remote_addr
    known_device = device_id is not None and device_tag in device_accounts
    known = known_device or (staff is not None and services.has_signed_in_from(staff.id, ip))
    source = (
        "device:" + hashlib.sha256(device_id.encode()).hexdigest()[:32]
        if known_device
        else f"ip:{(ip or 'unknown')[:64]}"
    )
    attempt = Attempt(key, source, known, staff, device_id)

    free = int(current_app.config["LOGIN_FAILURES_BEFORE_DELAY"])
    own = _row(key, source)
    own_failures, wait = _held_up(own, free, now, since)
    account = None
    account_failures = 0
    if not known:
        account = _row(key, ACCOUNT_WIDE)
        account_failures, account_wait = _held_up(account, amount, now, since)
        wait = max(wait, account_wait)
    if wait:
        db.session.rollback()
        attempt.retry_after = wait
        return attempt
    claimed = _claim(key, source, own, own_failures, now)
    if claimed and not known:
        claimed = _claim(key, ACCOUNT_WIDE, account, account_failures, now)
    # Forget what is older than the period (indexed), whoever it was about.
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < since))
    db.session.commit()
    if not claimed:
        # Another attempt from here for this account at this very moment.
        attempt.retry_after = 1
    return attempt


def succeeded(attempt: Attempt) -> None:
    """The password was right: this source starts afresh, and its attempt is taken back
    from the account's count (a stranger's failures stay counted)."""
    db.session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.account_key == attempt.account_key,
            LoginThrottle.source.in_([attempt.source, f"ip:{(request.remote_addr or '')[:64]}"]),
        )
    )
    if not attempt.known:
        db.session.execute(
            update(LoginThrottle)
            .where(
                LoginThrottle.account_key == attempt.account_key,
                LoginThrottle.source == ACCOUNT_WIDE,
                LoginThrottle.failures > 0,
            )
            .values(failures=LoginThrottle.failures - 1)
        )
    db.session.commit()


def remember_device(response: Response, attempt: Attempt) -> None:
    """Mark this browser as known for the account it just logged in to."""
    remember_device_for(response, attempt.account_key)


def remember_device_for(response: Response, key: str) -> None:
    """The same, given the account's key (account_key of its address)."""
    device_id, accounts = _device()
    if device_id is None:
        device_id = secrets.token_urlsafe(16)
    tag = _account_tag(key)
    accounts = [tag] + [a for a in accounts if a != tag][: DEVICE_ACCOUNTS - 1]
    cfg = current_app.config
    response.set_cookie(
        DEVICE_COOKIE,
        sign(Purpose.STAFF_DEVICE, {"d": device_id, "a": accounts}),
        max_age=int(cfg["STAFF_DEVICE_MAX_AGE_DAYS"] * 86400),
        path="/staff",
        secure=bool(cfg.get("SESSION_COOKIE_SECURE")),
        httponly=True,
        samesite="Lax",
    )
