from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletters.catalog.models import Newsletter
from newsletters.columns import value_enum
from newsletters.editions.states import Action, EditionStatus, allowed
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for (another) attempt
    SENDING = "sending"  # handed to a worker that is sending it right now
    SENT = "sent"  # accepted by the SMTP server
    FAILED = "failed"  # 5xx (a hard bounce) or gave up
    SKIPPED = "skipped"  # unsubscribed (or erased) before it was sent
    CANCELLED = "cancelled"  # the send was cancelled before it was sent


class Edition(db.Model):
    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="RESTRICT"), index=True
    )
    subject: Mapped[str] = mapped_column(String(300))
    # The subject English readers get, where there is one (a digest's date in English);
    # None: everyone gets `subject`. Cleared when an editor changes the subject.
    subject_en: Mapped[str | None] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    body_markdown: Mapped[str] = mapped_column(Text, default="")
    # For "Nyt fra KL's bestyrelse": the board meeting the edition reports on.
    meeting_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[EditionStatus] = mapped_column(
        value_enum(EditionStatus, "edition_status"), default=EditionStatus.DRAFT
    )
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    # The lowest id of its deliveries: where the senders start walking (see Delivery).
    first_delivery_id: Mapped[int | None] = mapped_column(Integer)
    # Why a send paused itself (too many failures in a row), shown to the editor.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # The part of the readers it goes to, in its canonical spelling (editions/segments.py),
    # e.g. "region=Hovedstaden AND role=borgmester"; None: every confirmed reader.
    segment: Mapped[str | None] = mapped_column(Text)

    newsletter: Mapped[Newsletter] = relationship()
    items: Mapped[list[EditionItem]] = relationship(
        back_populates="edition",
        cascade="all, delete-orphan",
        order_by="EditionItem.position",
    )

    @property
    def editable(self) -> bool:
        """Whether its content may still change (states: draft or scheduled)."""
        return allowed(self.status, Action.EDIT)

    def subject_for(self, locale: str | None) -> str:
        """The subject a reader in `locale` gets."""
        return subject_in(self.subject, self.subject_en, locale)


def subject_in(subject: str, subject_en: str | None, locale: str | None) -> str:
    """`subject_en` for an English reader where the edition has one, else `subject`."""
    if subject_en and (locale or "").lower().startswith("en"):
        return subject_en
    return subject


class EditionItem(db.Model):
    """One decision or item of a board-meeting edition."""

    __tablename__ = "edition_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    heading: Mapped[str] = mapped_column(String(300))
    text_markdown: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str] = mapped_column(String(1000), default="")

    edition: Mapped[Edition] = relationship(back_populates="items")


class Delivery(db.Model):
    """One edition to one subscriber: created for everyone confirmed when the send starts.

    A worker marks a delivery SENDING in a committed transaction before it hands the
    message over, and SENT after. A worker killed in between leaves one SENDING row,
    which is sent again after its lease runs out and counted in `possible_duplicates`.

    No index holds a column that sending changes (status, attempts, lease, sent_at), so
    on PostgreSQL those two updates per message are HOT (no index entries written), on
    pages kept part empty for them (fillfactor, migration 0007). Workers find queued
    deliveries by walking the primary key (`send_due`'s cursor), not by status.

    No foreign keys either: checking two of them for each of 100 000 rows was 60 % of
    starting a send on PostgreSQL. Deliveries are only ever inserted by `start_send`,
    from a join with `subscribers` and for an edition it holds locked; deleting a
    subscriber or an edition deletes their deliveries by trigger (migration 0007), as
    ON DELETE CASCADE did; the sender skips a delivery whose subscriber is gone.
    """

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("edition_id", "subscriber_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(Integer)
    subscriber_id: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        value_enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Times it was taken over from a worker that died while sending it: each may have
    # arrived once more.
    possible_duplicates: Mapped[int] = mapped_column(Integer, default=0)


class EditionLink(db.Model):
    """A link address an edition contains, counted as a whole (editions/engagement.py):
    the counted link names this row's id, so it can lead nowhere else."""

    __tablename__ = "edition_links"
    __table_args__ = (UniqueConstraint("edition_id", "url_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    url_hash: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    clicks: Mapped[int] = mapped_column(Integer, default=0)


class EditionOpens(db.Model):
    """How many times an edition's picture was fetched: a count, nothing per person."""

    __tablename__ = "edition_opens"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    opens: Mapped[int] = mapped_column(Integer, default=0)


class EditionSendSummary(db.Model):
    """What became of a finished send's messages, counted once when it finished
    (editions/summaries.py), so that its report need not count 100 000 deliveries again.

    Kept equal to counting the deliveries: a delivery deleted later (the subscriber's
    erasure) is taken off these counts in the same transaction.
    """

    __tablename__ = "edition_send_summaries"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    possible_duplicates: Mapped[int] = mapped_column(Integer, default=0)
    # The lowest and highest id of its deliveries: where its bounces are (bounces name
    # the delivery), found without visiting every delivery.
    first_delivery_id: Mapped[int | None] = mapped_column(Integer)
    last_delivery_id: Mapped[int | None] = mapped_column(Integer)
    summarised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EditionSendMinute(db.Model):
    """How many of a finished send's messages went in one minute (UTC), for its chart."""

    __tablename__ = "edition_send_minutes"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    # Whole minutes since the Unix epoch.
    minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sent: Mapped[int] = mapped_column(Integer, default=0)
