"""Counting opens and clicks, for the whole edition only, and only where an administrator
has turned it on for the newsletter (off by default).

Nothing is stored about a person: every recipient of an edition gets the same counted
links (`/l/<link id>`) and the same picture (`/o/<edition id>.gif`), so a count can never
be traced to a reader. A counted link leads only to an address the edition itself
contains, looked up by its id (no open redirect), and keeps working after counting is
turned off. Opens are a lower bound and an upper bound at once (pictures blocked; mail
programs that fetch every picture), clicks include link scanners: they are shown as what
they are, counts.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletters.catalog.models import Newsletter
from newsletters.editions import states
from newsletters.editions.models import Edition, EditionLink, EditionOpens
from newsletters.extensions import db
from newsletters.urls import public_url

# The GIF of one transparent pixel.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_HREF = re.compile(r'href="(https?://[^"]+)"')


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _insert():
    return (
        postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    )


def counting(edition: Edition) -> bool:
    """Whether a send of this edition counts (not a draft's test send or preview)."""
    return bool(edition.newsletter.engagement_counting) and edition.status not in states.OPEN


def register_links(edition_id: int, urls: list[str]) -> dict[str, int]:
    """The id of each of the edition's link addresses, creating those not yet known."""
    unique = sorted(set(urls))
    if not unique:
        return {}
    rows = [
        {"edition_id": edition_id, "url_hash": url_hash(u), "url": u, "clicks": 0} for u in unique
    ]
    # In a transaction of its own, committed at once: the rendered mail names these ids
    # whatever becomes of the caller's transaction (a sending lane's rendering).
    with db.engine.begin() as connection:
        connection.execute(
            _insert()(EditionLink)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["edition_id", "url_hash"])
        )
        found = dict(
            connection.execute(
                select(EditionLink.url_hash, EditionLink.id).where(
                    EditionLink.edition_id == edition_id,
                    EditionLink.url_hash.in_([r["url_hash"] for r in rows]),
                )
            ).all()
        )
    return {u: found[url_hash(u)] for u in unique}


def counted_html(edition: Edition, html: str, *, keep: set[str]) -> str:
    """The mail's HTML with each of the edition's links counted and the open picture.

    `keep`: addresses left as they are (the web version, the reader's own links).
    """
    urls = [u for u in _HREF.findall(html) if u not in keep]
    ids = register_links(edition.id, [_unescape(u) for u in urls])

    def swap(match: re.Match[str]) -> str:
        url = match.group(1)
        if url in keep:
            return match.group(0)
        return f'href="{public_url("editions.counted_link", link_id=ids[_unescape(url)])}"'

    html = _HREF.sub(swap, html)
    pixel = public_url("editions.open_pixel", edition_id=edition.id)
    picture = f'<img src="{pixel}" width="1" height="1" alt="" style="display:block;border:0">'
    if "</body>" in html:
        return html.replace("</body>", picture + "</body>", 1)
    return html + picture


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")


def click(link_id: int) -> str | None:
    """The address behind a counted link (None for no such link); counted while the
    newsletter counts. One UPDATE, committed."""
    row = db.session.execute(
        select(EditionLink.url, Newsletter.engagement_counting)
        .join(Edition, Edition.id == EditionLink.edition_id)
        .join(Newsletter, Newsletter.id == Edition.newsletter_id)
        .where(EditionLink.id == link_id)
    ).first()
    if row is None:
        return None
    if row.engagement_counting:
        db.session.execute(
            update(EditionLink)
            .where(EditionLink.id == link_id)
            .values(clicks=EditionLink.clicks + 1)
        )
        db.session.commit()
    return row.url


def opened(edition_id: int) -> None:
    """Count one open of a sent edition whose newsletter counts."""
    counts = db.session.scalar(
        select(Newsletter.engagement_counting)
        .join(Edition, Edition.newsletter_id == Newsletter.id)
        .where(
            Edition.id == edition_id,
            Edition.status.in_(states.PUBLISHED),
        )
    )
    if not counts:
        return
    db.session.execute(
        _insert()(EditionOpens)
        .values(edition_id=edition_id, opens=1)
        .on_conflict_do_update(
            index_elements=["edition_id"], set_={"opens": EditionOpens.opens + 1}
        )
    )
    db.session.commit()


def edition_counts(edition_id: int) -> tuple[int, list[tuple[str, int]]]:
    """(opens, [(link address, clicks)] most clicked first) of an edition."""
    opens = db.session.scalar(
        select(EditionOpens.opens).where(EditionOpens.edition_id == edition_id)
    )
    links = db.session.execute(
        select(EditionLink.url, EditionLink.clicks)
        .where(EditionLink.edition_id == edition_id)
        .order_by(EditionLink.clicks.desc(), EditionLink.id)
    ).all()
    return opens or 0, [(u, c) for u, c in links]
