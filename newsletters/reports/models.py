from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.extensions import db


class ErasureCount(db.Model):
    """How many confirmed readers of a newsletter were erased in a week: nothing personal,
    kept so the newsletter's report can say how many left by erasure after the person's
    own records are gone."""

    __tablename__ = "erasure_counts"
    __table_args__ = (UniqueConstraint("newsletter_id", "week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(Integer)
    week: Mapped[date] = mapped_column(Date)  # the Monday
    count: Mapped[int] = mapped_column(Integer, default=0)
