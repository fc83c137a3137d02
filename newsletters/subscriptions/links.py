"""The personal links that go into mails (confirm, manage, unsubscribe, join): made, and
read back to the subscriber they were made for.

Built from PUBLIC_BASE_URL (not url_for), so the CLI and the worker, which have no
request, make the same links as a web request does. Each names its subscriber by their
random `link_key`, never by id (see tokens.SubscriberLink).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select

from newsletters.extensions import db
from newsletters.subscriptions.models import Subscriber
from newsletters.tokens import (
    BulkSigner,
    Purpose,
    SubscriberLink,
    TokenError,
    sign,
    verify_timed,
)
from newsletters.urls import public_base, public_link


def _url(path: str, locale: str) -> str:
    suffix = "?lang=en" if locale == "en" else ""
    return public_link(f"{path}{suffix}")


def confirm_url(subscriber: Subscriber, newsletter_ids: Iterable[int]) -> str:
    token = sign(
        Purpose.CONFIRM,
        SubscriberLink(
            subscriber.link_key, subscriber.token_version, tuple(sorted(newsletter_ids))
        ).payload(),
    )
    return _url(f"/confirm/{token}", subscriber.locale)


def manage_url(subscriber: Subscriber) -> str:
    return manage_url_for(subscriber.link_key, subscriber.token_version, subscriber.locale)


def manage_url_for(link_key: str, token_version: int, locale: str) -> str:
    token = sign(Purpose.MANAGE, SubscriberLink(link_key, token_version).payload())
    return _url(f"/manage/{token}", locale)


def unsubscribe_url(subscriber: Subscriber, newsletter_id: int | None = None) -> str:
    """One-click unsubscribe: from one newsletter, or from everything when None."""
    return unsubscribe_url_for(
        subscriber.link_key, subscriber.token_version, subscriber.locale, newsletter_id
    )


def unsubscribe_url_for(
    link_key: str, token_version: int, locale: str, newsletter_id: int | None = None
) -> str:
    ids = (newsletter_id,) if newsletter_id is not None else ()
    token = sign(Purpose.UNSUBSCRIBE, SubscriberLink(link_key, token_version, ids).payload())
    return _url(f"/unsubscribe/{token}", locale)


def join_url(subscriber: Subscriber, newsletter_id: int) -> str:
    """One-click subscribe to one newsletter (the welcome letter's offers)."""
    token = sign(
        Purpose.JOIN,
        SubscriberLink(subscriber.link_key, subscriber.token_version, (newsletter_id,)).payload(),
    )
    return _url(f"/join/{token}", subscriber.locale)


class BulkLinks:
    """`manage_url_for` and `unsubscribe_url_for` for a bulk send: the same links, signed
    with a `BulkSigner` (a send to 100 000 people signs 200 000 of them). A person's
    links that carry the same payload (manage, and unsubscribe from everything) share
    its encoding."""

    def __init__(self) -> None:
        self._base = public_base()
        self._manage = BulkSigner(Purpose.MANAGE)
        self._unsubscribe = BulkSigner(Purpose.UNSUBSCRIBE)
        self._confirm: BulkSigner | None = None
        self._last: tuple[SubscriberLink, bytes] | None = None

    def _encoded(self, link: SubscriberLink) -> bytes:
        last = self._last
        if last is not None and last[0] == link:
            return last[1]
        encoded = link.encoded()
        self._last = (link, encoded)
        return encoded

    def confirm(
        self, link_key: str, token_version: int, locale: str, newsletter_ids: Iterable[int]
    ) -> str:
        """`confirm_url`'s link."""
        if self._confirm is None:
            self._confirm = BulkSigner(Purpose.CONFIRM)
        link = SubscriberLink(link_key, token_version, tuple(sorted(newsletter_ids)))
        token = self._confirm.sign_encoded(self._encoded(link))
        return f"{self._base}/confirm/{token}{'?lang=en' if locale == 'en' else ''}"

    def manage(self, link_key: str, token_version: int, locale: str) -> str:
        token = self._manage.sign_encoded(self._encoded(SubscriberLink(link_key, token_version)))
        return f"{self._base}/manage/{token}{'?lang=en' if locale == 'en' else ''}"

    def unsubscribe(
        self,
        link_key: str,
        token_version: int,
        locale: str,
        newsletter_id: int | None = None,
        edition_id: int | None = None,
    ) -> str:
        """The one-click and footer link of a send; it names the edition, so a withdrawal
        through it counts on that edition's report. Without a newsletter: from everything
        (`unsubscribe_url_for`'s link)."""
        ids = (newsletter_id,) if newsletter_id is not None else ()
        link = SubscriberLink(link_key, token_version, ids, edition_id=edition_id)
        token = self._unsubscribe.sign_encoded(self._encoded(link))
        return f"{self._base}/unsubscribe/{token}{'?lang=en' if locale == 'en' else ''}"


# --------------------------------------------------------------------------- reading a link


def _owner(link: SubscriberLink, signed_at: datetime | None) -> Subscriber | None:
    """The subscriber a verified link was made for, or None.

    By the random link key (unique, indexed). A link from before migration 0008 names a
    row id instead; it counts only if that row already existed when the link was signed,
    otherwise the id was freed and handed to someone else since (the old SQLite schema
    reused the highest id), and the link is not theirs. The signature time is in whole
    seconds (rounded down), so a link signed within the second its row was created is
    refused too: strict on purpose, as no new link of this form is ever made.
    """
    if link.link_key is not None:
        return db.session.scalar(select(Subscriber).where(Subscriber.link_key == link.link_key))
    subscriber = db.session.get(Subscriber, link.legacy_id)
    if subscriber is None or signed_at is None or subscriber.created_at > signed_at:
        return None
    return subscriber


def verified_subscriber(purpose: Purpose, token: str) -> tuple[Subscriber, SubscriberLink]:
    """The owner of a valid, unexpired, unrevoked link and what it names; raises TokenError."""
    payload, signed_at = verify_timed(purpose, token)
    link = SubscriberLink.from_payload(payload)
    subscriber = _owner(link, signed_at)
    if subscriber is None or subscriber.token_version != link.token_version:
        raise TokenError("invalid")
    return subscriber, link


def subscriber_of_expired(purpose: Purpose, token: str) -> tuple[Subscriber, SubscriberLink]:
    """Like `verified_subscriber`, but accepts an expired link (to send a fresh one)."""
    try:
        payload, signed_at = verify_timed(purpose, token)
    except TokenError as error:
        if not error.expired or error.payload is None:
            raise
        payload, signed_at = error.payload, error.signed_at
    link = SubscriberLink.from_payload(payload)
    subscriber = _owner(link, signed_at)
    if subscriber is None or subscriber.token_version != link.token_version:
        raise TokenError("invalid")
    return subscriber, link


def unsubscribe_link_owner(token: str) -> tuple[Subscriber | None, SubscriberLink]:
    """Verify an unsubscribe link. Unlike other links it ignores `token_version`:
    revoking links must never take away the way out. None: its subscriber is gone."""
    payload, signed_at = verify_timed(Purpose.UNSUBSCRIBE, token)
    link = SubscriberLink.from_payload(payload)
    subscriber = _owner(link, signed_at)
    if subscriber is None and link.legacy_id is not None:
        # An old link we cannot match safely: the page that offers a new link, rather
        # than "you are not subscribed", which may not be true for its owner.
        raise TokenError("invalid")
    return subscriber, link
