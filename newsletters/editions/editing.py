"""Composing editions on the staff pages: drafts and their items, test sends, the lists.

Each function that writes is one transaction. Starting, pausing and cancelling a send
are in `sending`; this module never changes an edition that is no longer a draft or
scheduled (`Edition.editable`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import sending
from newsletters.editions.models import Edition, EditionItem, EditionStatus
from newsletters.editions.rendering import RenderedEdition, render_edition
from newsletters.editions.sending import EditionError, ItemInput
from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.mailing.compose import RenderedMail
from newsletters.urls import public_url

# The newsletter written after each board meeting: it has a meeting date and items.
BOARD_NEWSLETTER = "bestyrelse"
MAX_SUBJECT_LENGTH = 300
# Addresses a test goes to besides the editor's own.
MAX_TEST_ADDRESSES = 5
TEST_KIND = "test_edition"
TEST_PREFIX = "[TEST] "

OPEN = (EditionStatus.DRAFT, EditionStatus.SCHEDULED)
IN_PROGRESS = (EditionStatus.SENDING, EditionStatus.PAUSED)
FINISHED = (EditionStatus.SENT, EditionStatus.CANCELLED)


class NotEditable(EditionError):
    """The edition is being sent or has been: it can no longer be changed."""

    def __init__(self, edition: Edition) -> None:
        super().__init__(f"edition {edition.id} is {edition.status.value}, it cannot be changed")
        self.status = edition.status


class BadTestAddresses(EditionError):
    """Extra test addresses that are not addresses, or too many of them; nothing was sent."""

    def __init__(self, invalid: Sequence[str] = (), *, too_many: bool = False) -> None:
        detail = f"{len(invalid)} invalid" if invalid else "too many"
        super().__init__(f"test addresses refused: {detail}")
        self.invalid = list(invalid)
        self.too_many = too_many


def has_items(newsletter_slug: str) -> bool:
    """Whether editions of this newsletter have a meeting date and a list of items."""
    return newsletter_slug == BOARD_NEWSLETTER


def is_http_link(link: str) -> bool:
    parts = urlsplit(link.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# --------------------------------------------------------------------------- drafts


def _clean_subject(subject: str) -> str:
    subject = " ".join((subject or "").split())
    if not subject:
        raise EditionError("the subject is empty")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise EditionError(f"the subject is longer than {MAX_SUBJECT_LENGTH} characters")
    return subject


def _clean_items(items: Sequence[ItemInput]) -> list[ItemInput]:
    cleaned = []
    for item in items:
        heading = " ".join(item.heading.split())
        link = item.link.strip()
        if not heading:
            raise EditionError("an item has no heading")
        if len(heading) > MAX_SUBJECT_LENGTH:
            raise EditionError(f"an item's heading is longer than {MAX_SUBJECT_LENGTH} characters")
        if link and not is_http_link(link):
            # The link goes into every mail's HTML as it is: http(s) only, never javascript:.
            raise EditionError(f"an item's link is not an http(s) address: {link!r}")
        cleaned.append(ItemInput(heading=heading, text_markdown=item.text_markdown, link=link))
    return cleaned


def create_draft(
    *,
    newsletter_slug: str,
    subject: str,
    body_markdown: str,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
    created_by: str,
) -> Edition:
    """A new draft edition, its items in the order given; one transaction."""
    return sending.create_edition(
        newsletter_slug=newsletter_slug,
        subject=_clean_subject(subject),
        body_markdown=body_markdown or "",
        preheader=preheader or "",
        meeting_date=meeting_date,
        items=_clean_items(items),
        created_by=created_by,
    )


def update_draft(
    edition_id: int,
    *,
    subject: str,
    body_markdown: str,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
) -> Edition:
    """Replace a draft's (or scheduled edition's) content and items; one transaction.

    Raises NotEditable once the edition is sending or sent: what subscribers get must
    not change under them.
    """
    edition = db.session.get(Edition, edition_id, with_for_update=True, populate_existing=True)
    if edition is None:
        raise EditionError(f"there is no edition {edition_id}")
    if not edition.editable:
        raise NotEditable(edition)
    try:
        edition.subject = _clean_subject(subject)
        cleaned = _clean_items(items)
    except EditionError:
        db.session.rollback()
        raise
    edition.preheader = (preheader or "").strip()
    edition.body_markdown = body_markdown or ""
    edition.meeting_date = meeting_date
    # Replaced, not matched up: the rows have no identity of their own that matters.
    edition.items = [
        EditionItem(
            position=position,
            heading=item.heading,
            text_markdown=item.text_markdown,
            link=item.link,
        )
        for position, item in enumerate(cleaned)
    ]
    db.session.commit()
    return edition


# --------------------------------------------------------------------------- preview, tests


def sample_links() -> tuple[str, str]:
    """Manage and unsubscribe links for a preview or a test: the public page where a
    reader asks for their own link (a test must not carry anyone's personal token)."""
    manage = public_url("subscriptions.manage_request")
    return manage, manage


def preview(edition_id: int, *, locale: str = "da") -> RenderedEdition:
    """The edition exactly as a subscriber gets it, with the sample personal links."""
    edition = get_edition(edition_id)
    if edition is None:
        raise EditionError(f"there is no edition {edition_id}")
    manage, unsubscribe = sample_links()
    return render_edition(edition, manage_url=manage, unsubscribe_url=unsubscribe, locale=locale)


def parse_test_addresses(raw: str) -> list[str]:
    """The extra test addresses (separated by commas, semicolons, spaces or lines),
    normalised and without repeats. Raises BadTestAddresses naming every bad one."""
    candidates = [part for part in re.split(r"[,;\s]+", raw or "") if part]
    valid: list[str] = []
    invalid: list[str] = []
    for candidate in candidates:
        try:
            address = normalise_email(candidate)
        except InvalidAddress:
            invalid.append(candidate)
            continue
        if address not in valid:
            valid.append(address)
    if invalid:
        raise BadTestAddresses(invalid)
    if len(valid) > MAX_TEST_ADDRESSES:
        raise BadTestAddresses(too_many=True)
    return valid


def send_test(edition_id: int, *, editor_email: str, extra_addresses: str = "") -> list[str]:
    """Queue the edition, subject marked [TEST], for the editor and up to five more
    addresses, in one transaction; the outbox worker delivers it. Returns the addresses.

    Nothing is queued if any extra address is bad (BadTestAddresses).
    """
    extra = parse_test_addresses(extra_addresses)
    edition = get_edition(edition_id)
    if edition is None:
        raise EditionError(f"there is no edition {edition_id}")
    addresses = [editor_email] + [a for a in extra if a != editor_email]
    rendered = preview(edition_id)
    mail = RenderedMail(
        subject=TEST_PREFIX + rendered.subject, text=rendered.text, html=rendered.html
    )
    newsletter = edition.newsletter
    list_id = f"{newsletter.name} <{newsletter.slug}.{current_app.config['MAIL_DOMAIN']}>"
    for address in addresses:
        # No List-Unsubscribe: a test is not a subscription, and a one-click header
        # pointing at a page that cannot unsubscribe anyone would be a lie.
        outbox.enqueue(kind=TEST_KIND, to=address, mail=mail, list_id=list_id)
    db.session.commit()
    return addresses


# --------------------------------------------------------------------------- reading


def get_edition(edition_id: int) -> Edition | None:
    return db.session.get(Edition, edition_id)


@dataclass
class NewsletterEditions:
    """A newsletter's editions as its page shows them; the archive one page at a time."""

    newsletter: Newsletter
    open: list[Edition]
    in_progress: list[Edition]
    archive: list[Edition]
    archive_total: int
    page: int
    per_page: int

    @property
    def has_older(self) -> bool:
        return self.page * self.per_page < self.archive_total


def newsletter_editions(
    newsletter_slug: str, *, page: int = 1, per_page: int = 50
) -> NewsletterEditions | None:
    """Drafts and scheduled, those being sent, and a page of the archive (newest first)."""
    newsletter = newsletter_by_slug(newsletter_slug)
    if newsletter is None:
        return None
    page = max(1, page)

    def of(statuses, order):
        return (
            select(Edition)
            .where(Edition.newsletter_id == newsletter.id, Edition.status.in_(statuses))
            .order_by(*order)
        )

    open_ = db.session.scalars(of(OPEN, (Edition.updated_at.desc(), Edition.id.desc()))).all()
    in_progress = db.session.scalars(of(IN_PROGRESS, (Edition.started_at.desc(),))).all()
    archive = db.session.scalars(
        of(FINISHED, (Edition.finished_at.desc(), Edition.id.desc()))
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    archive_total = db.session.scalar(
        select(func.count()).where(
            Edition.newsletter_id == newsletter.id, Edition.status.in_(FINISHED)
        )
    )
    return NewsletterEditions(
        newsletter=newsletter,
        open=list(open_),
        in_progress=list(in_progress),
        archive=list(archive),
        archive_total=archive_total or 0,
        page=page,
        per_page=per_page,
    )
