"""A newsletter's public archive: its sent editions, newest first, and an Atom feed of them.

Only finished sends are listed (a send in progress, paused or cancelled is not "published"
for the archive, though its web version answers for the recipients who got it). Nothing
personal is read here: an edition's web version links to the pages where a reader asks for
their own link, never to a recipient's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.models import Edition, EditionStatus, subject_in
from newsletters.extensions import db

PER_PAGE = 20
FEED_ENTRIES = 30


@dataclass(frozen=True)
class ArchivedEdition:
    id: int
    subject: str
    preheader: str
    sent_at: datetime


@dataclass(frozen=True)
class ArchivePage:
    newsletter: Newsletter
    editions: list[ArchivedEdition]
    page: int
    pages: int
    total: int


def public_archive(slug: str) -> Newsletter | None:
    """The newsletter whose archive is public, or None (unknown, or archive turned off)."""
    newsletter = newsletter_by_slug(slug)
    if newsletter is None or not newsletter.archive_public:
        return None
    return newsletter


def _sent(newsletter_id: int):
    return select(
        Edition.id, Edition.subject, Edition.subject_en, Edition.preheader, Edition.finished_at
    ).where(
        Edition.newsletter_id == newsletter_id,
        Edition.status == EditionStatus.SENT,
        Edition.finished_at.is_not(None),
    )


def archive_page(
    newsletter: Newsletter, page: int = 1, per_page: int = PER_PAGE, *, locale: str = "da"
) -> ArchivePage:
    """One page of the sent editions, newest first, with the subjects a reader in `locale`
    got; a page past the end shows the last."""
    total = (
        db.session.scalar(select(func.count()).select_from(_sent(newsletter.id).subquery())) or 0
    )
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = db.session.execute(
        _sent(newsletter.id)
        .order_by(Edition.finished_at.desc(), Edition.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    editions = [
        ArchivedEdition(
            r.id, subject_in(r.subject, r.subject_en, locale), r.preheader, r.finished_at
        )
        for r in rows
    ]
    return ArchivePage(newsletter, editions, page, pages, total)


def feed_entries(newsletter: Newsletter, limit: int = FEED_ENTRIES) -> list[ArchivedEdition]:
    """The newest sent editions, for the Atom feed."""
    rows = db.session.execute(
        _sent(newsletter.id).order_by(Edition.finished_at.desc(), Edition.id.desc()).limit(limit)
    )
    return [ArchivedEdition(r.id, r.subject, r.preheader, r.finished_at) for r in rows]
