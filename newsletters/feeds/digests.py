"""Digests: the feed items new since the last digest, made into a normal edition.

"New since the last digest" (the rule of Mailchimp's RSS campaigns) is judged by when
we first saw an item, not by the date the publisher wrote on it: a backdated or undated
item is still news the first time it appears, and an edited one is not news again.
Each digest records the interval it covered (`DigestRun`), so the next one starts where
it ended; the database's uniqueness constraints, not a check, make sure no interval or
scheduled day is digested twice, however many schedulers run.

A scheduled digest has a slot: a day its cadence allows, at the newsletter's hour in
Copenhagen. It goes at that hour or within DIGEST_CATCH_UP_MINUTES after it, never
later: a slot whose window has closed is recorded as skipped (which slot, when it was
noticed, why), and its items wait for the next one. It is never half-built: it is made
only once every enabled feed that was due to be fetched by the hour (a feed attached a
moment before it, say) has been fetched, or has failed. A newsletter's first slot is the
first one after its schedule began (its first feed attached, its digest turned on, its
hour or cadence changed): an hour that passed before is not made up for.

The items are copied into the edition's items (heading, summary, link): a digest is an
edition like any other (preview, test, review, sending, web version), and what was sent
stays as it was sent when the publisher later edits the article.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import current_app
from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from newsletters import events, jobs
from newsletters.catalog.models import DigestCadence, DigestMode, Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import drafts, editing, lifecycle
from newsletters.editions.drafts import ItemInput
from newsletters.editions.rendering import RenderedEdition
from newsletters.editions.states import EditionError
from newsletters.extensions import db
from newsletters.feeds.models import DigestRun, Feed, FeedItem, SkipReason
from newsletters.timeutil import utcnow

log = logging.getLogger(__name__)

# A weekly digest waits this long after the last one that had news (a little less than
# seven days, so that the same hour a week later qualifies, across a change of the
# clocks too).
WEEKLY_GAP = timedelta(days=7) - timedelta(hours=1)

# How far back a scheduler that starts late records the slots that were missed.
SKIP_LOOKBACK = timedelta(days=7)


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


def feed_item_input(item: FeedItem) -> ItemInput:
    """A feed item as an edition's item (a copy): its title, summary (as text, never
    Markdown of the feed's making) and link; editions' drafts check it."""
    return ItemInput(
        heading=item.title or item.link,
        text_markdown=escape_markdown(item.summary_text),
        link=item.link,
    )


def _new_items(
    newsletter: Newsletter, since: datetime | None, cutoff: datetime, window_start: datetime
):
    dated = func.coalesce(FeedItem.published_at, FeedItem.first_seen_at)
    query = select(FeedItem).where(
        FeedItem.newsletter_id == newsletter.id,
        FeedItem.first_seen_at <= cutoff,
        # Left out by its feed's filter: kept, never digested.
        FeedItem.filtered_out.is_(False),
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


def _subject(newsletter: Newsletter, when: datetime, locale: str = "da") -> str:
    """The digest's subject: the newsletter's name and the day, in `locale` ("4. december
    2026"; English readers get "December 4, 2026", edition.subject_en)."""
    day = when.astimezone(local_zone()).date()
    return f"{newsletter.name} {format_date(day, format='long', locale=locale)}"


def _last_run(newsletter_id: int, *, built: bool = False) -> DigestRun | None:
    """The newsletter's latest digest run (`built`: the latest that was not skipped)."""
    query = select(DigestRun).where(DigestRun.newsletter_id == newsletter_id)
    if built:
        query = query.where(DigestRun.skipped.is_(None))
    return db.session.scalar(query.order_by(DigestRun.number.desc()).limit(1))


def _window_start(newsletter: Newsletter, cutoff: datetime, last_built: DigestRun | None):
    """Where a digest made at `cutoff` reaches back to for a first digest or a new feed's
    history: one period of the cadence, and the period of every slot skipped since the
    last digest (their items waited for this one)."""
    cadence = newsletter.digest_cadence
    start = cutoff - cadence_window(cadence, cutoff)
    query = select(func.min(DigestRun.slot_at)).where(
        DigestRun.newsletter_id == newsletter.id, DigestRun.skipped.is_not(None)
    )
    if last_built is not None:
        query = query.where(DigestRun.number > last_built.number)
    first_skipped = db.session.scalar(query)
    if first_skipped is not None:
        start = min(start, first_skipped - cadence_window(cadence, first_skipped))
    return start


def _pending(newsletter: Newsletter, now: datetime):
    """What a digest made `now` would take: (the last run, the cutoff it starts from,
    the items that pass their feeds' filters)."""
    previous = _last_run(newsletter.id)
    last_built = previous
    if previous is not None and previous.skipped is not None:
        last_built = _last_run(newsletter.id, built=True)
    since = last_built.cutoff if last_built else None
    items = _new_items(newsletter, since, now, _window_start(newsletter, now, last_built))
    return previous, since, items


def digest_inputs(newsletter: Newsletter, items: list[FeedItem]) -> list[ItemInput]:
    """The digest's items as an edition's: newest first; with the newsletter's sections
    setting, grouped by feed (in the feeds' positions), each group under its feed's
    title (an item of its own, heading only)."""
    if not newsletter.digest_sections:
        return [feed_item_input(item) for item in items]
    feeds = {
        feed.id: feed
        for feed in db.session.scalars(select(Feed).where(Feed.newsletter_id == newsletter.id))
    }
    groups: dict[int, list[FeedItem]] = {}
    for item in items:
        groups.setdefault(item.feed_id, []).append(item)
    inputs: list[ItemInput] = []
    for feed_id in sorted(groups, key=lambda i: (feeds[i].position, i) if i in feeds else (0, i)):
        feed = feeds.get(feed_id)
        inputs.append(ItemInput(heading=section_heading(feed.label if feed else "")))
        inputs.extend(feed_item_input(item) for item in groups[feed_id])
    return inputs


def section_heading(title: str) -> str:
    """A section's heading: the feed's title, marked apart from the articles' headings
    (in the HTML and the plain text alike, which render headings the same)."""
    return f"■ {' '.join(title.split()) or '–'}"


@dataclass
class DigestPreview:
    """What the next digest would contain if it were made now."""

    slot: Slot | None
    subject: str
    item_count: int
    # None without items: no edition would be made.
    rendered: RenderedEdition | None


def preview_digest(newsletter: Newsletter) -> DigestPreview:
    """The next digest as it would be mailed if it were made now (the same rendering as
    the mail, with the sample personal links); nothing is stored."""
    now = utcnow()
    _previous, _since, items = _pending(newsletter, now)
    slot = next_slot(newsletter, now)
    subject = _subject(newsletter, slot.at if slot else now)
    if not items:
        return DigestPreview(slot, subject, 0, None)
    edition = drafts.unsaved_draft(
        newsletter, subject, items=digest_inputs(newsletter, items), fit=True
    )
    return DigestPreview(slot, subject, len(items), editing.preview_unsaved(edition))


def build_digest(
    newsletter_id: int,
    *,
    slot: Slot | None = None,
    created_by: str = "scheduler",
    actor: events.Actor | None = None,
    as_draft: bool = False,
) -> DigestOutcome:
    """Make the digest of the items first seen since the last digest, in one transaction.

    `as_draft`: a draft to edit, even in auto-send mode (an editor took the preview).

    No new items: the run is recorded, no edition is made. Auto-send: the edition is
    made SCHEDULED for now, so the worker starts it even if this process stops here.
    Review: it waits as a draft. Raises DigestAlreadyBuilt if another builder made the
    digest of this interval (or this scheduled `slot`) first, or a scheduler recorded
    the slot as skipped. Made by someone (`actor`): announced as `digest.make` (the
    audit entry); the scheduler's digests are not.
    """
    newsletter = db.session.get(Newsletter, newsletter_id)
    if newsletter is None:
        raise DigestError(f"there is no newsletter {newsletter_id}")
    now = utcnow()
    previous, since, items = _pending(newsletter, now)
    auto = newsletter.digest_mode == DigestMode.AUTO and not as_draft
    run = DigestRun(
        newsletter_id=newsletter.id,
        number=(previous.number + 1) if previous else 1,
        slot=slot.key if slot else f"manual:{now.isoformat(timespec='microseconds')}",
        slot_at=slot.at if slot else None,
        since=since,
        cutoff=now,
        item_count=len(items),
        auto_send=auto,
        created_by=created_by,
    )
    edition = None
    if items:
        # The editor's rules for items, fitted (nobody can correct a feed): a heading cut
        # to length, a link that is not http(s) left out. Not audited: nobody acted.
        edition = drafts.create_draft(
            newsletter,
            _subject(newsletter, now),
            subject_en=_subject(newsletter, now, "en"),
            items=digest_inputs(newsletter, items),
            created_by=created_by,
            scheduled_at=now if auto else None,
            fit=True,
            actor=actor or events.WORKER,
            audited=False,
        )
        run.edition_id = edition.id
        if actor is not None:
            events.announce(
                "digest.make",
                f"edition:{edition.id}",
                actor=actor,
                newsletter=newsletter.slug,
                auto_send=auto,
            )
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


def run_digests(
    slug: str | None = None, *, created_by: str = "cli", actor: events.Actor | None = None
) -> list[DigestOutcome]:
    """Make now the digest of every feed-based newsletter (or of `slug`), and start
    sending those in auto-send mode at once (as `actor`, the CLI by default)."""
    actor = actor or events.CLI
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
        outcome = build_digest(newsletter_id, created_by=created_by, actor=actor)
        if outcome.edition_id is not None and outcome.auto_send:
            try:
                outcome.recipients = lifecycle.start_send(outcome.edition_id, actor=actor)
            except EditionError:
                # A worker's scheduler started it a moment before us: it is being sent.
                db.session.rollback()
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Slot:
    """A scheduled digest: a day (Copenhagen) its cadence allows, and the instant of the
    newsletter's hour on it; it may be made until `closes_at`."""

    key: str  # the day, "2026-11-30": at most one scheduled digest a day
    at: datetime
    closes_at: datetime


def catch_up_window() -> timedelta:
    return timedelta(minutes=float(current_app.config["DIGEST_CATCH_UP_MINUTES"]))


def slot_on(newsletter: Newsletter, day: date) -> Slot | None:
    """The newsletter's slot on `day`, or None on a day its cadence leaves out.

    The hour is Copenhagen's wall clock: 07:00 is 06:00 UTC in winter and 05:00 UTC in
    summer. An hour the clocks skip (02:00 when they go forward) is the instant they
    jump to (03:00 summer time); an hour they repeat (02:00 when they go back) is its
    first occurrence: one slot a day either way.
    """
    if newsletter.digest_cadence == DigestCadence.WEEKDAYS and day.weekday() >= 5:
        return None
    at = datetime.combine(day, time(newsletter.digest_hour), tzinfo=local_zone()).astimezone(UTC)
    return Slot(key=day.isoformat(), at=at, closes_at=at + catch_up_window())


def schedule_start(newsletter: Newsletter) -> datetime | None:
    """When the newsletter's digest schedule began: its first feed attached, or its
    digest turned on or its hour or cadence changed, whichever came last; None without
    feeds. No slot before it is due."""
    first_feed = db.session.scalar(
        select(func.min(Feed.created_at)).where(Feed.newsletter_id == newsletter.id)
    )
    if first_feed is None:
        return None
    changed = newsletter.digest_schedule_from
    return max(first_feed, changed) if changed is not None else first_feed


def _last_slot_key(newsletter_id: int) -> str | None:
    """The latest scheduled day accounted for (made or skipped)."""
    return db.session.scalar(
        select(func.max(DigestRun.slot)).where(
            DigestRun.newsletter_id == newsletter_id, ~DigestRun.slot.startswith("manual:")
        )
    )


def _last_news_at(newsletter_id: int) -> datetime | None:
    """When the newsletter's latest digest with news was due (made, if by hand)."""
    return db.session.scalar(
        select(func.max(func.coalesce(DigestRun.slot_at, DigestRun.cutoff))).where(
            DigestRun.newsletter_id == newsletter_id, DigestRun.edition_id.is_not(None)
        )
    )


def _slots(newsletter: Newsletter, start: datetime, end: datetime) -> list[Slot]:
    """The newsletter's slots from `start` to `end` that are not accounted for (made or
    skipped), oldest first; a weekly newsletter's only from a week after its last news."""
    last_key = _last_slot_key(newsletter.id)
    weekly = newsletter.digest_cadence == DigestCadence.WEEKLY
    last_news = _last_news_at(newsletter.id) if weekly else None
    zone = local_zone()
    day, last_day = start.astimezone(zone).date(), end.astimezone(zone).date()
    slots: list[Slot] = []
    while day <= last_day:
        slot = slot_on(newsletter, day)
        day += timedelta(days=1)
        if slot is None or not start <= slot.at <= end:
            continue
        if last_key is not None and slot.key <= last_key:
            continue  # made or skipped already (or older than the last that was)
        if last_news is not None and slot.at - last_news < WEEKLY_GAP:
            continue  # a weekly digest: not within a week of the last one with news
        slots.append(slot)
    return slots


def feeds_awaited(newsletter_id: int, slot: Slot) -> int:
    """The enabled feeds of the newsletter that were due to be fetched by the slot's
    hour and have not been since (a feed attached just before it, say): while there are
    any, the digest would be half-built. A fetch that failed counts as done (the next
    attempt is then later)."""
    return db.session.scalar(
        select(func.count(Feed.id)).where(
            Feed.newsletter_id == newsletter_id,
            Feed.enabled.is_(True),
            Feed.next_attempt_at <= slot.at,
        )
    )


def next_slot(newsletter: Newsletter, now: datetime | None = None) -> Slot | None:
    """The newsletter's next scheduled digest not yet made: one whose hour has come and
    whose window is still open, else the next to come. None when its digest is off or it
    has no feeds. (A digest with no new items makes no edition.)"""
    if newsletter.digest_mode == DigestMode.OFF:
        return None
    start = schedule_start(newsletter)
    if start is None:
        return None
    now = now or utcnow()
    slots = _slots(newsletter, max(start, now - catch_up_window()), now + timedelta(days=9))
    return next((slot for slot in slots if slot.closes_at >= now), None)


def skipped_slots(newsletter_id: int, limit: int = 10) -> list[DigestRun]:
    """The newsletter's latest skipped slots, newest first."""
    return list(
        db.session.scalars(
            select(DigestRun)
            .where(DigestRun.newsletter_id == newsletter_id, DigestRun.skipped.is_not(None))
            .order_by(DigestRun.number.desc())
            .limit(limit)
        )
    )


def _record_skip(newsletter: Newsletter, slot: Slot, reason: SkipReason, now: datetime) -> bool:
    """Record the slot as skipped; False if another scheduler accounted for it first."""
    previous = _last_run(newsletter.id)
    last_built = _last_run(newsletter.id, built=True)
    db.session.add(
        DigestRun(
            newsletter_id=newsletter.id,
            number=(previous.number + 1) if previous else 1,
            slot=slot.key,
            slot_at=slot.at,
            since=last_built.cutoff if last_built else None,
            cutoff=None,
            item_count=0,
            auto_send=newsletter.digest_mode == DigestMode.AUTO,
            skipped=reason,
            created_at=now,
            created_by="scheduler",
        )
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    log.warning(
        "digest of %s for %s (%s) skipped: %s",
        newsletter.slug,
        slot.key,
        slot.at.isoformat(),
        reason.value,
    )
    return True


def _run_schedule(newsletter: Newsletter, now: datetime) -> int:
    """Make the newsletter's slot that is due, and record the missed ones; 1 if made."""
    start = schedule_start(newsletter)
    if start is None:
        return 0
    for slot in _slots(newsletter, max(start, now - SKIP_LOOKBACK), now):
        awaited = feeds_awaited(newsletter.id, slot)
        if now > slot.closes_at:
            reason = SkipReason.FEEDS_NOT_FETCHED if awaited else SkipReason.MISSED
            if not _record_skip(newsletter, slot, reason, now):
                return 0
            continue
        if awaited:
            log.info(
                "digest of %s for %s waits for %s feed(s) to be fetched",
                newsletter.slug,
                slot.key,
                awaited,
            )
            return 0
        try:
            build_digest(newsletter.id, slot=slot, created_by="scheduler")
        except DigestAlreadyBuilt:
            return 0
        return 1
    return 0


def scheduled_digests(worker_id: str = "") -> int:
    """The scheduler's job: make each feed-based newsletter's digest that is due (its
    hour has come, Copenhagen time, on a day its cadence allows, and not more than
    DIGEST_CATCH_UP_MINUTES ago) once its feeds are fetched, and record the slots whose
    window closed unmade as skipped; the number of digests made."""
    now = utcnow()
    made = 0
    for newsletter_id in [n.id for n in feed_based_newsletters()]:
        newsletter = db.session.get(Newsletter, newsletter_id)
        if newsletter is not None:
            made += _run_schedule(newsletter, now)
    db.session.commit()
    return made
