"""Rights per newsletter: an editor limited to some newsletters (staff_newsletters).

No rows for an account means every newsletter, as before rights existed; administrators
are never limited. The pages, the CLI and the API ask `may_use` (or, in a request,
`access.require_newsletter`), so the rule lives here alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete

from newsletters import events
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.staff import services
from newsletters.staff.models import Staff, StaffNewsletter, StaffRole


class UnknownNewsletter(services.StaffError, LookupError):
    pass


def limited_to(staff: Staff) -> frozenset[int] | None:
    """The ids of the newsletters the account may work on; None = every newsletter."""
    if staff.role is StaffRole.ADMIN:
        return None
    ids = frozenset(
        db.session.scalars(
            db.select(StaffNewsletter.newsletter_id).where(StaffNewsletter.staff_id == staff.id)
        )
    )
    return ids or None


def may_use(staff: Staff, newsletter_id: int) -> bool:
    """Whether the account may see and act on this newsletter (its editions, feeds...)."""
    allowed = limited_to(staff)
    return allowed is None or newsletter_id in allowed


def allowed_newsletters(staff: Staff) -> list[Newsletter]:
    """The newsletters the account may work on, in display order."""
    query = db.select(Newsletter).order_by(Newsletter.position, Newsletter.id)
    allowed = limited_to(staff)
    if allowed is not None:
        query = query.where(Newsletter.id.in_(allowed))
    return list(db.session.scalars(query))


def slugs_of(staff: Staff) -> list[str] | None:
    """The slugs the account is limited to (stored rows, whatever the role); None = all."""
    rows = db.session.scalars(
        db.select(Newsletter.slug)
        .join(StaffNewsletter, StaffNewsletter.newsletter_id == Newsletter.id)
        .where(StaffNewsletter.staff_id == staff.id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return list(rows) or None


def set_newsletters(
    staff_id: int, slugs: Iterable[str] | None, *, actor: events.Actor | None = None
) -> list[str] | None:
    """Limit the account to the newsletters `slugs` (None or empty: every newsletter).
    Announced (audited) with the old and new limits; UnknownNewsletter for a slug that
    names none, and then nothing changes."""
    staff = services._get(staff_id)
    wanted = sorted(set(slugs or ()))
    newsletters = []
    if wanted:
        newsletters = list(
            db.session.scalars(db.select(Newsletter).where(Newsletter.slug.in_(wanted)))
        )
        unknown = sorted(set(wanted) - {n.slug for n in newsletters})
        if unknown:
            raise UnknownNewsletter(f"no newsletter {', '.join(unknown)}")
    before = slugs_of(staff)
    new = sorted(n.slug for n in newsletters) or None
    if (sorted(before) if before else None) == new:
        return new
    db.session.execute(delete(StaffNewsletter).where(StaffNewsletter.staff_id == staff.id))
    db.session.add_all(StaffNewsletter(staff_id=staff.id, newsletter_id=n.id) for n in newsletters)
    events.announce(
        "staff.newsletters",
        f"staff:{staff.id}",
        actor=actor,
        email=staff.email,
        **{"from": before or "all", "to": new or "all"},
    )
    db.session.commit()
    return new
