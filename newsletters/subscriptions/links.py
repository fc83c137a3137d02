"""The personal links that go into mails: confirm, manage, unsubscribe, join.

Built from PUBLIC_BASE_URL (not url_for), so the CLI and the worker, which have no
request, make the same links as a web request does. Each names its subscriber by their
random `link_key`, never by id (see tokens.SubscriberLink).
"""

from __future__ import annotations

from collections.abc import Iterable

from newsletters.subscriptions.models import Subscriber
from newsletters.tokens import BulkSigner, Purpose, SubscriberLink, sign
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
    with a `BulkSigner` (a send to 100 000 people signs 200 000 of them)."""

    def __init__(self) -> None:
        self._base = public_base()
        self._manage = BulkSigner(Purpose.MANAGE)
        self._unsubscribe = BulkSigner(Purpose.UNSUBSCRIBE)

    def manage(self, link_key: str, token_version: int, locale: str) -> str:
        token = self._manage.sign(SubscriberLink(link_key, token_version).payload())
        return f"{self._base}/manage/{token}{'?lang=en' if locale == 'en' else ''}"

    def unsubscribe(
        self, link_key: str, token_version: int, locale: str, newsletter_id: int
    ) -> str:
        payload = SubscriberLink(link_key, token_version, (newsletter_id,)).payload()
        token = self._unsubscribe.sign(payload)
        return f"{self._base}/unsubscribe/{token}{'?lang=en' if locale == 'en' else ''}"
