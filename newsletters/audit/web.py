"""Who the current staff request is (views only; services take ids or an events.Actor)."""

from __future__ import annotations

from flask import request
from flask_login import current_user


def actor() -> tuple[int | None, str | None]:
    """(staff id, client IP) of the current request."""
    staff_id = current_user.id if current_user.is_authenticated else None
    return staff_id, request.remote_addr
