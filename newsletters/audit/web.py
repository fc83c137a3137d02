"""Recording the current staff request in the audit log (views only; services take ids)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import current_user

from newsletters.audit import services


def actor() -> tuple[int | None, str | None]:
    """(staff id, client IP) of the current request."""
    staff_id = current_user.id if current_user.is_authenticated else None
    return staff_id, request.remote_addr


def audit(action: str, target: str = "", **details: Any) -> None:
    """Record a staff action whose own service has already committed, and commit.

    Existing services (editions, staff accounts) commit inside; the entry follows in a
    transaction of its own right after.
    """
    staff_id, ip = actor()
    services.record_now(staff_id, action, target, details, ip)
