from __future__ import annotations

import enum
import secrets
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletters.catalog.models import Newsletter
from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"  # asked for, waiting for the double opt-in
    CONFIRMED = "confirmed"  # receives the newsletter
    UNSUBSCRIBED = "unsubscribed"  # withdrew, or never confirmed and cancelled


class ConsentAction(enum.StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    ENROLLED = "enrolled"  # confirmed on a recorded basis (e.g. mayors taking office)
    WITHDRAWN = "withdrawn"


def new_link_key() -> str:
    """A subscriber's random link key: 128 bits, URL-safe (tokens.LINK_KEY_PATTERN)."""
    return secrets.token_urlsafe(16)


class Subscriber(db.Model):
    __tablename__ = "subscribers"
    __table_args__ = (
        # The staff pages filter on municipality or role and list in address order: with
        # the address second, a filtered page is a walk of the index that stops after the
        # page, not a sort of every matching row (issue 17: 10 000 to 140 000 rows at
        # 1 000 000 subscribers). The leading column serves the lookups by it alone; the
        # role in the municipality's entries answers both filters together from the index.
        Index("ix_subscribers_municipality_email_role", "municipality", "email", "role"),
        Index("ix_subscribers_role_email", "role", "email"),
        # Ids are never handed out again (SQLite would reuse the highest one after a delete).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Names the person in their signed links (tokens.SubscriberLink) instead of the id:
    # random, so a link can only ever match the row it was made for, and nothing in a
    # link can be counted. Unique, so it is indexed for the lookup.
    link_key: Mapped[str] = mapped_column(String(32), unique=True, default=new_link_key)
    # Normalised (email-validator) and lower-cased; the identity of a person here.
    # Compared byte by byte on every database (PostgreSQL: COLLATE "C", migration 0030),
    # as SQLite does: in a database made with a Danish collation "aa" sorts as "å", and
    # the search by the first characters (a range of this index) missed "aarhus...".
    email: Mapped[str] = mapped_column(
        String(320).with_variant(String(320, collation="C"), "postgresql"), unique=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    # Indexed with the address (__table_args__): the staff pages filter on both.
    municipality: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(100), default="")
    locale: Mapped[str] = mapped_column(String(8), default="da")
    # Part of every signed link; bumping it revokes all outstanding links.
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    # A permanent failure (5xx) at send time: no more editions go to this address.
    hard_bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Subscriber {self.id}>"


class Subscription(db.Model):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "newsletter_id"),
        # The staff pages' newsletter and status filter; the purge of stale pending ones.
        Index("ix_subscriptions_newsletter_id_status", "newsletter_id", "status"),
        Index("ix_subscriptions_status_requested_at", "status", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by the unique constraint, which leads with it.
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[SubscriptionStatus] = mapped_column(
        value_enum(SubscriptionStatus, "subscription_status"),
        default=SubscriptionStatus.PENDING,
    )
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the administrators' welcome letter (admin/welcome.py) went to this enrolment:
    # each enrolled person gets it once.
    welcome_letter_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    newsletter: Mapped[Newsletter] = relationship()

    def __repr__(self) -> str:
        return f"<Subscription {self.subscriber_id}:{self.newsletter_id} {self.status}>"


class ConsentEvent(db.Model):
    """One step of a subscription's consent history (GDPR Art. 7: consent is provable)."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[ConsentAction] = mapped_column(value_enum(ConsentAction, "consent_action"))
    # How: web_form, confirm_link, preference_centre, one_click, unsubscribe_page,
    # import_invite, import_basis, ...
    method: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # Version and locale of the consent text shown (see subscriptions/consent.py).
    consent_text_version: Mapped[str | None] = mapped_column(String(40))
    locale: Mapped[str | None] = mapped_column(String(8))
    # For enrolments: the recorded basis, as the administrator stated it.
    basis: Mapped[str | None] = mapped_column(Text)
    # The edition whose unsubscribe link was used (a withdrawal from a mail), when known:
    # counted on the edition's report. An id only: an edition may be deleted later.
    edition_id: Mapped[int | None] = mapped_column(Integer, index=True)

    subscription: Mapped[Subscription] = relationship()


class ConsentDayCount(db.Model):
    """How many consent records of each action and method a newsletter got on one day
    (UTC): what the newsletter's report reads, instead of every record of half a year.

    Written by the database only: triggers on consent_events (migration 0025) add each
    record inserted and take off each deleted (an erasure, the purge of pending ones),
    whatever inserts or deletes it. Consent records are never changed. A record deleted
    by a cascade from its subscription (the subscription's row already gone) cannot be
    placed; the code that deletes subscriptions deletes their records first.
    """

    __tablename__ = "consent_day_counts"

    newsletter_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Whole days since the Unix epoch.
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(20), primary_key=True)
    method: Mapped[str] = mapped_column(String(40), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class SubscribeRequest(db.Model):
    """A subscribe form as it was posted, waiting for the worker (the intake).

    The request only writes this row (one short INSERT); the worker turns it into the
    subscriber, the pending subscriptions, the consent records and the confirmation
    mail in one transaction that also deletes the row, so each request is carried out
    exactly once and the form stays fast under load.
    """

    __tablename__ = "subscribe_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    municipality: Mapped[str] = mapped_column(String(100), default="")
    # Newsletter slugs, comma-separated, as asked for.
    newsletters: Mapped[str] = mapped_column(String(1000))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    locale: Mapped[str] = mapped_column(String(8), default="da")
    consent_text_version: Mapped[str] = mapped_column(String(40))
    # The channel it came through, for the consent record: None is the subscribe form
    # ("web_form"); "api:<token name>" the REST API.
    method: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # No index: the table is nearly empty (rows go as they are processed) and every
    # index would slow the INSERT the form waits for.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCES = "soft_bounces"
    ERASURE = "erasure"  # erased, and asked never to be mailed again
    MANUAL = "manual"  # added by staff


class Suppression(db.Model):
    """An address that must not be mailed: checked at subscribe, import, confirm and when
    an edition's send starts.

    `address_hash` is an HMAC of the normalised address (key: SUPPRESSION_HASH_KEY), so an
    erased person stays suppressed without their address being stored. `email` is kept
    for the other reasons, so staff can see whom an entry concerns, and is what the send
    query joins on.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(
        value_enum(SuppressionReason, "suppression_reason")
    )
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    # How many soft bounces led to it, for SOFT_BOUNCES.
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
