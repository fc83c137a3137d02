from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class StaffRole(enum.StrEnum):
    EDITOR = "editor"  # composes and sends editions
    ADMIN = "admin"  # also manages staff accounts and newsletters


class Staff(db.Model):
    """A person at KL who logs in to the staff pages (a Flask-Login user)."""

    __tablename__ = "staff"
    __table_args__ = (
        # One account per person at the identity provider, whatever their address becomes.
        Index("uq_staff_oidc_issuer_oidc_subject", "oidc_issuer", "oidc_subject", unique=True),
        # Ids are never handed out again (they name accounts in sessions and the audit log).
        {"sqlite_autoincrement": True},
    )

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
    # The person at the OpenID Connect provider (staff/oidc.py): the issuer and its `sub`,
    # which never changes, unlike the address. Both None until the first SSO sign-in.
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    # True while the role comes from the provider's roles claim: such an account loses its
    # access when the claim stops naming a role. False for a role set here (the CLI, an
    # invitation), which the claim may raise or change but not take away.
    role_from_provider: Mapped[bool] = mapped_column(Boolean, default=False)
    # Two factors (staff/twofactor): the TOTP secret (base32) once confirmed with a code,
    # when that was, and the last time step whose code was accepted (a code is used once).
    # Encrypted (staff/twofactor/sealing.py): a Fernet token, never the secret itself.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_counter: Mapped[int | None] = mapped_column(Integer)

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

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None and self.totp_enabled_at is not None

    def get_id(self) -> str:
        """The identity Flask-Login keeps in the session: id and session version."""
        return f"{self.id}:{self.session_version}"

    def __repr__(self) -> str:
        return f"<Staff {self.id} {self.role}>"


class RecoveryCode(db.Model):
    """One of the ten single-use codes that sign in when the authenticator app is lost.
    Only a hash is kept; the codes are shown once, when they are made."""

    __tablename__ = "staff_recovery_codes"
    __table_args__ = (UniqueConstraint("staff_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the account id and the normalised code (60 random bits).
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffNewsletter(db.Model):
    """An editor limited to some newsletters: one row per newsletter they may work on.
    No rows for an account means every newsletter (administrators are never limited)."""

    __tablename__ = "staff_newsletters"

    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True
    )
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffSession(db.Model):
    """One login of a staff account, kept by the server: the signed session cookie only
    carries its random secret, so the server can end it (logout, new password, role
    change, deactivation, or from a list of the account's sessions), and the idle time
    and lifetime are enforced here, not by the cookie."""

    __tablename__ = "staff_sessions"
    __table_args__ = (
        # The account's open sessions (listing them, ending them all).
        Index("ix_staff_sessions_staff_id_ended_at", "staff_id", "ended_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the secret in the cookie: a copy of this table opens no session.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # logout, idle, lifetime, password_changed, role, deactivated, other_client, ended_by_staff
    end_reason: Mapped[str | None] = mapped_column(String(40))
    # How the person signed in: "password" or "oidc" (labels.LOGIN_METHOD).
    login_method: Mapped[str] = mapped_column(String(20), default="password")

    staff: Mapped[Staff] = relationship()

    def __repr__(self) -> str:
        return f"<StaffSession {self.id} staff={self.staff_id}>"


class StaffInvitation(db.Model):
    """An address an administrator has let in: its first SSO sign-in creates an account
    with this role, even when the provider's claims name no role."""

    __tablename__ = "staff_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised like Staff.email; one open invitation per address.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[StaffRole] = mapped_column(value_enum(StaffRole, "staff_role"))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<StaffInvitation {self.id} {self.role}>"


class LoginThrottle(db.Model):
    """Failed staff logins for one account from one source (an IP address, or a device
    that has signed in to the account before). Shared by every web process through the
    database; see staff/throttle.py."""

    __tablename__ = "login_throttle"

    # HMAC of the normalised address typed (whether or not such an account exists):
    # no typed address is stored, and unknown accounts are treated exactly alike.
    account_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "ip:<address>" or "device:<hash of the device id>".
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Indexed: forgetting old rows.
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
