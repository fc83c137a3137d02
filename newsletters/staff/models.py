from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class StaffRole(enum.StrEnum):
    EDITOR = "editor"  # composes and sends editions
    ADMIN = "admin"  # also manages staff accounts and newsletters


class Staff(db.Model):
    """A person at KL who logs in to the staff pages (a Flask-Login user)."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised like subscribers' addresses (subscriptions.addresses.normalise_email).
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[StaffRole] = mapped_column(value_enum(StaffRole, "staff_role"))
    # werkzeug.security's format, e.g. "scrypt:32768:8:1$salt$hash".
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of the identity kept in the session; bumping it (new password, deactivation)
    # ends every session of this account.
    session_version: Mapped[int] = mapped_column(Integer, default=1)

    # Flask-Login's user interface. The user loader hands out active accounts only.
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return bool(self.is_active)

    @property
    def is_admin(self) -> bool:
        return self.role is StaffRole.ADMIN

    @property
    def can_edit(self) -> bool:
        """Editors and administrators compose and send editions."""
        return self.role in (StaffRole.EDITOR, StaffRole.ADMIN)

    def get_id(self) -> str:
        """The identity Flask-Login keeps in the session: id and session version."""
        return f"{self.id}:{self.session_version}"

    def __repr__(self) -> str:
        return f"<Staff {self.id} {self.role}>"
