"""One message of an edition: assembled for its recipient, and the SMTP conversation.

The edition is rendered once per language (`templates`, a small cache per worker
process); each recipient's message is that template with their address and personal
links filled in. The conversation is cut in two so the delivery loop can commit a
message's in-flight mark between them: `hand_over` opens the envelope and writes the
body without its end, `end` writes the end (with the next envelope in the same packet).
A message whose end never goes out is discarded by the server.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate

from flask import current_app

from newsletters.editions.models import Edition
from newsletters.editions.rendering import EditionTemplate, edition_template
from newsletters.extensions import db
from newsletters.mailing.addresses import ascii_address
from newsletters.mailing.transport import Transport
from newsletters.subscriptions.links import BulkLinks


@dataclass
class Recipient:
    delivery_id: int
    edition_id: int
    subscriber_id: int
    to: str
    locale: str
    token_version: int
    link_key: str
    message: bytes | None = None


class TemplateCache:
    """Rendered editions, per worker process, keyed by edition, the start of its send (an
    edition cannot change while it sends) and the readers' language."""

    def __init__(self, size: int = 8) -> None:
        self._items: OrderedDict[tuple, EditionTemplate] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # sending lanes share it

    def get(self, edition_id: int, locale: str) -> EditionTemplate:
        edition = db.session.get(Edition, edition_id)
        key = (edition_id, edition.started_at, locale)
        with self._lock:
            template = self._items.get(key)
            if template is not None:
                self._items.move_to_end(key)
                return template
        template = edition_template(edition, locale)
        with self._lock:
            template = self._items.setdefault(key, template)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return template


templates = TemplateCache()


class Assembler:
    """Builds the messages of one batch: recipients from delivery rows, and their bytes."""

    def __init__(self) -> None:
        self.links = BulkLinks()
        self.date = formatdate(usegmt=True)
        self.templates: dict[tuple[int, str], EditionTemplate] = {}
        self.languages = set(current_app.config["LANGUAGES"])
        self.default_locale = current_app.config["BABEL_DEFAULT_LOCALE"]

    def recipient(self, row) -> Recipient:
        """From (delivery id, edition id, subscriber id, email, locale, token version,
        link key): the subscriber's language if the site speaks it, else the default."""
        delivery_id, edition_id, subscriber_id, email, locale, version, key = row
        if locale not in self.languages:
            locale = self.default_locale
        return Recipient(
            delivery_id, edition_id, subscriber_id, ascii_address(email), locale, version, key
        )

    def template(self, edition_id: int, locale: str) -> EditionTemplate:
        key = (edition_id, locale)
        template = self.templates.get(key)
        if template is None:
            template = self.templates[key] = templates.get(edition_id, locale)
            db.session.commit()  # nothing of the session stays open while mail goes out
        return template

    def has_template(self, recipient: Recipient) -> bool:
        """Whether assembling it now needs no database (its template is at hand)."""
        return (recipient.edition_id, recipient.locale) in self.templates

    def assemble(self, recipient: Recipient) -> bytes:
        """The recipient's message (built once, then kept on the recipient)."""
        if recipient.message is None:
            template = self.template(recipient.edition_id, recipient.locale)
            r = recipient
            recipient.message = template.message(
                to=r.to,
                delivery_id=r.delivery_id,
                manage_url=self.links.manage(r.link_key, r.token_version, r.locale),
                unsubscribe_url=self.links.unsubscribe(
                    r.link_key, r.token_version, r.locale, template.newsletter_id, r.edition_id
                ),
                date=self.date,
            )
        return recipient.message


def hand_over(transport: Transport, envelope_from: str, to: str, message: bytes) -> None:
    """The envelope (unless already opened with the previous message's end) and the body,
    without its end: nothing is delivered yet. Raises DeliveryFailure if refused."""
    if not transport.envelope_open:
        transport.open_envelope(envelope_from, to, len(message))
    transport.envelope_ready()
    transport.write_body(message, data_ready=True)


def end(transport: Transport, envelope_from: str, following: Recipient | None) -> None:
    """The end of the message handed over, and the next one's envelope if it is ready
    (same packet); the server's answer is read later (`transport.accepted()`)."""
    next_envelope = None
    if following is not None and following.message is not None:
        next_envelope = (envelope_from, following.to, len(following.message))
    transport.finish(next_envelope)
