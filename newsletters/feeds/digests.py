"""Digests: the feed items new since the last digest, made into a normal edition.

"New since the last digest" (the rule of Mailchimp's RSS campaigns) is judged by when
we first saw an item, not by the date the publisher wrote on it: a backdated or undated
item is still news the first time it appears, and an edited one is not news again.
Each digest records the interval it covered (`DigestRun`), so the next one starts where
it ended; the database's uniqueness constraints, not a check, make sure no interval or
scheduled day is digested twice, however many schedulers run.

The items are copied into the edition's items (heading, summary, link): a digest is an
edition like any other (preview, test, review, sending, web version), and what was sent
stays as it was sent when the publisher later edits the article.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import current_app
from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from newsletters import jobs
from newsletters.catalog.models import DigestCadence, DigestMode, Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import sending
from newsletters.editions.models import Edition, EditionItem, EditionStatus
from newsletters.editions.sending import EditionError
from newsletters.extensions import db
from newsletters.feeds.models import DigestRun, Feed, FeedItem
from newsletters.timeutil import utcnow

log = logging.getLogger(__name__)

# A weekly digest waits this long after the last one that had news (a little less than
# seven days, so that the same hour a week later qualifies).
WEEKLY_GAP = timedelta(days=7) - timedelta(hours=1)


class DigestError(ValueError):
    """A digest cannot be made as asked (unknown newsletter, not feed-based)."""


class DigestAlreadyBuilt(DigestError):
    """Another scheduler (or operator) made this digest first; nothing was done."""


@dataclass
class DigestOutcome:
    newsletter_slug: str
    run_id: int | None
    item_count: int
    edition_id: int | None
    auto_send: bool
    recipients: int | None = None

    def describe(self) -> str:
        """One line for the CLI."""
        if self.edition_id is None:
            return f"{self.newsletter_slug}: no new items since the last digest, no edition"
        text = f"{self.newsletter_slug}: edition {self.edition_id} with {self.item_count} item(s)"
        if not self.auto_send:
            return text + ", waiting for review as a draft"
        if self.recipients is not None:
            return text + f", sending to {self.recipients} recipient(s)"
        return text + ", scheduled to be sent now"


def local_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def cadence_window(cadence: DigestCadence, at: datetime) -> timedelta:
    """How far back a first digest (or a newly added feed) may reach at `at`: one
    period of the cadence (on a Monday, a weekday digest's period is the weekend too)."""
    if cadence == DigestCadence.WEEKLY:
        return timedelta(days=7)
    if cadence == DigestCadence.WEEKDAYS and at.astimezone(local_zone()).weekday() == 0:
        return timedelta(days=3)
    return timedelta(days=1)


# Markdown characters that would turn a publisher's plain text into markup.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def escape_markdown(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _new_items(newsletter: Newsletter, since: datetime | None, cutoff: datetime):
    window_start = cutoff - cadence_window(newsletter.digest_cadence, cutoff)
    dated = func.coalesce(FeedItem.published_at, FeedItem.first_seen_at)
    query = select(FeedItem).where(
        FeedItem.newsletter_id == newsletter.id, FeedItem.first_seen_at <= cutoff
    )
    if since is None:
        # The very first digest: the cadence's window, not the feeds' whole history.
        query = query.where(dated >= window_start)
    else:
        # A feed added since: its first fetch brought its history, of which only the
        # window counts; everything seen after that is news.
        query = query.where(
            FeedItem.first_seen_at > since,
            or_(FeedItem.initial.is_(False), dated >= window_start),
        )
    limit = int(current_app.config["DIGEST_MAX_ITEMS"])
    return list(db.session.scalars(query.order_by(dated.desc(), FeedItem.id.desc()).limit(limit)))


def _subject(newsletter: Newsletter, when: datetime) -> str:
    day = when.astimezone(local_zone()).date()
    return f"{newsletter.name} {format_date(day, format='long', locale='da')}"


def build_digest(
    newsletter_id: int, *, slot: str | None = None, created_by: str = "scheduler"
) -> DigestOutcome:
    """Make the digest of the items first seen since the last digest, in one transaction.

    No new items: the run is recorded, no edition is made. Auto-send: the edition is
    made SCHEDULED for now, so the worker starts it even if this process stops here.
    Review: it waits as a draft. Raises DigestAlreadyBuilt if another builder made the
    digest of this interval (or this scheduled `slot`) first.
    """
    newsletter = db.session.get(Newsletter, newsletter_id)
    if newsletter is None:
        raise DigestError(f"there is no newsletter {newsletter_id}")
    now = utcnow()
    previous = db.session.scalar(
        select(DigestRun)
        .where(DigestRun.newsletter_id == newsletter.id)
        .order_by(DigestRun.number.desc())
        .limit(1)
    )
    since = previous.cutoff if previous else None
    items = _new_items(newsletter, since, now)
    auto = newsletter.digest_mode == DigestMode.AUTO
    run = DigestRun(
        newsletter_id=newsletter.id,
        number=(previous.number + 1) if previous else 1,
        slot=slot or f"manual:{now.isoformat(timespec='microseconds')}",
        since=since,
        cutoff=now,
        item_count=len(items),
        auto_send=auto,
        created_by=created_by,
    )
    edition = None
    if items:
        edition = Edition(
            newsletter_id=newsletter.id,
            subject=_subject(newsletter, now)[:300],
            body_markdown="",
            created_by=created_by,
            status=EditionStatus.SCHEDULED if auto else EditionStatus.DRAFT,
            scheduled_at=now if auto else None,
            items=[
                EditionItem(
                    position=position,
                    heading=item.title[:300] or item.link[:300],
                    text_markdown=escape_markdown(item.summary_text),
                    link=item.link if len(item.link) <= 1000 else "",
                )
                for position, item in enumerate(items)
            ],
        )
        db.session.add(edition)
        db.session.flush()
        run.edition_id = edition.id
        if auto:
            jobs.queued_work()
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise DigestAlreadyBuilt(
            f"the digest of {newsletter.slug} for this window has already been made"
        ) from error
    log.info("digest of %s: %s item(s), edition %s", newsletter.slug, len(items), run.edition_id)
    return DigestOutcome(
        newsletter_slug=newsletter.slug,
        run_id=run.id,
        item_count=len(items),
        edition_id=run.edition_id,
        auto_send=auto,
    )


def _has_feeds(newsletter_id: int):
    return exists().where(Feed.newsletter_id == newsletter_id)


def feed_based_newsletters() -> list[Newsletter]:
    """Newsletters whose digests are on (auto-send or review) and that have a feed."""
    return list(
        db.session.scalars(
            select(Newsletter)
            .where(Newsletter.digest_mode != DigestMode.OFF, _has_feeds(Newsletter.id))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )


def run_digests(slug: str | None = None, *, created_by: str = "cli") -> list[DigestOutcome]:
    """Make now the digest of every feed-based newsletter (or of `slug`), and start
    sending those in auto-send mode at once."""
    if slug is not None:
        newsletter = newsletter_by_slug(slug)
        if newsletter is None:
            raise DigestError(f"there is no newsletter '{slug}'")
        if newsletter.digest_mode == DigestMode.OFF:
            raise DigestError(
                f"{slug} is not made from feeds (its digest is off in the staff pages)"
            )
        if not db.session.scalar(select(_has_feeds(newsletter.id))):
            raise DigestError(f"{slug} has no feeds: add one with `feeds add {slug} URL`")
        targets = [newsletter.id]
    else:
        targets = [n.id for n in feed_based_newsletters()]
    outcomes = []
    for newsletter_id in targets:
        outcome = build_digest(newsletter_id, created_by=created_by)
        if outcome.edition_id is not None and outcome.auto_send:
            try:
                outcome.recipients = sending.start_send(outcome.edition_id)
            except EditionError:
                # A worker's scheduler started it a moment before us: it is being sent.
                db.session.rollback()
        outcomes.append(outcome)
    return outcomes


def slot_due(newsletter: Newsletter, now: datetime) -> str | None:
    """The scheduled slot (the local date) due now for this newsletter, or None."""
    local = now.astimezone(local_zone())
    if newsletter.digest_cadence == DigestCadence.WEEKDAYS and local.weekday() >= 5:
        return None
    if local.hour < newsletter.digest_hour:
        return None
    return local.date().isoformat()


def scheduled_digests(worker_id: str = "") -> int:
    """The scheduler's job: make each feed-based newsletter's digest once its hour has
    come (Copenhagen time) on a day its cadence allows; the number made."""
    now = utcnow()
    made = 0
    for newsletter in feed_based_newsletters():
        slot = slot_due(newsletter, now)
        if slot is None:
            continue
        done = db.session.scalar(
            select(DigestRun.id).where(
                DigestRun.newsletter_id == newsletter.id, DigestRun.slot == slot
            )
        )
        if done is not None:
            continue
        if newsletter.digest_cadence == DigestCadence.WEEKLY:
            recent = db.session.scalar(
                select(DigestRun.id).where(
                    DigestRun.newsletter_id == newsletter.id,
                    DigestRun.edition_id.is_not(None),
                    DigestRun.cutoff > now - WEEKLY_GAP,
                )
            )
            if recent is not None:
                continue
        try:
            build_digest(newsletter.id, slot=slot, created_by="scheduler")
        except DigestAlreadyBuilt:
            continue
        made += 1
    db.session.commit()
    return made
