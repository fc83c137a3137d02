"""The second factor of a staff account: a TOTP secret confirmed with a code, ten
single-use recovery codes, and who must have them. One transaction per action.

A code is accepted once: the TOTP time step of the last accepted code is stored, and
only later steps are accepted (one step either side of now, for clocks that drift); a
recovery code is marked used. Both are compare-and-set updates, so two requests with
the same code cannot both succeed. Time comes from the app's clock (timeutil).

Every change is announced (and so audited) before its commit, and ends the account's
other sessions; a wrong code is announced too. Throttling wrong codes is the caller's
(staff/throttle.py `begin_code`), as it is for passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from newsletters import events
from newsletters.extensions import db
from newsletters.staff import services
from newsletters.staff.models import RecoveryCode, Staff, StaffRole
from newsletters.staff.services import SessionEnd, StaffError
from newsletters.staff.twofactor import sealing
from newsletters.timeutil import utcnow

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
# Crockford's base32: no i, l, o or u to mistake for 1, 1, 0 or v. 12 characters = 60 bits.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_LENGTH = 12
# What a person might type for a letter that is not in the alphabet.
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
# What people put between the groups of a code.
_SEPARATORS = re.compile(r"[\s\-]+")
_TOTP_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")
_SECRET = re.compile(r"[A-Z2-7]{32}")
# Longer input is no code: it is refused before anything is hashed or compared.
MAX_CODE_INPUT = 64


class WrongCode(StaffError):
    """The code (new or current) was not right, or was used before."""


class SecondFactorRequired(StaffError):
    """Refused: the account's role requires two factors, so they cannot be turned off."""


class NotEnrolled(StaffError):
    """The account has no second factor to change."""


class SecretUnreadable(StaffError):
    """The account's stored TOTP secret cannot be decrypted (the key changed), so codes
    from its app cannot be checked; its recovery codes still work, and an administrator
    can reset it (`flask staff reset-2fa`)."""


# --------------------------------------------------------------------------- who


def required_for(staff: Staff) -> bool:
    """Whether the account must sign in with two factors: administrators always, editors
    when TWOFA_REQUIRED_FOR_EDITORS is set."""
    if staff.role is StaffRole.ADMIN:
        return True
    return staff.role is StaffRole.EDITOR and bool(
        current_app.config.get("TWOFA_REQUIRED_FOR_EDITORS")
    )


def needed_at_login(staff: Staff) -> bool:
    """Whether a right password leads to a second step (a code, or setting one up)."""
    return staff.has_totp or required_for(staff)


def missing(staff: Staff) -> bool:
    """Required of the account, and not set up: it may do nothing but set it up."""
    return required_for(staff) and not staff.has_totp


# --------------------------------------------------------------------------- set-up


def new_secret() -> str:
    """A random TOTP secret (160 bits, base32) for an authenticator app to scan."""
    return pyotp.random_base32(32)


def is_secret(value: object) -> bool:
    return isinstance(value, str) and _SECRET.fullmatch(value) is not None


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// address that the QR code carries."""
    return pyotp.TOTP(secret).provisioning_uri(
        name=email, issuer_name=current_app.config["TWOFA_ISSUER"]
    )


def qr_svg(uri: str, title: str) -> str:
    """The QR code of `uri` as inline SVG, drawn here (no outside service sees the secret)."""
    return segno.make(uri, error="m").svg_inline(
        scale=5, title=title, svgclass="totp-qr", lineclass=None, dark="#000", light="#fff"
    )


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# --------------------------------------------------------------------------- codes


def normalise_code(raw: str | None) -> str:
    """The code as typed, without spaces and dashes, lower-case; "" when it is no code."""
    if not isinstance(raw, str) or len(raw) > MAX_CODE_INPUT:
        return ""
    return _SEPARATORS.sub("", raw).lower()


def _counter(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def _matching_step(secret: str, code: str, *, after: int | None) -> int | None:
    """The time step (now, one before or one after) whose code is `code`, if it is later
    than `after` (the last one used)."""
    if _TOTP_CODE.fullmatch(code) is None:
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    now = _counter(utcnow())
    found = None
    for step in (now - 1, now, now + 1):
        # Compare all three, whatever matches: the time taken tells nothing.
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    if found is None or (after is not None and found <= after):
        return None
    return found


def _secret_of(staff: Staff, actor: events.Actor | None) -> str:
    """The account's TOTP secret, decrypted; SecretUnreadable (announced and logged, in a
    transaction of its own) when it cannot be."""
    try:
        return sealing.unseal(staff.totp_secret or "")
    except sealing.SecretUnreadable:
        db.session.rollback()
        current_app.logger.error(
            "The TOTP secret of staff %s cannot be decrypted: SECRET_KEY or "
            "TWOFA_ENCRYPTION_KEY changed? Reset it with `flask staff reset-2fa`.",
            staff.id,
        )
        events.announce("staff.second_factor_unreadable", f"staff:{staff.id}", actor=actor)
        db.session.commit()
        raise SecretUnreadable(f"the TOTP secret of staff {staff.id} cannot be read") from None


def _recovery_hash(staff_id: int, code: str) -> str:
    return hashlib.sha256(f"{staff_id}:{code}".encode()).hexdigest()


def _as_recovery_code(code: str) -> str | None:
    code = code.translate(_LOOKALIKES)
    if len(code) != RECOVERY_LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def _use_code(
    staff: Staff, code: str, *, recovery: bool = True, actor: events.Actor | None = None
) -> str | None:
    """Use up `code` of the account in the current transaction: "totp" or "recovery" if
    it was right and unused, None otherwise (nothing changed)."""
    if not staff.has_totp or not code:
        return None
    step = None
    if _TOTP_CODE.fullmatch(code) is not None:
        step = _matching_step(_secret_of(staff, actor), code, after=staff.totp_last_counter)
    if step is not None:
        result = db.session.execute(
            update(Staff)
            .where(
                Staff.id == staff.id,
                Staff.totp_secret == staff.totp_secret,
                or_(Staff.totp_last_counter.is_(None), Staff.totp_last_counter < step),
            )
            .values(totp_last_counter=step)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            staff.totp_last_counter = step
            return "totp"
        return None
    plain = _as_recovery_code(code) if recovery else None
    if plain is None:
        return None
    result = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.staff_id == staff.id,
            RecoveryCode.code_hash == _recovery_hash(staff.id, plain),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return "recovery" if result.rowcount == 1 else None


def _failed(staff: Staff, actor: events.Actor | None, purpose: str) -> None:
    """Record a wrong code in a transaction of its own (what was tried is rolled back)."""
    db.session.rollback()
    events.announce("staff.second_factor_failed", f"staff:{staff.id}", actor=actor, purpose=purpose)
    db.session.commit()


def verify_login(staff_id: int, code: str, *, actor: events.Actor | None = None) -> str | None:
    """The second step of a login: "totp" or "recovery" if `code` is right (it is used
    up, committed), None if not (recorded as a failure)."""
    staff = services._get(staff_id)
    kind = _use_code(staff, normalise_code(code), actor=actor)
    if kind is None:
        _failed(staff, actor, "login")
        return None
    db.session.commit()
    return kind


def recovery_codes_left(staff_id: int) -> int:
    return db.session.scalar(
        db.select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.staff_id == staff_id, RecoveryCode.used_at.is_(None))
    )


def _new_recovery_codes(staff_id: int) -> list[str]:
    """Replace the account's recovery codes (in the current transaction); the new ones,
    formatted for reading, are returned once and never stored."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == staff_id))
    codes = ["".join(secrets.choice(ALPHABET) for _ in range(RECOVERY_LENGTH))]
    while len(codes) < RECOVERY_CODES:
        code = "".join(secrets.choice(ALPHABET) for _ in range(RECOVERY_LENGTH))
        if code not in codes:
            codes.append(code)
    now = utcnow()
    db.session.add_all(
        RecoveryCode(staff_id=staff_id, code_hash=_recovery_hash(staff_id, c), created_at=now)
        for c in codes
    )
    return [f"{c[:4]}-{c[4:8]}-{c[8:]}" for c in codes]


def _check_current(staff: Staff, current_code: str | None, actor, purpose: str) -> str:
    kind = _use_code(staff, normalise_code(current_code), actor=actor)
    if kind is None:
        _failed(staff, actor, purpose)
        raise WrongCode("the current code is not right")
    return kind


# --------------------------------------------------------------------------- changes


def enrol(
    staff_id: int,
    secret: str,
    code: str,
    *,
    current_code: str | None = None,
    actor: events.Actor | None = None,
    keep_session_id: int | None = None,
) -> list[str]:
    """Make `secret` the account's TOTP secret, confirmed by `code` from it (and, when the
    account has one already, by a code of the current one). Ends the account's sessions
    but `keep_session_id`; returns the ten new recovery codes, to be shown once.
    WrongCode (recorded) if a code is not right."""
    staff = services._get(staff_id)
    if not is_secret(secret):
        raise WrongCode("no secret is being set up")
    renewed = staff.has_totp
    via = None
    if renewed:
        via = _check_current(staff, current_code, actor, "enrol")
    step = _matching_step(secret, normalise_code(code), after=None)
    if step is None:
        _failed(staff, actor, "enrol")
        raise WrongCode("the code is not from the new secret")
    staff.totp_secret = sealing.seal(secret)
    staff.totp_enabled_at = utcnow()
    staff.totp_last_counter = step
    codes = _new_recovery_codes(staff.id)
    ended = services._end_sessions_of(
        staff.id, SessionEnd.SECOND_FACTOR, keep_session_id=keep_session_id
    )
    events.announce(
        "staff.totp_enrolled",
        f"staff:{staff.id}",
        actor=actor,
        renewed=renewed,
        confirmed_with=via,
        sessions_ended=ended,
    )
    db.session.commit()
    return codes


def disable(
    staff_id: int,
    current_code: str,
    *,
    actor: events.Actor | None = None,
    keep_session_id: int | None = None,
) -> None:
    """Turn the second factor off (where the role allows it), confirmed by a current code;
    the recovery codes go too, and the other sessions end."""
    staff = services._get(staff_id)
    if not staff.has_totp:
        raise NotEnrolled(f"{staff.email} has no second factor")
    if required_for(staff):
        raise SecondFactorRequired(f"{staff.email} must sign in with two factors")
    via = _check_current(staff, current_code, actor, "disable")
    _clear(staff)
    ended = services._end_sessions_of(
        staff.id, SessionEnd.SECOND_FACTOR, keep_session_id=keep_session_id
    )
    events.announce(
        "staff.totp_removed",
        f"staff:{staff.id}",
        actor=actor,
        confirmed_with=via,
        sessions_ended=ended,
    )
    db.session.commit()


def renew_recovery_codes(
    staff_id: int,
    current_code: str,
    *,
    actor: events.Actor | None = None,
    keep_session_id: int | None = None,
) -> list[str]:
    """Ten new recovery codes instead of the old ones, confirmed by a current code."""
    staff = services._get(staff_id)
    if not staff.has_totp:
        raise NotEnrolled(f"{staff.email} has no second factor")
    via = _check_current(staff, current_code, actor, "recovery_codes")
    codes = _new_recovery_codes(staff.id)
    ended = services._end_sessions_of(
        staff.id, SessionEnd.SECOND_FACTOR, keep_session_id=keep_session_id
    )
    events.announce(
        "staff.recovery_codes_renewed",
        f"staff:{staff.id}",
        actor=actor,
        confirmed_with=via,
        sessions_ended=ended,
    )
    db.session.commit()
    return codes


def reset(staff_id: int, *, actor: events.Actor | None = None) -> int:
    """For a locked-out person: clear the secret and the recovery codes and end every
    session (and any half-way login); they set up two factors again at their next login
    where their role requires it. Returns the number of sessions ended."""
    staff = services._get(staff_id)
    had = staff.has_totp
    _clear(staff)
    staff.session_version += 1
    ended = services._end_sessions_of(staff.id, SessionEnd.SECOND_FACTOR_RESET)
    events.announce(
        "staff.second_factor_reset",
        f"staff:{staff.id}",
        actor=actor,
        email=staff.email,
        had_totp=had,
        sessions_ended=ended,
    )
    db.session.commit()
    return ended


def _clear(staff: Staff) -> None:
    staff.totp_secret = None
    staff.totp_enabled_at = None
    staff.totp_last_counter = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.staff_id == staff.id))


@dataclass
class ResealReport:
    resealed: int = 0
    already_current: int = 0
    unreadable: list[str] = field(default_factory=list)  # the accounts' addresses


def reseal_all(*, actor: events.Actor | None = None) -> ResealReport:
    """Seal every stored TOTP secret under the current key (after a rotation: the old key
    in TWOFA_ENCRYPTION_KEY_FALLBACKS), in one transaction. A secret no key reads is left
    as it is and named in the report (its person logs in with a recovery code, or is reset
    with `flask staff reset-2fa`). Running it again changes nothing."""
    report = ResealReport()
    for staff in db.session.scalars(
        select(Staff).where(Staff.totp_secret.is_not(None)).order_by(Staff.id)
    ):
        if sealing.sealed_with_current_key(staff.totp_secret):
            report.already_current += 1
            continue
        try:
            staff.totp_secret = sealing.reseal(staff.totp_secret)
        except sealing.SecretUnreadable:
            report.unreadable.append(staff.email)
            continue
        report.resealed += 1
    if report.resealed or report.unreadable:
        events.announce(
            "staff.second_factor_resealed",
            "staff",
            actor=actor,
            resealed=report.resealed,
            already_current=report.already_current,
            unreadable=len(report.unreadable),
        )
    db.session.commit()
    return report
