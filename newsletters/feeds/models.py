from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletters.catalog.models import Newsletter
from newsletters.columns import value_enum
from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow

MAX_URL_LENGTH = 2000


class Feed(db.Model):
    """An RSS or Atom feed whose new items go into a newsletter's digest.

    `next_attempt_at`, `leased_until` and `leased_by` let the scheduler claim due feeds
    with `jobs.claim`, like every other job.
    """

    __tablename__ = "feeds"
    __table_args__ = (UniqueConstraint("newsletter_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    # The administrator's name for it; else the feed's own title once fetched.
    title: Mapped[str] = mapped_column(String(300), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why it was disabled by the fetcher (410 Gone), shown on the staff page.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Conditional GET: what the server sent last time.
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # Health, shown on the staff page.
    last_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    # The last failure: in English (the CLI, the log), and its kind (fetching.FetchErrorKind),
    # which the staff page says in the reader's language.
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_kind: Mapped[str | None] = mapped_column(String(30))
    failures_in_a_row: Mapped[int] = mapped_column(Integer, default=0)
    # Scheduling (jobs.claim).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    # The filter (newsletters/feeds/filters.py): words and categories, one a line.
    filter_include: Mapped[str] = mapped_column(Text, default="", server_default="")
    filter_exclude: Mapped[str] = mapped_column(Text, default="", server_default="")
    filter_categories: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Where its section comes in a digest grouped by feed (lowest first; then by id).
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    newsletter: Mapped[Newsletter] = relationship()

    @property
    def label(self) -> str:
        return self.title or self.url


class FeedItem(db.Model):
    """One article from a feed, sanitised, unique per newsletter.

    `key` is the identity used for de-duplication: a hash of the GUID, else of the link,
    else of the content. An item the publisher edits keeps its key and is updated.
    """

    __tablename__ = "feed_items"
    __table_args__ = (
        UniqueConstraint("newsletter_id", "key"),
        # Digests select a newsletter's items by when they were first seen.
        Index("ix_feed_items_newsletter_id_first_seen_at", "newsletter_id", "first_seen_at"),
        Index("ix_feed_items_newsletter_id_link", "newsletter_id", "link"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    guid: Mapped[str] = mapped_column(String(MAX_URL_LENGTH), default="")
    link: Mapped[str] = mapped_column(String(MAX_URL_LENGTH), default="")
    title: Mapped[str] = mapped_column(String(500), default="")
    # Sanitised (nh3) HTML, and the plain-text summary the digest mail shows.
    summary_html: Mapped[str] = mapped_column(Text, default="")
    summary_text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(300), default="")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Hash of what the reader sees: a change means the publisher edited the item.
    content_hash: Mapped[str] = mapped_column(String(64))
    # Seen in the feed's first successful fetch: its history, which a first digest
    # takes only within the cadence's window.
    initial: Mapped[bool] = mapped_column(Boolean, default=False)
    # The item's categories (RSS <category>, Atom term), one a line.
    categories: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Left out of digests by its feed's filter: kept, shown as such, judged again when
    # the filter changes.
    filtered_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    feed: Mapped[Feed] = relationship()


class SkipReason(enum.StrEnum):
    """Why a scheduled digest was not made (shown on the feeds page)."""

    # No scheduler ran between the hour and the end of its catch-up window (the worker
    # was stopped, or started only later).
    MISSED = "missed"
    # Feeds due for it were still not fetched when the catch-up window closed: a digest
    # without them would have been half-built.
    FEEDS_NOT_FETCHED = "feeds_not_fetched"


class DigestRun(db.Model):
    """One digest of a newsletter: the items first seen in (since, cutoff]; or one
    scheduled slot that was skipped (`skipped` says why), whose items wait for the next.

    Two uniqueness constraints make "never built twice for the same window" a property
    of the database, whatever number of schedulers run: `number` follows the previous
    run's (two builders that saw the same previous run collide, and so do a builder and
    a scheduler that records the slot as skipped), and `slot` names the scheduled day
    (two schedulers at the same hour collide).
    """

    __tablename__ = "digest_runs"
    __table_args__ = (
        UniqueConstraint("newsletter_id", "number"),
        UniqueConstraint("newsletter_id", "slot"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # "2026-11-30" for the scheduled digest of that day (Copenhagen); "manual:..." else.
    slot: Mapped[str] = mapped_column(String(60))
    # The instant of a scheduled slot (its hour in Copenhagen); None for a manual digest.
    slot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None for a skipped slot: it digested nothing.
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    # None when there was nothing new: no new items, no edition.
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("editions.id", ondelete="SET NULL"), index=True
    )
    auto_send: Mapped[bool] = mapped_column(Boolean, default=False)
    skipped: Mapped[SkipReason | None] = mapped_column(value_enum(SkipReason, "skip_reason"))
    # For a skipped slot: when a scheduler noticed that it was too late.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="")
