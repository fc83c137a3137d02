from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for (another) attempt
    SENT = "sent"  # accepted by the SMTP server
    CAPTURED = "captured"  # no MAIL_SERVER: kept locally, readable at /dev/mail
    FAILED = "failed"  # permanent failure (5xx) or gave up after retries


class OutboxMessage(db.Model):
    """One mail, written in the same transaction as the action that causes it.

    The worker claims due rows (a lease, so a stopped worker's rows are taken over),
    hands them to the SMTP server and records the outcome.

    Most rows hold the whole message (`raw`). A mail queued by the hundred thousand (an
    import's invitations) holds instead what is personal in it (`fills`, JSON), and its
    kind's composer (`mailing.deferred`) writes the bytes when it is sent: `raw` reads the
    same either way.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_due", "status", "next_attempt_at"),
        # The per-address mail limit counts recent mails to one address.
        Index("ix_outbox_messages_to_address_created_at", "to_address", "created_at"),
        CheckConstraint("raw IS NOT NULL OR fills IS NOT NULL", name="raw_or_fills"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # confirm, already_subscribed, manage_link, welcome, ...
    kind: Mapped[str] = mapped_column(String(40))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    to_address: Mapped[str] = mapped_column(String(320))
    envelope_from: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    # The complete message, RFC 5322 with CRLF line ends, 7-bit (QP-encoded bodies); or
    # None, and `fills` has what the kind's composer needs to write it (see `raw`).
    stored_raw: Mapped[str | None] = mapped_column("raw", Text)
    fills: Mapped[str | None] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(
        value_enum(OutboxStatus, "outbox_status"),
        default=OutboxStatus.QUEUED,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    @property
    def raw(self) -> str:
        """The message as it is handed to the SMTP server: stored, or written now from
        `fills` by its kind's composer (the same message on every call, but for the
        time inside its links' signatures)."""
        if self.stored_raw is not None:
            return self.stored_raw
        from newsletters.mailing import deferred

        return deferred.compose(self)

    @raw.setter
    def raw(self, value: str) -> None:
        self.stored_raw = value
        self.fills = None

    def __repr__(self) -> str:
        return f"<OutboxMessage {self.id} {self.kind} {self.status}>"


class CapturedMail(db.Model):
    """A message the embedded default (no MAIL_SERVER) would have handed to SMTP, kept
    for the dev mailbox at /dev/mail: the exact bytes, of outbox mail and editions alike.

    Written only while DEV_MAILBOX is on; erasing a subscriber deletes their captures.
    """

    __tablename__ = "captured_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    envelope_from: Mapped[str] = mapped_column(String(320))
    to_address: Mapped[str] = mapped_column(String(320), index=True)
    # RFC 5322 with CRLF line ends, 7-bit, as the transport would write it (unstuffed).
    raw: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<CapturedMail {self.id} {self.to_address}>"
