from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class AuditEntry(db.Model):
    """One staff action that changed data or sent mail. Append-only.

    The application never updates or deletes a row (on PostgreSQL a trigger refuses it,
    see migration 0006). Entries name subscribers by id only, never by address or name,
    so that erasing a person leaves nothing of them here either.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_actor_id_at", "actor_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Staff accounts are deactivated, never deleted, so the link always resolves; the
    # address is kept too, as it was when the action was taken. None: the operator CLI.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    actor_email: Mapped[str] = mapped_column(String(320), default="")
    # Dotted, e.g. "edition.send", "subscribers.import", "suppression.lift".
    action: Mapped[str] = mapped_column(String(60))
    # What it acted on: "edition:12", "subscriber:345", "newsletter:bestyrelse".
    target: Mapped[str] = mapped_column(String(200), default="")
    # JSON: counts, options, the new state; never a subscriber's address.
    details: Mapped[str] = mapped_column(Text, default="{}")
    ip: Mapped[str | None] = mapped_column(String(64))
