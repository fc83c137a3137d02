"""Finding a subscriber's rows, and checking the values a caller names them by.

Shared by intake, the preference centre and enrolment: each of them reads what exists
before it changes anything, and locks the subscriber row first where two requests for one
address may race.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber, Subscription
from newsletters.subscriptions.municipalities import is_municipality


class UnknownNewsletter(ValueError):
    def __init__(self, slugs: Sequence[str]) -> None:
        super().__init__(", ".join(slugs))
        self.slugs = list(slugs)


def known_municipality(value: str) -> str:
    """The empty string or one of the 98 municipalities: the forms offer only those, and every
    other caller (the API) is held to the same."""
    value = value.strip()
    if value and not is_municipality(value):
        raise ValueError(f"not one of the 98 municipalities: {value[:100]!r}")
    return value


def newsletters_by_slug(slugs: Iterable[str]) -> list[Newsletter]:
    """The newsletters of these slugs, in the order given; UnknownNewsletter names any missing."""
    wanted = list(dict.fromkeys(slugs))
    found = {
        n.slug: n
        for n in db.session.scalars(db.select(Newsletter).where(Newsletter.slug.in_(wanted)))
    }
    missing = [s for s in wanted if s not in found]
    if missing:
        raise UnknownNewsletter(missing)
    return [found[s] for s in wanted]


def lock_subscriber(email: str) -> Subscriber | None:
    """The subscriber of this (normalised) address, locked for the rest of the transaction."""
    return db.session.scalar(
        db.select(Subscriber).where(Subscriber.email == email).with_for_update()
    )


def subscriptions_of(subscriber: Subscriber) -> dict[int, Subscription]:
    """The subscriber's subscriptions, by newsletter id."""
    return {
        s.newsletter_id: s
        for s in db.session.scalars(
            db.select(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
    }
