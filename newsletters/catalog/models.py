import enum
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, false, true
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class DigestMode(enum.StrEnum):
    """What happens to a feed-based newsletter's daily digest."""

    OFF = "off"  # not made from feeds (the board-meeting newsletter)
    AUTO = "auto"  # built and sent at the newsletter's hour
    REVIEW = "review"  # built at the hour, waits as a draft for an editor


class DigestCadence(enum.StrEnum):
    DAILY = "daily"
    WEEKDAYS = "weekdays"  # Monday to Friday
    WEEKLY = "weekly"  # when there are new items, at most once in seven days


class Newsletter(db.Model):
    __tablename__ = "newsletters"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Public texts in Danish (first) and English.
    description_da: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    cadence_da: Mapped[str] = mapped_column(String(200), default="")
    cadence_en: Mapped[str] = mapped_column(String(200), default="")
    # Whether the public form offers it; mayors are enrolled in bestyrelse by KL
    # but anyone may still ask for it by double opt-in.
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Whether its sent editions are listed on a public archive page and Atom feed
    # (editions/archive.py). New newsletters follow is_public unless it is set.
    archive_public: Mapped[bool] = mapped_column(
        Boolean,
        default=lambda ctx: ctx.get_current_parameters().get("is_public", True),
        server_default=true(),
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Counting opens and clicks per edition and per link (editions/engagement.py): off
    # unless an administrator turns it on; never anything per person.
    engagement_counting: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The digest of new feed items (newsletters/feeds/digests.py).
    digest_mode: Mapped[DigestMode] = mapped_column(
        value_enum(DigestMode, "digest_mode"), default=DigestMode.OFF, server_default="off"
    )
    digest_cadence: Mapped[DigestCadence] = mapped_column(
        value_enum(DigestCadence, "digest_cadence"),
        default=DigestCadence.DAILY,
        server_default="daily",
    )
    # The hour (0-23, Copenhagen time) at which the digest is built.
    digest_hour: Mapped[int] = mapped_column(Integer, default=7, server_default="7")
    # A digest's items grouped by feed, under each feed's title (in the feeds' positions).
    digest_sections: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the digest's schedule began (turned on, or its cadence or hour changed): the
    # hours before it were never due, so they are neither made up for nor counted as
    # skipped (feeds/digests.py).
    digest_schedule_from: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_feed_based(self) -> bool:
        return self.digest_mode != DigestMode.OFF

    def description(self, locale: str) -> str:
        return (
            self.description_en if locale == "en" and self.description_en else self.description_da
        )

    def cadence(self, locale: str) -> str:
        return self.cadence_en if locale == "en" and self.cadence_en else self.cadence_da

    def __repr__(self) -> str:
        return f"<Newsletter {self.slug}>"
