"""Composing editions on the staff pages: drafts and their items, test sends, the lists.

Each function that writes is one transaction and announces its change (the audit entry)
before it commits. Drafts and their items are made and checked in `drafts`; starting,
pausing and cancelling a send are in `lifecycle`; this module never changes an edition
that is no longer a draft or scheduled (`states.OPEN`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from newsletters import events
from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import is_board_newsletter, newsletter_by_slug
from newsletters.editions import drafts
from newsletters.editions.drafts import MAX_SUBJECT_LENGTH, ItemInput, is_http_link
from newsletters.editions.models import Edition
from newsletters.editions.rendering import RenderedEdition, render_edition
from newsletters.editions.states import (
    FINISHED,
    IN_PROGRESS,
    OPEN,
    EditionError,
    NotEditable,
)
from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.mailing.compose import RenderedMail, list_id_for
from newsletters.urls import public_url

__all__ = [
    "FINISHED",
    "IN_PROGRESS",
    "MAX_SUBJECT_LENGTH",
    "OPEN",
    "BadTestAddresses",
    "EditionError",
    "ItemInput",
    "NotEditable",
    "is_http_link",
]

# Addresses a test goes to besides the editor's own.
MAX_TEST_ADDRESSES = 5
TEST_KIND = "test_edition"
TEST_PREFIX = "[TEST] "


class BadTestAddresses(EditionError):
    """Extra test addresses that are not addresses, or too many of them; nothing was sent."""

    def __init__(self, invalid: Sequence[str] = (), *, too_many: bool = False) -> None:
        detail = f"{len(invalid)} invalid" if invalid else "too many"
        super().__init__(f"test addresses refused: {detail}")
        self.invalid = list(invalid)
        self.too_many = too_many


def has_items(newsletter_slug: str) -> bool:
    """Whether editions of this newsletter have a meeting date and a list of items."""
    return is_board_newsletter(newsletter_slug)


# --------------------------------------------------------------------------- drafts


def create_draft(
    *,
    newsletter_slug: str,
    subject: str,
    body_markdown: str,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
    created_by: str,
    actor: events.Actor | None = None,
) -> Edition:
    """A new draft edition, its items in the order given; one transaction (audited as
    `edition.create`)."""
    newsletter = newsletter_by_slug(newsletter_slug)
    if newsletter is None:
        raise EditionError(f"there is no newsletter '{newsletter_slug}'")
    try:
        edition = drafts.create_draft(
            newsletter,
            subject,
            body_markdown,
            preheader=preheader,
            meeting_date=meeting_date,
            items=items,
            created_by=created_by,
            actor=actor,
        )
    except EditionError:
        db.session.rollback()
        raise
    db.session.commit()
    return edition


def update_draft(
    edition_id: int,
    *,
    subject: str,
    body_markdown: str,
    preheader: str = "",
    meeting_date: date | None = None,
    items: Sequence[ItemInput] = (),
    actor: events.Actor | None = None,
) -> Edition:
    """Replace a draft's (or scheduled edition's) content and items; one transaction
    (audited as `edition.save`).

    Raises NotEditable once the edition is sending or sent: what subscribers get must
    not change under them.
    """
    edition = drafts.edition_to_change(edition_id)
    try:
        drafts.replace_content(
            edition,
            subject=subject,
            body_markdown=body_markdown,
            preheader=preheader,
            meeting_date=meeting_date,
            items=items,
        )
    except EditionError:
        db.session.rollback()
        raise
    events.announce("edition.save", f"edition:{edition.id}", actor=actor, subject=edition.subject)
    db.session.commit()
    return edition


# --------------------------------------------------------------------------- preview, tests


def sample_links() -> tuple[str, str]:
    """Manage and unsubscribe links for a preview or a test: the public page where a
    reader asks for their own link (a test must not carry anyone's personal token)."""
    manage = public_url("subscriptions.manage_request")
    return manage, manage


def preview_unsaved(edition: Edition, *, locale: str = "da") -> RenderedEdition:
    """An unsaved draft (`drafts.unsaved_draft`) as a subscriber would get it, with the
    sample personal links: the preview of the next digest."""
    manage, unsubscribe = sample_links()
    return render_edition(edition, manage_url=manage, unsubscribe_url=unsubscribe, locale=locale)


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


def send_test(
    edition_id: int,
    *,
    editor_email: str,
    extra_addresses: str = "",
    actor: events.Actor | None = None,
) -> list[str]:
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
    list_id = list_id_for(newsletter.name, newsletter.slug)
    for address in addresses:
        # No List-Unsubscribe: a test is not a subscription, and a one-click header
        # pointing at a page that cannot unsubscribe anyone would be a lie.
        outbox.enqueue(kind=TEST_KIND, to=address, mail=mail, list_id=list_id)
    # A count, not the addresses: they may be subscribers', and the audit log must hold
    # nothing an erasure would have to remove.
    events.announce(
        "edition.test_send", f"edition:{edition.id}", actor=actor, addresses=len(addresses)
    )
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
