"""Pages of the second factor: the code after the password, setting up an authenticator
app (with its QR code drawn here), recovery codes, turning it off.

Between a right password and the second step the person is *not* logged in: the signed
session cookie holds a half-way state (PENDING_KEY) bound to the account, its session
version (a new password or a reset voids it) and the browser, and it lasts
TWOFA_STEP_MINUTES. Only `access.start_session` completes a login.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.extensions import db, limiter
from newsletters.staff import access, throttle
from newsletters.staff.models import Staff
from newsletters.staff.twofactor import services as twofactor
from newsletters.staff.twofactor.forms import CodeForm, CurrentCodeForm, SetupForm
from newsletters.timeutil import utcnow

bp = Blueprint("twofactor", __name__)

PENDING_KEY = "staff_pending"
# The secret being set up (not yet confirmed), bound to its account.
SETUP_KEY = "totp_setup"
# What a person whose role requires two factors may still reach without them.
ALLOWED_WITHOUT = {"staff.twofactor.setup", "staff.twofactor.overview", "staff.logout"}


@bp.record_once
def _hook(state) -> None:
    state.app.before_request(_insist_on_second_factor)


def _insist_on_second_factor():
    """A logged-in person whose role requires two factors (an administrator, say, from a
    session that began before the requirement) may do nothing but set them up."""
    if not access.is_staff_path(request.path) or not current_user.is_authenticated:
        return None
    if request.endpoint in ALLOWED_WITHOUT or not twofactor.missing(current_user):
        return None
    if session.get(access.LOGIN_METHOD_KEY, "password") != "password":
        # Signed in through the organisation's identity provider: its own factors count.
        return None
    flash(_("Set up two-factor login before you continue."), "info")
    return redirect(url_for("staff.twofactor.setup"), code=303)


# --------------------------------------------------------------------------- half-way


def _browser() -> str:
    agent = request.headers.get("User-Agent", "")[:512]
    return hashlib.sha256(agent.encode("utf-8", "replace")).hexdigest()[:16]


def begin_second_step(staff: Staff, attempt: throttle.Attempt, next_url: str | None) -> Response:
    """After a right password: no login yet, but the half-way state, and on to the code
    (or to setting up, where the role requires two factors and there are none)."""
    session.clear()
    session[PENDING_KEY] = {
        "id": staff.id,
        "v": staff.session_version,
        "at": utcnow().timestamp(),
        "b": _browser(),
        "next": next_url,
        "key": attempt.account_key,
    }
    if staff.has_totp:
        return redirect(url_for("staff.twofactor.code"), code=303)
    return redirect(url_for("staff.twofactor.setup"), code=303)


def _pending() -> tuple[Staff, dict[str, Any]] | None:
    """The account of this browser's half-way login, while it is valid."""
    state = session.get(PENDING_KEY)
    if not isinstance(state, dict):
        return None
    staff_id, version, at = state.get("id"), state.get("v"), state.get("at")
    if not isinstance(staff_id, int) or not isinstance(version, int):
        return None
    if not isinstance(at, int | float) or state.get("b") != _browser():
        return None
    age = utcnow().timestamp() - at
    if not 0 <= age <= float(current_app.config["TWOFA_STEP_MINUTES"]) * 60:
        return None
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.is_active or staff.session_version != version:
        return None
    return staff, state


def _pending_or_login() -> tuple[Staff, dict[str, Any]] | Response:
    pending = _pending()
    if pending is None:
        session.pop(PENDING_KEY, None)
        flash(_("Log in again: the time for the code ran out."), "info")
        return redirect(url_for("staff.login"), code=303)
    return pending


def _finish(staff: Staff, state: dict[str, Any], second_factor: str) -> str:
    """Complete the login; returns where to go next."""
    next_url = access.safe_next(state.get("next")) or url_for("staff.dashboard")
    access.start_session(staff, login_method="password", second_factor=second_factor)
    return next_url


def _remember(response: Response, state: dict[str, Any]) -> Response:
    key = state.get("key")
    if isinstance(key, str) and len(key) == 64:
        throttle.remember_device_for(response, key)
    return response


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def _throttled(staff: Staff, attempt: throttle.Attempt, purpose: str) -> None:
    events.announce(
        "staff.second_factor_throttled",
        f"staff:{staff.id}",
        actor=_actor(),
        wait_seconds=attempt.retry_after,
        known_place=attempt.known,
        purpose=purpose,
    )
    db.session.commit()


def _wait_for(staff: Staff, purpose: str) -> tuple[throttle.Attempt, int]:
    """Begin a code attempt for `purpose`; the seconds to wait first (0: go ahead). A
    throttled attempt is announced (and committed) here."""
    attempt = throttle.begin_code(staff)
    if attempt.retry_after:
        _throttled(staff, attempt, purpose)
    return attempt, attempt.retry_after


def _retry_after(response: Response, wait: int) -> Response:
    if wait:
        response.headers["Retry-After"] = str(wait)
    return response


def _unreadable() -> str:
    return _(
        "Codes from your app cannot be checked: the server can no longer read your "
        "two-factor set-up. Use one of your recovery codes instead, or ask an administrator "
        "to reset your two-factor login."
    )


# The account's stored secret cannot be decrypted: a state of the account that no code
# from the app can get past (a recovery code, or an administrator's reset, can), not a
# wrong code and not a crash.
UNREADABLE_STATUS = 409


def _actor() -> events.Actor:
    return events.Actor.of_request()


# --------------------------------------------------------------------------- the code


def _code_page(form: CodeForm, status: int = 200, *, failed: bool = False, wait: int = 0):
    response = make_response(
        render_template("staff/twofactor/code.html", form=form, failed=failed, wait=wait), status
    )
    return _retry_after(response, wait)


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def code():
    pending = _pending_or_login()
    if isinstance(pending, Response):
        return pending
    staff, state = pending
    if not staff.has_totp:
        return redirect(url_for(".setup"), code=303)
    form = CodeForm()
    if request.method == "GET":
        return _code_page(form)
    if not form.validate():
        return _code_page(form, 422)
    attempt, wait = _wait_for(staff, "login")
    if wait:
        return _code_page(form, 429, wait=wait)
    try:
        kind = twofactor.verify_login(staff.id, form.code.data, actor=_actor())
    except twofactor.SecretUnreadable:
        form.code.errors.append(_unreadable())
        return _code_page(form, UNREADABLE_STATUS)
    if kind is None:
        return _code_page(form, 422, failed=True)
    throttle.succeeded(attempt)
    next_url = _finish(staff, state, kind)
    if kind == "recovery":
        left = twofactor.recovery_codes_left(staff.id)
        flash(
            _(
                "You logged in with a recovery code; it cannot be used again. "
                "%(left)d recovery code(s) left.",
                left=left,
            ),
            "info",
        )
    return _remember(redirect(next_url, code=303), state)


# --------------------------------------------------------------------------- set-up


def _who() -> tuple[Staff, dict[str, Any] | None] | Response:
    """The account setting up: the logged-in one, or the half-way login's."""
    if current_user.is_authenticated:
        return current_user._get_current_object(), None
    pending = _pending_or_login()
    if isinstance(pending, Response):
        return pending
    staff, state = pending
    if staff.has_totp:
        # Half-way with a second factor: the code first, changes after the login.
        return redirect(url_for(".code"), code=303)
    return staff, state


def _held_secret(staff: Staff) -> str:
    """The secret this browser is setting up for this account; "" when there is none (or
    it was for another account)."""
    held = session.get(SETUP_KEY)
    if (
        isinstance(held, dict)
        and held.get("id") == staff.id
        and twofactor.is_secret(held.get("secret"))
    ):
        return held["secret"]
    return ""


def _setup_secret(staff: Staff) -> str:
    """The secret being set up for this account in this browser (made on first sight)."""
    if secret := _held_secret(staff):
        return secret
    secret = twofactor.new_secret()
    session[SETUP_KEY] = {"id": staff.id, "secret": secret}
    return secret


def _setup_page(staff: Staff, form: SetupForm, status: int = 200, *, wait: int = 0):
    secret = _setup_secret(staff)
    uri = twofactor.provisioning_uri(secret, staff.email)
    response = make_response(
        render_template(
            "staff/twofactor/setup.html",
            form=form,
            staff=staff,
            qr=twofactor.qr_svg(uri, _("QR code for your authenticator app")),
            secret=twofactor.grouped(secret),
            renewing=staff.has_totp,
            halfway=not current_user.is_authenticated,
            required=twofactor.required_for(staff),
            wait=wait,
        ),
        status,
    )
    return _retry_after(response, wait)


@bp.route("/two-factor/setup", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def setup():
    who = _who()
    if isinstance(who, Response):
        return who
    staff, state = who
    form = SetupForm()
    if request.method == "GET":
        return _setup_page(staff, form)
    if not form.validate():
        return _setup_page(staff, form, 422)
    if staff.has_totp and not form.current_code.data:
        form.current_code.errors.append(_("Enter a code from your current set-up."))
        return _setup_page(staff, form, 422)
    attempt, wait = _wait_for(staff, "enrol")
    if wait:
        return _setup_page(staff, form, 429, wait=wait)
    try:
        codes = twofactor.enrol(
            staff.id,
            _held_secret(staff),
            form.code.data,
            current_code=form.current_code.data,
            actor=_actor(),
            keep_session_id=access.this_session_id(),
        )
    except twofactor.SecretUnreadable:
        form.current_code.errors.append(_unreadable())
        return _setup_page(staff, form, UNREADABLE_STATUS)
    except twofactor.WrongCode:
        if staff.has_totp and form.current_code.data:
            form.current_code.errors.append(
                _("One of the codes is not right. Check both, and try again with new codes.")
            )
        else:
            form.code.errors.append(_("The code is not right. Enter the code the app shows now."))
        return _setup_page(staff, form, 422)
    throttle.succeeded(attempt)
    session.pop(SETUP_KEY, None)
    response = None
    next_url = url_for("staff.dashboard")
    if state is not None:
        next_url = _finish(staff, state, "totp")
    response = make_response(
        render_template("staff/twofactor/recovery_codes.html", codes=codes, next_url=next_url)
    )
    if state is not None:
        _remember(response, state)
    return response


# --------------------------------------------------------------------------- overview


def _overview(
    renew_form: CurrentCodeForm | None = None,
    off_form: CurrentCodeForm | None = None,
    status: int = 200,
):
    staff = current_user
    return render_template(
        "staff/twofactor/overview.html",
        renew_form=renew_form or CurrentCodeForm(prefix="renew", formdata=None),
        off_form=off_form or CurrentCodeForm(prefix="off", formdata=None),
        required=twofactor.required_for(staff),
        codes_left=twofactor.recovery_codes_left(staff.id) if staff.has_totp else 0,
    ), status


@bp.get("/two-factor")
@access.staff_required
def overview():
    return _overview()


def _checked_change(form: CurrentCodeForm, purpose: str):
    """Throttle a change confirmed by a code; a Response when it may not go ahead."""
    if not form.validate():
        return None, _overview(**{f"{purpose}_form": form}, status=422)
    attempt, wait = _wait_for(current_user, purpose)
    if wait:
        form.current_code.errors.append(
            _("Too many wrong codes. Wait %(num)d seconds and try again.", num=wait)
        )
        response = make_response(*_overview(**{f"{purpose}_form": form}, status=429))
        return None, _retry_after(response, wait)
    return attempt, None


@bp.post("/two-factor/recovery-codes")
@access.staff_required
def renew():
    form = CurrentCodeForm(prefix="renew")
    attempt, refused = _checked_change(form, "renew")
    if refused is not None:
        return refused
    try:
        codes = twofactor.renew_recovery_codes(
            current_user.id,
            form.current_code.data,
            actor=_actor(),
            keep_session_id=access.this_session_id(),
        )
    except twofactor.NotEnrolled:
        return redirect(url_for(".overview"), code=303)
    except twofactor.SecretUnreadable:
        form.current_code.errors.append(_unreadable())
        return _overview(renew_form=form, status=UNREADABLE_STATUS)
    except twofactor.WrongCode:
        form.current_code.errors.append(_("The code is not right."))
        return _overview(renew_form=form, status=422)
    throttle.succeeded(attempt)
    return render_template(
        "staff/twofactor/recovery_codes.html", codes=codes, next_url=url_for(".overview")
    )


@bp.post("/two-factor/off")
@access.staff_required
def off():
    form = CurrentCodeForm(prefix="off")
    if twofactor.required_for(current_user):
        flash(_("Your role requires two-factor login: it cannot be turned off."), "error")
        return redirect(url_for(".overview"), code=303)
    attempt, refused = _checked_change(form, "off")
    if refused is not None:
        return refused
    try:
        twofactor.disable(
            current_user.id,
            form.current_code.data,
            actor=_actor(),
            keep_session_id=access.this_session_id(),
        )
    except twofactor.NotEnrolled:
        return redirect(url_for(".overview"), code=303)
    except twofactor.SecretUnreadable:
        form.current_code.errors.append(_unreadable())
        return _overview(off_form=form, status=UNREADABLE_STATUS)
    except twofactor.WrongCode:
        form.current_code.errors.append(_("The code is not right."))
        return _overview(off_form=form, status=422)
    throttle.succeeded(attempt)
    flash(_("Two-factor login is off. Your other sessions have ended."), "success")
    return redirect(url_for(".overview"), code=303)
