"""The suppression list: addresses that must not be mailed.

Checked when a subscribe request is carried out, at import, at confirmation, and when an
edition's send starts (a set-based NOT EXISTS in the one INSERT ... SELECT, never a query
per message). Entries are keyed by an HMAC of the normalised address, so an erased person
can stay suppressed without their address being kept.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import exists, func, select, update

from newsletters import events
from newsletters.bulk import among
from newsletters.extensions import db
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.subscriptions.models import Subscriber, Suppression, SuppressionReason


class SuppressionNotFound(LookupError):
    pass


def _key() -> bytes:
    configured = current_app.config.get("SUPPRESSION_HASH_KEY")
    if configured:
        return key_bytes(str(configured))
    return derived_key()


def derived_key() -> bytes:
    """The key when SUPPRESSION_HASH_KEY is not set: derived from SECRET_KEY, so that it is
    never the SECRET_KEY itself (nor usable to sign links)."""
    return hmac.new(
        str(current_app.config["SECRET_KEY"]).encode(), b"newsletters.suppression", "sha256"
    ).digest()


def key_bytes(configured: str) -> bytes:
    """SUPPRESSION_HASH_KEY as bytes: "hex:..." (what `flask subscribers suppression-key`
    prints, the derived key kept before SECRET_KEY is rotated) or any text."""
    if configured.startswith("hex:"):
        return bytes.fromhex(configured[4:])  # ValueError: refused at start-up
    return configured.encode()


def address_hash(address: str) -> str:
    """The keyed hash of an address, normalised first (so Foo@X.dk and foo@x.dk match)."""
    try:
        normalised = normalise_email(address)
    except InvalidAddress:
        normalised = (address or "").strip().lower()
    return hmac.new(_key(), normalised.encode(), hashlib.sha256).hexdigest()


def is_suppressed(address: str) -> bool:
    return bool(
        db.session.scalar(select(exists().where(Suppression.address_hash == address_hash(address))))
    )


def suppressed_among(addresses: Iterable[str], *, normalised: bool = False) -> set[str]:
    """Which of these addresses are suppressed (a query per 5 000 addresses, their
    hashes one parameter: `bulk.among`).

    `normalised`: the caller promises the addresses are stored forms already (an
    import's checked rows), which saves validating each one again.
    """
    if normalised:
        key = _key()
        by_hash = {hmac.new(key, a.encode(), hashlib.sha256).hexdigest(): a for a in addresses}
    else:
        by_hash = {address_hash(a): a for a in addresses}
    found: set[str] = set()
    hashes = list(by_hash)
    column = Suppression.address_hash
    for start in range(0, len(hashes), 5000):
        chunk = hashes[start : start + 5000]
        found.update(
            by_hash[h] for h in db.session.scalars(select(column).where(among(column, chunk)))
        )
    return found


def not_suppressed(subscriber_email_column):
    """SQL condition: no suppression entry for this subscriber address (send time)."""
    return ~exists().where(Suppression.email == subscriber_email_column)


def suppress(
    address: str,
    reason: SuppressionReason,
    *,
    note: str = "",
    by_staff_id: int | None = None,
    keep_address: bool = True,
    bounce_count: int = 0,
) -> Suppression:
    """Put an address on the list (part of the caller's transaction); idempotent.

    With keep_address=False only the hash is stored (erasure).
    """
    digest = address_hash(address)
    entry = db.session.scalar(select(Suppression).where(Suppression.address_hash == digest))
    stored = normalise_or_raw(address) if keep_address else None
    if entry is None:
        entry = Suppression(
            address_hash=digest,
            email=stored,
            reason=reason,
            note=note[:2000],
            created_by=by_staff_id,
            bounce_count=bounce_count,
        )
        db.session.add(entry)
    elif not keep_address:
        entry.email = None
        entry.reason = reason
    db.session.flush()
    return entry


def normalise_or_raw(address: str) -> str:
    try:
        return normalise_email(address)
    except InvalidAddress:
        return address.strip().lower()


@dataclass
class SuppressionPage:
    entries: list[Suppression]
    page: int
    pages: int
    total: int


def search(*, query: str = "", reason: str = "", page: int = 1, per_page: int = 50):
    """Entries for the staff page, newest first. A full address also finds hash-only
    entries (an erased person who asked never to be mailed again)."""
    stmt = select(Suppression)
    query = query.strip()
    if query:
        if "@" in query:
            stmt = stmt.where(
                (Suppression.email.contains(query.lower()))
                | (Suppression.address_hash == address_hash(query))
            )
        else:
            stmt = stmt.where(Suppression.email.contains(query.lower()))
    if reason:
        stmt = stmt.where(Suppression.reason == reason)
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    entries = list(
        db.session.scalars(
            stmt.order_by(Suppression.created_at.desc(), Suppression.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return SuppressionPage(entries=entries, page=page, pages=pages, total=total)


def add_manual(
    address: str, *, note: str, by_staff_id: int | None, ip: str | None = None
) -> Suppression:
    """Staff put an address on the list (one transaction, audited by entry id only).

    Raises InvalidAddress. Mail to a subscriber with this address stops at the next send.
    """
    normalised = normalise_email(address)
    entry = suppress(
        normalised, SuppressionReason.MANUAL, note=note.strip(), by_staff_id=by_staff_id
    )
    events.announce(
        "suppression.add", f"suppression:{entry.id}", actor=events.Actor(by_staff_id, ip, "web")
    )
    db.session.commit()
    return entry


def lift(suppression_id: int, *, by_staff_id: int | None, ip: str | None = None) -> Suppression:
    """Take an entry off the list, so the address may be mailed again; audited.

    A lifted hard bounce also clears the subscriber's `hard_bounced_at` (the mailbox was
    fixed); the subscriber's subscriptions are as they were.
    """
    entry = db.session.get(Suppression, suppression_id)
    if entry is None:
        raise SuppressionNotFound(suppression_id)
    subscriber_id = None
    if entry.email:
        subscriber_id = db.session.scalar(
            select(Subscriber.id).where(Subscriber.email == entry.email)
        )
        if subscriber_id is not None:
            db.session.execute(
                update(Subscriber)
                .where(Subscriber.id == subscriber_id)
                .values(hard_bounced_at=None)
            )
    events.announce(
        "suppression.lift",
        f"suppression:{entry.id}",
        actor=events.Actor(by_staff_id, ip, "web"),
        reason=entry.reason.value,
        subscriber_id=subscriber_id,
    )
    db.session.delete(entry)
    db.session.commit()
    return entry
