"""One way to make a draft edition and its items, with the items checked in one place.

The editor's pages, the CLI and the feeds' digests all make drafts here, so every item
meets the same rules: a heading of one line and at most 300 characters, a link that is
an http(s) address of at most 1 000 characters (it goes into every mail's HTML as it is:
never `javascript:`), and text that is Markdown. An editor's bad item is refused
(`EditionError`, the form says why); an item from a feed, which nobody can correct, is
fitted to the rules instead (`fit=True`: the heading cut, a bad link left out).

Nothing here commits: the caller's action is the transaction (a digest's run and its
edition are one).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from newsletters import events
from newsletters.catalog.models import Newsletter
from newsletters.editions.models import Edition, EditionItem, EditionStatus
from newsletters.editions.states import Action, EditionError, check
from newsletters.extensions import db

MAX_SUBJECT_LENGTH = 300
MAX_HEADING_LENGTH = 300
MAX_LINK_LENGTH = 1000


@dataclass(frozen=True)
class ItemInput:
    heading: str
    text_markdown: str = ""
    link: str = ""


def is_http_link(link: str) -> bool:
    parts = urlsplit(link.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def clean_subject(subject: str, *, fit: bool = False) -> str:
    """The subject on one line, without control characters (it becomes a mail header);
    EditionError if empty or too long (cut with `fit`)."""
    subject = " ".join((subject or "").split())
    subject = "".join(c for c in subject if unicodedata.category(c) != "Cc")
    if fit:
        subject = subject[:MAX_SUBJECT_LENGTH].rstrip()
    if not subject:
        raise EditionError("the subject is empty")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise EditionError(f"the subject is longer than {MAX_SUBJECT_LENGTH} characters")
    return subject


def clean_item(item: ItemInput, *, fit: bool = False) -> ItemInput:
    """The item as stored: EditionError for a bad one, or with `fit` made to fit."""
    heading = " ".join((item.heading or "").split())
    link = (item.link or "").strip()
    text = (item.text_markdown or "").replace("\x00", "")
    link_ok = not link or (is_http_link(link) and len(link) <= MAX_LINK_LENGTH)
    if fit:
        if not link_ok:
            link, link_ok = "", True
        heading = (heading or link)[:MAX_HEADING_LENGTH].rstrip()
    if not heading:
        raise EditionError("an item has no heading")
    if len(heading) > MAX_HEADING_LENGTH:
        raise EditionError(f"an item's heading is longer than {MAX_HEADING_LENGTH} characters")
    if not link_ok:
        raise EditionError(f"an item's link is not an http(s) address: {link[:100]!r}")
    return ItemInput(heading=heading, text_markdown=text, link=link)


def clean_items(items: Sequence[ItemInput], *, fit: bool = False) -> list[ItemInput]:
    """Every item cleaned (`clean_item`); with `fit`, one that cannot be is left out."""
    cleaned = []
    for item in items:
        try:
            cleaned.append(clean_item(item, fit=fit))
        except EditionError:
            if not fit:
                raise
    return cleaned


def _rows(items: Sequence[ItemInput], start: int) -> list[EditionItem]:
    return [
        EditionItem(
            position=start + offset,
            heading=item.heading,
            text_markdown=item.text_markdown,
            link=item.link,
        )
        for offset, item in enumerate(items)
    ]


def create_draft(
    newsletter: Newsletter,
    subject: str,
    body_markdown: str = "",
    *,
    subject_en: str | None = None,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
    created_by: str = "",
    scheduled_at: datetime | None = None,
    fit: bool = False,
    actor: events.Actor | None = None,
    audited: bool = True,
) -> Edition:
    """A new draft of `newsletter` (SCHEDULED for `scheduled_at` if given), its items in
    the order given; added and flushed (it has an id), not committed.

    EditionError if the subject or an item breaks the rules (`fit`: fitted instead).
    Announces `edition.create` (audited unless `audited=False`).
    """
    edition = Edition(
        newsletter=newsletter,
        subject=clean_subject(subject, fit=fit),
        subject_en=clean_subject(subject_en, fit=fit) if subject_en else None,
        preheader=(preheader or "").strip(),
        body_markdown=(body_markdown or "").replace("\x00", ""),
        meeting_date=meeting_date,
        created_by=(created_by or "")[:320],
        status=EditionStatus.DRAFT,
        items=_rows(clean_items(items, fit=fit), 0),
    )
    if scheduled_at is not None:
        if scheduled_at.tzinfo is None:
            raise EditionError("the time must have a time zone")
        edition.status = EditionStatus.SCHEDULED
        edition.scheduled_at = scheduled_at
    db.session.add(edition)
    db.session.flush()
    events.announce(
        "edition.create",
        f"edition:{edition.id}",
        actor=actor,
        audited=audited,
        subject=edition.subject,
    )
    return edition


def unsaved_draft(
    newsletter: Newsletter, subject: str, *, items: Sequence[ItemInput] = (), fit: bool = False
) -> Edition:
    """The draft `create_draft` would make, neither added to the session nor stored: to
    preview what is not made yet (the next digest). Its id is 0, which no edition has
    (its web link leads nowhere)."""
    return Edition(
        id=0,
        newsletter=newsletter,
        subject=clean_subject(subject, fit=fit),
        preheader="",
        body_markdown="",
        status=EditionStatus.DRAFT,
        items=_rows(clean_items(items, fit=fit), 0),
    )


def edition_to_change(edition_id: int) -> Edition:
    """The edition, locked for the rest of the transaction, if it may still change;
    EditionError if there is none, NotEditable once it is being sent or has been."""
    edition = db.session.get(Edition, edition_id, with_for_update=True, populate_existing=True)
    if edition is None:
        raise EditionError(f"there is no edition {edition_id}")
    check(edition, Action.EDIT)
    return edition


def add_items(edition: Edition, items: Sequence[ItemInput], *, fit: bool = False) -> int:
    """Append items to a draft (held locked by the caller), after those it has; how many.

    ForbiddenTransition once the edition is no longer open; EditionError for a bad item
    (`fit`: fitted, or left out).
    """
    check(edition, Action.EDIT)
    cleaned = clean_items(items, fit=fit)
    start = max((i.position for i in edition.items), default=-1) + 1
    edition.items.extend(_rows(cleaned, start))
    return len(cleaned)


def replace_content(
    edition: Edition,
    *,
    subject: str,
    body_markdown: str,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
) -> None:
    """Replace an open edition's (held locked) content and items; nothing changed if a
    rule is broken (EditionError) or it is no longer open (ForbiddenTransition)."""
    check(edition, Action.EDIT)
    subject = clean_subject(subject)
    cleaned = clean_items(items)
    if subject != edition.subject:
        # An English subject made with the old one (a digest's date) no longer fits.
        edition.subject_en = None
    edition.subject = subject
    edition.preheader = (preheader or "").strip()
    edition.body_markdown = (body_markdown or "").replace("\x00", "")
    edition.meeting_date = meeting_date
    # Replaced, not matched up: the rows have no identity of their own that matters.
    edition.items = _rows(cleaned, 0)
