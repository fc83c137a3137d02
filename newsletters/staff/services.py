"""Staff accounts: creating them, checking passwords, their sessions. One transaction each."""

from __future__ import annotations

import enum
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from newsletters import events
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.names import InvalidName, clean_name
from newsletters.staff.models import Staff, StaffInvitation, StaffRole, StaffSession
from newsletters.staff.oidc import Identity, SsoError
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


class SessionEnd(enum.StrEnum):
    """Why a staff session ended (StaffSession.end_reason)."""

    LOGOUT = "logout"
    IDLE = "idle"
    LIFETIME = "lifetime"
    CREDENTIALS_CHANGED = "password_changed"
    ROLE = "role"
    DEACTIVATED = "deactivated"
    # The cookie came back from another address or browser than the login's: taken.
    OTHER_CLIENT = "other_client"
    # Ended from the list of sessions, by its owner or an administrator.
    ENDED = "ended"
    # The two factors were set up, changed or turned off (the others end), or reset.
    SECOND_FACTOR = "second_factor_changed"
    SECOND_FACTOR_RESET = "second_factor_reset"


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


def create_staff(
    email: str,
    *,
    role: str | StaffRole,
    password: str,
    name: str = "",
    actor: events.Actor | None = None,
) -> Staff:
    """Create an active account with a hashed password; StaffError says why not.
    Audited (`staff.create`) when an actor is named (the staff pages)."""
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
        if actor is not None:
            db.session.flush()
            events.announce(
                "staff.create",
                f"staff:{staff.id}",
                actor=actor,
                email=staff.email,
                role=staff.role.value,
            )
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
    _end_sessions_of(staff.id, SessionEnd.CREDENTIALS_CHANGED)
    db.session.commit()
    return staff


def set_role(staff_id: int, role: str | StaffRole, *, by_staff_id: int | None = None) -> Staff:
    """Give the account another role and end its sessions: what it may do changed, so it
    logs in again rather than keep a session granted for the old role."""
    staff = _get(staff_id)
    new_role = parse_role(role)
    if new_role is staff.role:
        return staff
    if staff.role is StaffRole.ADMIN and staff.is_active and _active_admins() <= 1:
        raise LastAdmin(f"{staff.email} is the only active administrator")
    staff.role = new_role
    # Set here, the role is kept here: the provider's claim no longer takes it away.
    staff.role_from_provider = False
    staff.session_version += 1
    _end_sessions_of(staff.id, SessionEnd.ROLE)
    db.session.commit()
    return staff


def deactivate(
    staff_id: int, *, by_staff_id: int | None = None, actor: events.Actor | None = None
) -> Staff:
    """Stop the account from logging in and end its sessions (its history stays);
    audited (`staff.deactivate`) when an actor is named."""
    staff = _get(staff_id)
    if by_staff_id is not None and by_staff_id == staff_id:
        raise SelfDeactivation("you cannot deactivate your own account")
    if staff.is_active and staff.role is StaffRole.ADMIN and _active_admins() <= 1:
        raise LastAdmin(f"{staff.email} is the only active administrator")
    if staff.is_active:
        staff.is_active = False
        staff.session_version += 1
        _end_sessions_of(staff.id, SessionEnd.DEACTIVATED)
        if actor is not None:
            events.announce("staff.deactivate", f"staff:{staff.id}", actor=actor, email=staff.email)
        db.session.commit()
    return staff


def activate(staff_id: int, *, actor: events.Actor | None = None) -> Staff:
    """Let a deactivated account log in again (with its old password); audited
    (`staff.activate`) when an actor is named."""
    staff = _get(staff_id)
    if not staff.is_active:
        staff.is_active = True
        if actor is not None:
            events.announce("staff.activate", f"staff:{staff.id}", actor=actor, email=staff.email)
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


# --------------------------------------------------------------------------- sessions
#
# A staff login is a StaffSession row; the signed session cookie carries only its random
# secret (the row keeps a SHA-256 of it). Every request under /staff/ checks the row:
# not ended, the same account, the same address and browser as the login, younger than
# PERMANENT_SESSION_LIFETIME and used within STAFF_IDLE_MINUTES. So ending a row ends
# the session at once, wherever its cookie is.


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _idle() -> timedelta:
    return timedelta(minutes=float(current_app.config["STAFF_IDLE_MINUTES"]))


def _lifetime() -> timedelta:
    return current_app.permanent_session_lifetime


def open_session(
    staff_id: int, *, ip: str | None, user_agent: str, login_method: str = "password"
) -> str:
    """Start a session for the account; returns the secret for its cookie (never stored)."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        StaffSession(
            secret_hash=_secret_hash(secret),
            staff_id=staff_id,
            created_at=now,
            last_seen_at=now,
            ip=(ip or None) and ip[:64],
            user_agent=(user_agent or "")[:512],
            login_method=login_method[:20],
        )
    )
    db.session.commit()
    return secret


def session_by_secret(secret: str) -> StaffSession | None:
    return db.session.scalar(
        db.select(StaffSession).where(StaffSession.secret_hash == _secret_hash(secret))
    )


def _why_over(record: StaffSession, now: datetime, ip: str | None, user_agent: str):
    if now - record.created_at > _lifetime():
        return SessionEnd.LIFETIME
    if now - record.last_seen_at > _idle():
        return SessionEnd.IDLE
    # A different browser ends the session. A different address does not: phones move
    # between networks and dual-stack clients alternate between IPv4 and IPv6, so the
    # address is only recorded (the last one seen, for the list of sessions).
    if record.user_agent != (user_agent or "")[:512]:
        return SessionEnd.OTHER_CLIENT
    return None


def check_session(
    secret: str, *, staff_id: int, ip: str | None, user_agent: str, touch: bool
) -> StaffSession | None:
    """The open session with this secret of this account, used now from this client;
    None otherwise. A session past its idle time or lifetime, or brought by another
    client, is ended on the spot. `touch` counts this request as activity."""
    record = session_by_secret(secret)
    if record is None or record.ended_at is not None or record.staff_id != staff_id:
        return None
    now = utcnow()
    reason = _why_over(record, now, ip, user_agent)
    if reason is not None:
        if touch:
            # Only on staff pages: a public page's view may have its own transaction open.
            record.ended_at, record.end_reason = now, reason.value
            events.announce(
                "staff.session_expired",
                f"staff:{staff_id}",
                actor=events.Actor(staff_id=staff_id, ip=ip, via="web"),
                session=record.id,
                reason=reason.value,
            )
            db.session.commit()
        return None
    if touch:
        record.last_seen_at = now
        record.ip = (ip or None) and ip[:64]
        db.session.commit()
    return record


def end_session_by_secret(
    secret: str, reason: SessionEnd = SessionEnd.LOGOUT, *, actor: events.Actor | None = None
) -> None:
    """End the session whose cookie carries this secret (logging out)."""
    record = session_by_secret(secret)
    if record is not None and record.ended_at is None:
        record.ended_at, record.end_reason = utcnow(), reason.value
        events.announce("staff.logout", f"staff:{record.staff_id}", actor=actor, session=record.id)
    db.session.commit()


def end_session(
    session_id: int, *, owner_id: int | None = None, actor: events.Actor | None = None
) -> bool:
    """End one session by its id (from a list of sessions). With `owner_id`, only if it
    is that account's (a person ends their own; an administrator passes None).
    True if it was open."""
    query = db.select(StaffSession).where(
        StaffSession.id == session_id, StaffSession.ended_at.is_(None)
    )
    if owner_id is not None:
        query = query.where(StaffSession.staff_id == owner_id)
    record = db.session.scalar(query)
    if record is None:
        db.session.rollback()
        return False
    record.ended_at, record.end_reason = utcnow(), SessionEnd.ENDED.value
    events.announce("staff.session_end", f"staff:{record.staff_id}", actor=actor, session=record.id)
    db.session.commit()
    return True


def end_sessions(
    staff_id: int,
    *,
    reason: SessionEnd = SessionEnd.ENDED,
    keep_session_id: int | None = None,
    actor: events.Actor | None = None,
) -> int:
    """End every open session of the account (but `keep_session_id`: "log out my other
    sessions"); returns how many."""
    count = _end_sessions_of(staff_id, reason, keep_session_id=keep_session_id)
    if count:
        events.announce(
            "staff.sessions_end", f"staff:{staff_id}", actor=actor, count=count, reason=reason.value
        )
    db.session.commit()
    return count


def staff_session(session_id: int) -> StaffSession | None:
    return db.session.get(StaffSession, session_id)


def _end_sessions_of(
    staff_id: int, reason: SessionEnd, *, keep_session_id: int | None = None
) -> int:
    query = update(StaffSession).where(
        StaffSession.staff_id == staff_id, StaffSession.ended_at.is_(None)
    )
    if keep_session_id is not None:
        query = query.where(StaffSession.id != keep_session_id)
    return db.session.execute(query.values(ended_at=utcnow(), end_reason=reason.value)).rowcount


def active_sessions(staff_id: int | None = None) -> list[StaffSession]:
    """Open sessions, newest activity first: one account's, or everyone's (for an
    administrator). Sessions past their idle time or lifetime are not listed."""
    now = utcnow()
    query = db.select(StaffSession).where(
        StaffSession.ended_at.is_(None),
        StaffSession.created_at >= now - _lifetime(),
        StaffSession.last_seen_at >= now - _idle(),
    )
    if staff_id is not None:
        query = query.where(StaffSession.staff_id == staff_id)
    return list(db.session.scalars(query.order_by(StaffSession.last_seen_at.desc())))


def has_signed_in_from(staff_id: int, ip: str | None) -> bool:
    """Whether the account has logged in from this address before (any session, open
    or ended): a known address for the login throttle."""
    if not ip:
        return False
    return (
        db.session.scalar(
            db.select(StaffSession.id)
            .where(StaffSession.staff_id == staff_id, StaffSession.ip == ip[:64])
            .limit(1)
        )
        is not None
    )


# --------------------------------------------------------------------------- sign-in


def record_failed_sign_in(
    reason: str, *, login_method: str, target: str = "staff:unknown", ip: str | None = None, **data
) -> None:
    """Put a sign-in that did not succeed in the audit log (its own transaction)."""
    db.session.rollback()
    events.announce(
        "staff.login_failed",
        target,
        actor=events.Actor(ip=ip, via="web"),
        login_method=login_method,
        reason=reason,
        **data,
    )
    db.session.commit()


# An SSO-only account's password hash: no password matches it (werkzeug reads no method).
SSO_ONLY_HASH = "!sso"


def sign_in_by_oidc(identity: Identity, *, ip: str | None = None) -> Staff:
    """The account of the person the provider vouched for, made, linked or updated in one
    transaction; SsoError (with nothing written) when they may not sign in.

    - The provider's person (issuer + sub) names the account; a changed address follows it.
    - A person not yet linked is linked to the account with their (verified) address.
    - Otherwise an account is made only when the roles claim gives a role or an
      administrator invited the address (the invitation is then used up).
    - A role from the claim replaces the account's role (its other sessions end); an
      account whose role came from the claim and whose claim now gives none is refused.
    """
    actor = events.Actor(ip=ip, via="web")
    staff = db.session.scalar(
        db.select(Staff).where(
            Staff.oidc_issuer == identity.issuer, Staff.oidc_subject == identity.subject
        )
    )
    address = None
    if identity.email:
        try:
            address = normalise_staff_email(identity.email)
        except InvalidEmail:
            address = None
    if staff is None and address is not None:
        staff = staff_by_email(address)
        if staff is not None:
            if staff.oidc_subject is not None:
                # The address is another person's at the provider: never take it over.
                raise SsoError("identity_conflict", f"staff:{staff.id}")
            if not staff.is_active:
                raise SsoError("deactivated", f"staff:{staff.id}")
            staff.oidc_issuer, staff.oidc_subject = identity.issuer, identity.subject
            events.announce("staff.sso_link", f"staff:{staff.id}", actor=actor, email=address)
    if staff is None:
        staff = _account_from_invitation_or_claim(identity, address, actor)
    if not staff.is_active:
        raise SsoError("deactivated", f"staff:{staff.id}")
    if identity.role is not None:
        if identity.role is not staff.role:
            old = staff.role
            staff.role = identity.role
            staff.session_version += 1
            ended = _end_sessions_of(staff.id, SessionEnd.ROLE)
            events.announce(
                "staff.role_change",
                f"staff:{staff.id}",
                actor=actor,
                old=old.value,
                new=identity.role.value,
                sessions=ended,
                via="oidc",
            )
        staff.role_from_provider = True
    elif staff.role_from_provider:
        raise SsoError("no_role", f"staff:{staff.id}")
    if address is not None and address != staff.email and staff_by_email(address) is None:
        events.announce(
            "staff.email_change", f"staff:{staff.id}", actor=actor, old=staff.email, new=address
        )
        staff.email = address
    if identity.name and not staff.name:
        staff.name = identity.name
    staff.last_login_at = utcnow()
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise SsoError("identity_conflict", "made at the same moment") from exc
    return staff


def _account_from_invitation_or_claim(
    identity: Identity, address: str | None, actor: events.Actor
) -> Staff:
    invitation = None
    if address is not None:
        invitation = db.session.scalar(
            db.select(StaffInvitation).where(StaffInvitation.email == address)
        )
    if identity.role is None and invitation is not None and invitation_expired(invitation):
        # Nothing is written: the invitation stays on the Staff page, shown as expired.
        raise SsoError("invitation_expired", f"invitation:{invitation.id}")
    role = identity.role or (invitation.role if invitation is not None else None)
    if role is None:
        raise SsoError("unknown_person")
    if address is None:
        raise SsoError("no_email")
    staff = Staff(
        email=address,
        name=identity.name,
        role=role,
        password_hash=SSO_ONLY_HASH,
        is_active=True,
        session_version=1,
        oidc_issuer=identity.issuer,
        oidc_subject=identity.subject,
        role_from_provider=identity.role is not None,
    )
    db.session.add(staff)
    db.session.flush()
    if invitation is not None:
        db.session.delete(invitation)
    events.announce(
        "staff.create",
        f"staff:{staff.id}",
        actor=actor,
        email=address,
        role=role.value,
        via="oidc",
        invited=invitation is not None,
    )
    return staff


# --------------------------------------------------------------------------- invitations


class AlreadyStaff(StaffError):
    """Refused: the address has an account already."""


def invite(email: str, role: str | StaffRole, *, actor: events.Actor) -> StaffInvitation:
    """Let the address in by SSO with this role (replaces an open invitation's role)."""
    address = normalise_staff_email(email)
    staff_role = parse_role(role)
    if staff_by_email(address) is not None:
        raise AlreadyStaff(f"a staff account for {address} exists already")
    invitation = db.session.scalar(
        db.select(StaffInvitation).where(StaffInvitation.email == address)
    )
    if invitation is None:
        invitation = StaffInvitation(email=address, role=staff_role)
        db.session.add(invitation)
    invitation.role = staff_role
    invitation.invited_by_id = actor.staff_id
    invitation.created_at = utcnow()
    db.session.flush()
    events.announce(
        "staff.invite", f"invitation:{invitation.id}", actor=actor, email=address, role=staff_role
    )
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise StaffError(f"{address} was invited at the same moment") from exc
    return invitation


def withdraw_invitation(invitation_id: int, *, actor: events.Actor) -> StaffInvitation | None:
    """Withdraw an open invitation; None if there is none with this id."""
    invitation = db.session.get(StaffInvitation, invitation_id)
    if invitation is None:
        return None
    events.announce(
        "staff.invite_withdraw", f"invitation:{invitation.id}", actor=actor, email=invitation.email
    )
    db.session.delete(invitation)
    db.session.commit()
    return invitation


def open_invitations() -> list[StaffInvitation]:
    return list(db.session.scalars(db.select(StaffInvitation).order_by(StaffInvitation.email)))


def invitation_expires_at(invitation: StaffInvitation) -> datetime:
    """When the invitation stops letting its address in (STAFF_INVITATION_MAX_AGE_DAYS
    after it was made or last renewed by inviting the address again)."""
    return invitation.created_at + timedelta(
        days=current_app.config["STAFF_INVITATION_MAX_AGE_DAYS"]
    )


def invitation_expired(invitation: StaffInvitation, *, now: datetime | None = None) -> bool:
    return (now or utcnow()) >= invitation_expires_at(invitation)


@dataclass(frozen=True)
class InvitationRow:
    invitation: StaffInvitation
    expires_at: datetime
    expired: bool


def invitation_rows() -> list[InvitationRow]:
    """The invitations as the Staff page lists them: each with when it expires, or that
    it has."""
    now = utcnow()
    return [
        InvitationRow(i, invitation_expires_at(i), invitation_expired(i, now=now))
        for i in open_invitations()
    ]


# --------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class NewsletterOverview:
    id: int
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
            Newsletter.id,
            Newsletter.slug,
            Newsletter.name,
            Newsletter.is_public,
            func.coalesce(confirmed.c.confirmed, 0),
        )
        .outerjoin(confirmed, confirmed.c.newsletter_id == Newsletter.id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [NewsletterOverview(*row) for row in rows]
