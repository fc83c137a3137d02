"""Who may see the staff pages: Flask-Login set-up, server-side sessions, role decorators.

A staff login is a row in staff_sessions (staff/services.py); the signed session cookie
carries its random secret next to Flask-Login's identity. Every request that uses the
login checks that row, so a cookie captured before any of these no longer opens a page:
- logout, a new password, a new role, deactivation (the row is ended; for the last three
  the account's `session_version` moves on as well),
- PERMANENT_SESSION_LIFETIME since the login (absolute: the row's created_at),
- STAFF_IDLE_MINUTES without a staff request (the row's last_seen_at),
- a request from another IP address or browser than the login's (the row is ended: the
  cookie was taken elsewhere).

Times are the server's, from the app's clock; nothing in the cookie is trusted for them.
The client binding is ours, not Flask-Login's session_protection="strong": "strong" does
not end permanent sessions (it only marks them non-fresh), it hashes the client-supplied
X-Forwarded-For rather than `request.remote_addr` (which ProxyFix sets from trusted
proxies only), and, because Flask-Login's template context loads the user on every page,
it would rewrite every public visitor's session and send a `remember_token` deletion
cookie with each public page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, flash, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from newsletters import events
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db, login_manager
from newsletters.staff import oidc, rights, services
from newsletters.staff.models import Staff, StaffRole, StaffSession

STAFF_PREFIX = "/staff"
# Our key in the (cookie) session, next to Flask-Login's _user_id, _id and _fresh: the
# secret of the staff_sessions row.
SESSION_KEY = "staff_session"
# How this login was made ("password", or the single sign-on's): the local second factor
# is required of password logins only.
LOGIN_METHOD_KEY = "staff_login_method"

F = TypeVar("F", bound=Callable[..., Any])


def init_app(app: Flask) -> None:
    """Hook the staff session rules into the app (called when the staff blueprint is
    registered; login_manager itself is bound in create_app)."""
    # Off: the client binding is checked against the session row (see the module docstring).
    login_manager.session_protection = None
    # Settings that would let nobody in stop the app at start.
    oidc.check_settings(app.config)
    login_manager.user_loader(load_staff)
    login_manager.unauthorized_handler(_to_login)
    app.before_request(_check_staff_session)
    app.after_request(_staff_headers)


def is_staff_path(path: str) -> bool:
    return path == STAFF_PREFIX or path.startswith(STAFF_PREFIX + "/")


def load_staff(identity: str) -> Staff | None:
    """Flask-Login's user loader: the identity is "id:session_version" (Staff.get_id),
    and the cookie's session secret must name an open session of that account."""
    try:
        staff_id, version = (int(part) for part in identity.split(":"))
    except ValueError:
        return None
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.is_active or staff.session_version != version:
        return None
    if current_session(staff.id) is None:
        return None
    return staff


def current_session_id() -> int | None:
    """The id of this request's staff session (to mark it in the list of sessions)."""
    if not current_user.is_authenticated:
        return None
    record = current_session(current_user.id)
    return record.id if record is not None else None


def current_session(staff_id: int) -> StaffSession | None:
    """The open staff session of this request's cookie for this account, checked once per
    request (a staff page's request counts as activity)."""
    cached = g.get("_staff_session")
    if cached is not None and cached[0] == staff_id:
        return cached[1]
    secret = session.get(SESSION_KEY)
    record = None
    if isinstance(secret, str) and secret:
        record = services.check_session(
            secret,
            staff_id=staff_id,
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent", ""),
            touch=is_staff_path(request.path),
        )
    g._staff_session = (staff_id, record)
    return record


def start_session(
    staff: Staff, *, login_method: str = "password", second_factor: str | None = None
) -> None:
    """Log the account in on a fresh session that the server can end: the one place a
    sign-in completes, whatever its method, and the one `staff.login` audit entry (how, and
    with which second factor: "totp", "recovery" or None)."""
    # Nothing from before the login (an old CSRF token, another account, a half-way
    # login) carries over.
    session.clear()
    # Committed with the session row (open_session commits).
    events.announce(
        "staff.login",
        f"staff:{staff.id}",
        actor=events.Actor(staff_id=staff.id, ip=request.remote_addr, via="web"),
        login_method=login_method,
        # Named only when there was one (a password and a code, or a recovery code).
        **({"second_factor": second_factor} if second_factor else {}),
    )
    secret = services.open_session(
        staff.id,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent", ""),
        login_method=login_method,
    )
    login_user(staff)
    session.permanent = True
    session[SESSION_KEY] = secret
    session[LOGIN_METHOD_KEY] = login_method
    g.pop("_staff_session", None)


def this_session_id() -> int | None:
    """The id of the staff_sessions row of this request's login, if any."""
    if not current_user.is_authenticated:
        return None
    record = current_session(current_user.id)
    return record.id if record is not None else None


def end_session() -> None:
    """Log out: the server-side session ends, then the cookie is emptied."""
    secret = session.get(SESSION_KEY)
    if isinstance(secret, str) and secret:
        services.end_session_by_secret(
            secret, services.SessionEnd.LOGOUT, actor=events.Actor.of_request()
        )
    logout_user()
    session.clear()
    g.pop("_staff_session", None)


def _check_staff_session() -> None:
    """A staff page asked for with a login that has ended: empty the cookie and say so."""
    if not is_staff_path(request.path) or "_user_id" not in session:
        return
    if current_user.is_authenticated:
        return
    logout_user()
    session.clear()
    flash(_("Your session has ended. Log in again."), "info")


def _staff_headers(response: Response) -> Response:
    if is_staff_path(request.path):
        response.headers.setdefault("X-Robots-Tag", "noindex, nofollow")
        # Redirects and downloads too, not only the HTML pages security.py covers.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        # Browsers read "/\evil.example" as "//evil.example".
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _to_login() -> Response:
    """Anonymous visitors of a staff page go to the login, and back there after it."""
    wanted = request.full_path if request.query_string else request.path
    # After a login only a GET can be repeated: a form posted into an ended session is lost.
    next_url = wanted if request.method == "GET" else None
    return redirect(url_for("staff.login", next=next_url))


def _require(*roles: StaffRole) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return _to_login()
            if roles and current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


staff_required = _require()
"""Any logged-in staff account."""

editor_required = _require(StaffRole.EDITOR, StaffRole.ADMIN)
"""Those who compose and send: editors and administrators."""

admin_required = _require(StaffRole.ADMIN)
"""Those who manage staff and newsletters."""


# --------------------------------------------------------------------------- rights


def allowed_newsletters(staff: Staff) -> list[Newsletter]:
    """The newsletters `staff` may work on (every one unless an administrator limited
    them), in display order: what the lists show."""
    return rights.allowed_newsletters(staff)


def require_newsletter(slug: str) -> None:
    """Refuse the request with 403 (and an audit entry) unless the signed-in staff member
    may work on the newsletter `slug`. An unknown slug passes: the view answers 404."""
    if not current_user.is_authenticated:
        abort(403)
    newsletter_id = db.session.scalar(db.select(Newsletter.id).where(Newsletter.slug == slug))
    if newsletter_id is None or rights.may_use(current_user, newsletter_id):
        return
    db.session.rollback()
    events.announce(
        "newsletter.access_refused",
        f"newsletter:{slug}"[:200],
        actor=events.Actor.of_request(),
        method=request.method,
        path=request.path[:200],
    )
    db.session.commit()
    abort(403)
