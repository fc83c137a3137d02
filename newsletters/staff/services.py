"""Staff accounts: creating them, checking passwords, ending sessions. One transaction each."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.names import InvalidName, clean_name
from newsletters.staff.models import Staff, StaffRole
from newsletters.subscriptions.addresses import InvalidAddress, normalise_email
from newsletters.subscriptions.models import Subscription, SubscriptionStatus
from newsletters.timeutil import utcnow

PASSWORD_MIN_LENGTH = 12
# scrypt hashes anything, but a megabyte "password" would be a cheap way to burn CPU.
PASSWORD_MAX_LENGTH = 1024


class StaffError(ValueError):
    """A staff action that was refused; the message is for the operator's terminal and logs.

    Views show their own translated text for each subclass.
    """


class InvalidEmail(StaffError):
    pass


class InvalidRole(StaffError):
    pass


class EmailTaken(StaffError):
    pass


class WeakPassword(StaffError):
    pass


class LastAdmin(StaffError):
    """Refused: it would leave no active administrator to manage staff."""


class SelfDeactivation(StaffError):
    """Refused: an administrator cannot deactivate their own account."""


class StaffNotFound(StaffError, LookupError):
    pass


def normalise_staff_email(email: str) -> str:
    """The stored form of a staff address (as subscribers'); InvalidEmail if it is none."""
    try:
        return normalise_email(email)
    except InvalidAddress as exc:
        raise InvalidEmail(f"not a valid email address: {email!r}") from exc


def parse_role(role: str | StaffRole) -> StaffRole:
    try:
        return StaffRole(str(role).strip().lower())
    except ValueError as exc:
        choices = ", ".join(r.value for r in StaffRole)
        raise InvalidRole(f"unknown role {role!r} (choose {choices})") from exc


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raise WeakPassword unless the password is one we accept (12 characters or more)."""
    if not password or not password.strip():
        raise WeakPassword("the password is empty")
    if len(password) < PASSWORD_MIN_LENGTH:
        raise WeakPassword(f"the password is shorter than {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise WeakPassword(f"the password is longer than {PASSWORD_MAX_LENGTH} characters")
    if email and password.strip().lower() == email.lower():
        raise WeakPassword("the password is the email address")


def staff_by_email(email: str) -> Staff | None:
    try:
        address = normalise_staff_email(email)
    except InvalidEmail:
        return None
    return db.session.scalar(db.select(Staff).where(Staff.email == address))


def staff_by_id(staff_id: int) -> Staff | None:
    return db.session.get(Staff, staff_id)


def create_staff(email: str, *, role: str | StaffRole, password: str, name: str = "") -> Staff:
    """Create an active account with a hashed password; StaffError says why not."""
    address = normalise_staff_email(email)
    staff_role = parse_role(role)
    check_password_policy(password, email=address)
    try:
        clean = clean_name(name)
    except InvalidName as exc:
        raise StaffError(str(exc)) from exc
    if staff_by_email(address) is not None:
        raise EmailTaken(f"a staff account for {address} exists already")
    staff = Staff(
        email=address,
        name=clean,
        role=staff_role,
        password_hash=generate_password_hash(password),
        is_active=True,
        session_version=1,
    )
    db.session.add(staff)
    try:
        db.session.commit()
    except IntegrityError as exc:
        # Created at the same moment by someone else.
        db.session.rollback()
        raise EmailTaken(f"a staff account for {address} exists already") from exc
    return staff


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(24))


def authenticate(email: str, password: str) -> Staff | None:
    """The active account with this address and password, or None.

    Unknown addresses cost one password check too, so the time taken does not tell
    whether an account exists.
    """
    staff = staff_by_email(email)
    if staff is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    if not check_password_hash(staff.password_hash, password or ""):
        return None
    if not staff.is_active:
        return None
    staff.last_login_at = utcnow()
    db.session.commit()
    return staff


def set_password(staff_id: int, password: str) -> Staff:
    """Give the account a new password and end all of its sessions."""
    staff = _get(staff_id)
    check_password_policy(password, email=staff.email)
    staff.password_hash = generate_password_hash(password)
    staff.session_version += 1
    db.session.commit()
    return staff


def deactivate(staff_id: int, *, by_staff_id: int | None = None) -> Staff:
    """Stop the account from logging in and end its sessions (its history stays)."""
    staff = _get(staff_id)
    if by_staff_id is not None and by_staff_id == staff_id:
        raise SelfDeactivation("you cannot deactivate your own account")
    if staff.is_active and staff.role is StaffRole.ADMIN and _active_admins() <= 1:
        raise LastAdmin(f"{staff.email} is the only active administrator")
    if staff.is_active:
        staff.is_active = False
        staff.session_version += 1
        db.session.commit()
    return staff


def activate(staff_id: int) -> Staff:
    """Let a deactivated account log in again (with its old password)."""
    staff = _get(staff_id)
    if not staff.is_active:
        staff.is_active = True
        db.session.commit()
    return staff


def list_staff() -> list[Staff]:
    """Every account, active ones first, by address."""
    return list(db.session.scalars(db.select(Staff).order_by(Staff.is_active.desc(), Staff.email)))


def _get(staff_id: int) -> Staff:
    staff = staff_by_id(staff_id)
    if staff is None:
        raise StaffNotFound(f"no staff account with id {staff_id}")
    return staff


def _active_admins() -> int:
    return db.session.scalar(
        db.select(func.count())
        .select_from(Staff)
        .where(Staff.role == StaffRole.ADMIN, Staff.is_active.is_(True))
    )


# --------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class NewsletterOverview:
    slug: str
    name: str
    is_public: bool
    confirmed: int


def newsletter_overview() -> list[NewsletterOverview]:
    """Every newsletter in display order, with its number of confirmed subscribers."""
    confirmed = (
        db.select(Subscription.newsletter_id, func.count().label("confirmed"))
        .where(Subscription.status == SubscriptionStatus.CONFIRMED)
        .group_by(Subscription.newsletter_id)
        .subquery()
    )
    rows = db.session.execute(
        db.select(
            Newsletter.slug,
            Newsletter.name,
            Newsletter.is_public,
            func.coalesce(confirmed.c.confirmed, 0),
        )
        .outerjoin(confirmed, confirmed.c.newsletter_id == Newsletter.id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [NewsletterOverview(*row) for row in rows]
