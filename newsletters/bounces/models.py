from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class BounceKind(enum.StrEnum):
    HARD = "hard"  # permanent (5.x.x): the address does not exist or refuses for good
    SOFT = "soft"  # temporary (4.x.x): full mailbox, greylisting, server away


class Bounce(db.Model):
    """One bounce of one address: from a delivery status notification in the bounce
    mailbox, or a 5xx answer at send time."""

    __tablename__ = "bounces"
    __table_args__ = (Index("ix_bounces_subscriber_id_at", "subscriber_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE")
    )
    # The edition delivery it answers, when the bounce names it (Message-ID or
    # X-Newsletters-Delivery of the returned message).
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[BounceKind] = mapped_column(value_enum(BounceKind, "bounce_kind"))
    # The enhanced status code (5.1.1) or SMTP reply code when known.
    status: Mapped[str] = mapped_column(String(20), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    # "dsn" (the mailbox) or "smtp" (answer at send time).
    source: Mapped[str] = mapped_column(String(20), default="dsn")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # SHA-256 of the bounce message and the recipient: reading a mailbox twice records
    # each bounce once.
    fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
