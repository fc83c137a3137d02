"""Who may see the staff pages: Flask-Login set-up, session lifetime, role decorators.

A staff session ends when any of these holds, checked on every request under /staff/:
- the account was deactivated or its password changed (its `session_version` moved on;
  the user loader refuses the identity),
- it is older than PERMANENT_SESSION_LIFETIME (absolute, from login: Flask re-signs the
  cookie on each request, so its own expiry slides),
- nothing happened for STAFF_IDLE_MINUTES,
- it comes from another IP address or browser than the one that logged in.

That last check is ours, not Flask-Login's session_protection="strong": "strong" does
not end permanent sessions (it only marks them non-fresh), it hashes the client-supplied
X-Forwarded-For rather than `request.remote_addr` (which ProxyFix sets from trusted
proxies only), and, because Flask-Login's template context loads the user on every page,
it would rewrite every public visitor's session and send a `remember_token` deletion
cookie with each public page.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from newsletters.extensions import db, login_manager
from newsletters.staff.models import Staff, StaffRole

STAFF_PREFIX = "/staff"
# Our keys in the (cookie) session, next to Flask-Login's _user_id, _id and _fresh.
LOGIN_AT = "staff_login_at"
SEEN_AT = "staff_seen_at"
CLIENT = "staff_client"

F = TypeVar("F", bound=Callable[..., Any])


def init_app(app: Flask) -> None:
    """Hook the staff session rules into the app (called when the staff blueprint is
    registered; login_manager itself is bound in create_app)."""
    # Off: the client binding is checked in _check_staff_session (see the module docstring).
    login_manager.session_protection = None
    login_manager.user_loader(load_staff)
    login_manager.unauthorized_handler(_to_login)
    app.before_request(_check_staff_session)
    app.after_request(_staff_headers)


def is_staff_path(path: str) -> bool:
    return path == STAFF_PREFIX or path.startswith(STAFF_PREFIX + "/")


def load_staff(identity: str) -> Staff | None:
    """Flask-Login's user loader: the identity is "id:session_version" (Staff.get_id)."""
    try:
        staff_id, version = (int(part) for part in identity.split(":"))
    except ValueError:
        return None
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.is_active or staff.session_version != version:
        return None
    return staff


def start_session(staff: Staff) -> None:
    """Log the account in on a fresh session that expires (PERMANENT_SESSION_LIFETIME)."""
    # Nothing from before the login (an old CSRF token, another account) carries over.
    session.clear()
    login_user(staff)
    session.permanent = True
    now = int(time.time())
    session[LOGIN_AT] = now
    session[SEEN_AT] = now
    session[CLIENT] = _client_fingerprint()


def end_session() -> None:
    logout_user()
    session.clear()


def _client_fingerprint() -> str:
    seen = f"{request.remote_addr}|{request.headers.get('User-Agent', '')}"
    return hashlib.sha256(seen.encode()).hexdigest()


def _check_staff_session() -> None:
    if not is_staff_path(request.path) or "_user_id" not in session:
        return
    now = int(time.time())
    login_at = session.get(LOGIN_AT)
    seen_at = session.get(SEEN_AT)
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    idle = float(current_app.config["STAFF_IDLE_MINUTES"]) * 60
    if (
        not isinstance(login_at, int)
        or not isinstance(seen_at, int)
        or now - login_at > lifetime
        or now - seen_at > idle
        or session.get(CLIENT) != _client_fingerprint()
    ):
        end_session()
        flash(_("Your session has ended. Log in again."), "info")
        return
    session[SEEN_AT] = now


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
