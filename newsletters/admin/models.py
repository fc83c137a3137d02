from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class WelcomeLetter(db.Model):
    """The letter an administrator sends to the people enrolled in a newsletter on a
    recorded basis (the new mayors after an election): editable, kept per newsletter."""

    __tablename__ = "welcome_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), unique=True
    )
    subject: Mapped[str] = mapped_column(String(300))
    body_markdown: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))

    newsletter: Mapped[Newsletter] = relationship()
