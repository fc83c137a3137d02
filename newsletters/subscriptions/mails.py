"""The mails the subscriber side sends: the double opt-in, the manage link, the welcome.

Each goes into the outbox in the caller's transaction (sent by the worker after the
commit). Confirmation and link mails are the ones a stranger can cause to be sent to an
address by typing it into a form, so they are limited per address per hour.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import timedelta
from email.utils import formatdate, make_msgid

from flask import Flask, current_app, g
from sqlalchemy import String, case, cast, func, literal, select

from newsletters import jobs
from newsletters.bulk import among
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.mailing import deferred, outbox
from newsletters.mailing.addresses import ascii_address
from newsletters.mailing.compose import (
    PersonalTemplate,
    envelope_sender,
    new_boundary,
    render_mail,
)
from newsletters.mailing.models import OutboxMessage, OutboxStatus
from newsletters.subscriptions import links
from newsletters.subscriptions.models import Subscriber, SubscriptionStatus
from newsletters.timeutil import utcnow

# Mails a stranger can cause to be sent to an address: limited per address per hour.
LIMITED_KINDS = ("confirm", "already_subscribed", "manage_link")


def may_mail(address: str) -> bool:
    """Whether another confirmation or link mail may go to this address this hour."""
    since = utcnow() - timedelta(hours=1)
    sent = db.session.scalar(
        select(func.count(OutboxMessage.id)).where(
            OutboxMessage.to_address == address,
            OutboxMessage.kind.in_(LIMITED_KINDS),
            OutboxMessage.created_at > since,
        )
    )
    return (sent or 0) < int(current_app.config["ADDRESS_MAILS_PER_HOUR"])


def mails_this_hour(addresses: Iterable[str]) -> dict[str, int]:
    """How many confirmation and link mails each address (as the outbox writes it) was
    sent in the last hour: the per-address limit of `may_mail`, for many at once."""
    since = utcnow() - timedelta(hours=1)
    wanted = list(addresses)
    counts: dict[str, int] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        counts.update(
            iter(
                db.session.execute(
                    select(OutboxMessage.to_address, func.count(OutboxMessage.id))
                    .where(
                        among(OutboxMessage.to_address, chunk),
                        OutboxMessage.kind.in_(LIMITED_KINDS),
                        OutboxMessage.created_at > since,
                    )
                    .group_by(OutboxMessage.to_address)
                )
            )
        )
    return counts


# --------------------------------------------------------------------------- double opt-in


def queue_confirmation(subscriber: Subscriber, newsletters: Sequence[Newsletter]) -> bool:
    """Queue the double opt-in mail for these newsletters; False if the hourly limit is hit."""
    if not may_mail(subscriber.email):
        return False
    db.session.add(OutboxMessage(**confirmation_mail_row(subscriber, newsletters)))
    jobs.queued_work()
    return True


def confirmation_mail_row(subscriber: Subscriber, newsletters: Sequence[Newsletter]) -> dict:
    """The double opt-in mail's outbox row (see `outbox.message_row`); no limit checked."""
    mail = render_mail(
        "confirm",
        locale=subscriber.locale,
        newsletters=newsletters,
        confirm_url=links.confirm_url(subscriber, [n.id for n in newsletters]),
        manage_url=links.manage_url(subscriber),
        max_age_days=current_app.config["CONFIRM_MAX_AGE_DAYS"],
    )
    return outbox.message_row(
        kind="confirm",
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        unsubscribe_url=links.unsubscribe_url(subscriber),
    )


# The stand-ins for a person's links while a confirmation mail is rendered once.
CONFIRM_MARK = "NLxPERSONALxCONFIRMxURL"
MANAGE_MARK = "NLxPERSONALxMANAGExURL"
UNSUBSCRIBE_MARK = "NLxPERSONALxUNSUBSCRIBExURL"


class ConfirmationMails:
    """`confirmation_mail_row` for many people at once (an import that invites).

    Each person's outbox row holds only what is personal in their mail (`row`: link
    key, language, Date, Message-ID, MIME boundary; see `mailing.deferred`), and the
    worker writes the message when it sends it (`compose_confirmation`, `message`):
    rendered once per language with stand-ins for the links, each person's own links
    filled in (`compose.PersonalTemplate`). The bytes are those `confirmation_mail_row`
    makes but for the Date, Message-ID and MIME boundary; only the links' signatures are
    made at sending, so their time counts from then."""

    # What `row` reads of a subscriber: a Subscriber, or a row of these columns.
    COLUMNS = (
        Subscriber.id,
        Subscriber.email,
        Subscriber.locale,
        Subscriber.link_key,
        Subscriber.token_version,
    )

    def __init__(self, newsletters: Sequence[Newsletter]) -> None:
        self.newsletters = list(newsletters)
        self.newsletter_ids = [n.id for n in self.newsletters]
        self.links = links.BulkLinks()
        self.date = formatdate(usegmt=True)
        self.now = utcnow()
        self.envelope_from = envelope_sender()
        self.domain = current_app.config["MAIL_DOMAIN"]
        self._templates: dict[str, PersonalTemplate] = {}
        # What is the same in every row's fills, JSON-encoded once.
        self.boundary = new_boundary()
        self._common = (
            f'"newsletters":{json.dumps(self.newsletter_ids)},"date":{json.dumps(self.date)},'
            f'"boundary":"{self.boundary}"'
        )

    def _template(self, locale: str) -> PersonalTemplate:
        template = self._templates.get(locale)
        if template is None:
            mail = render_mail(
                "confirm",
                locale=locale,
                newsletters=self.newsletters,
                confirm_url=CONFIRM_MARK,
                manage_url=MANAGE_MARK,
                max_age_days=current_app.config["CONFIRM_MAX_AGE_DAYS"],
            )
            template = self._templates[locale] = PersonalTemplate(
                mail,
                marks=(CONFIRM_MARK, MANAGE_MARK, UNSUBSCRIBE_MARK),
                unsubscribe_mark=UNSUBSCRIBE_MARK,
            )
        return template

    def row(self, subscriber: Subscriber) -> dict:
        """The person's outbox row, its message written when it is sent; no limit
        checked. `subscriber`: a Subscriber or a row of `COLUMNS`."""
        key, version, locale = subscriber.link_key, subscriber.token_version, subscriber.locale
        message_id = make_msgid(domain=self.domain)
        if _PLAIN.fullmatch(key) and _PLAIN.fullmatch(locale) and _PLAIN_ID.fullmatch(message_id):
            # Nothing to escape (the usual case, 100 000 times): written, not encoded.
            fills = (
                f'{{"key":"{key}","version":{int(version)},"locale":"{locale}",'
                f'{self._common},"message_id":"{message_id}"}}'
            )
        else:
            fills = json.dumps(
                {
                    "key": key,
                    "version": version,
                    "locale": locale,
                    "newsletters": self.newsletter_ids,
                    "date": self.date,
                    "boundary": self.boundary,
                    "message_id": message_id,
                }
            )
        return {
            "kind": "confirm",
            "subscriber_id": subscriber.id,
            "to_address": ascii_address(subscriber.email),
            "envelope_from": self.envelope_from,
            "subject": self._template(locale).subject,
            "fills": fills,
            "status": OutboxStatus.QUEUED,
            "next_attempt_at": self.now,
        }

    def enqueue(self, people: Sequence) -> None:
        """Queue the invitations of `people` (rows of `COLUMNS`, their hourly limit
        checked) in the current transaction. Their rows are made by the database, in one
        INSERT ... SELECT (`outbox.enqueue_from`), the fills written as `row` writes
        them, the Message-ID from the subscriber's id; a row built here (`row`) only
        for a person whose fills would need escaping or whose address is not ASCII (an
        IDN domain: its ASCII form is Python's to make)."""
        prefix = f"{int(self.now.timestamp())}.{secrets.token_hex(8)}"
        if not _PLAIN_DOMAIN.fullmatch(self.domain):
            outbox.enqueue_rows([self.row(p) for p in people])
            return
        plain: list[int] = []
        locales: set[str] = set()
        others = []
        for person in people:
            if (
                person.email.isascii()
                and _PLAIN.fullmatch(person.link_key)
                and _PLAIN.fullmatch(person.locale)
            ):
                plain.append(person.id)
                locales.add(person.locale)
            else:
                others.append(person)
        if plain:
            s = Subscriber.__table__.c
            fills = (
                literal('{"key":"')
                + s.link_key
                + '","version":'
                + cast(s.token_version, String)
                + ',"locale":"'
                + s.locale
                + f'",{self._common},"message_id":"<{prefix}.'
                + cast(s.id, String)
                + f'@{self.domain}>"}}'
            )
            outbox.enqueue_from(
                select(
                    literal("confirm").label("kind"),
                    s.id.label("subscriber_id"),
                    s.email.label("to_address"),
                    literal(self.envelope_from).label("envelope_from"),
                    case(
                        {locale: self._template(locale).subject for locale in locales},
                        value=s.locale,
                    ).label("subject"),
                    fills.label("fills"),
                ).where(among(s.id, plain))
            )
        if others:
            outbox.enqueue_rows([self.row(p) for p in others])

    def message(self, to: str, fills: dict) -> str:
        """The mail of a row `row` made, to `to` (its ASCII address), with fresh links."""
        key, version, locale = fills["key"], fills["version"], fills["locale"]
        return self._template(locale).message(
            to=to,
            values={
                CONFIRM_MARK: self.links.confirm(key, version, locale, self.newsletter_ids),
                MANAGE_MARK: self.links.manage(key, version, locale),
                UNSUBSCRIBE_MARK: self.links.unsubscribe(key, version, locale),
            },
            date=fills["date"],
            message_id=fills["message_id"],
            boundary=fills["boundary"],
        )


_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_ID = re.compile(r"<[A-Za-z0-9_.@-]+>")
_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
_CONFIRMATIONS = "newsletters.confirmation_mails"


def compose_confirmation(message: OutboxMessage) -> str:
    """The message of an import's invitation (a row `ConfirmationMails.row` made).

    Rendered once per language and set of newsletters in each app context (a worker
    tick), with the newsletters' names as they are now."""
    fills = json.loads(message.fills or "{}")
    ids = tuple(fills["newsletters"])
    made = g.setdefault(_CONFIRMATIONS, {})
    confirmations = made.get(ids)
    if confirmations is None:
        found = {
            n.id: n for n in db.session.scalars(select(Newsletter).where(Newsletter.id.in_(ids)))
        }
        if not found:
            raise LookupError(f"outbox {message.id}: its newsletters {ids} are gone")
        confirmations = made[ids] = ConfirmationMails([found[i] for i in ids if i in found])
    return confirmations.message(message.to_address, fills)


def init_app(app: Flask) -> None:
    """The worker writes an import's invitations when it sends them."""
    deferred.register(app, "confirm", compose_confirmation)


# --------------------------------------------------------------------------- manage link


def queue_manage_link(subscriber: Subscriber, kind: str = "manage_link") -> bool:
    """Queue a link to the preference centre (`kind` "already_subscribed": the answer to
    a subscribe form for newsletters they have); False if the hourly limit is hit."""
    if not may_mail(subscriber.email):
        return False
    confirmed = [
        s.newsletter for s in subscriber.subscriptions if s.status == SubscriptionStatus.CONFIRMED
    ]
    mail = render_mail(
        kind,
        locale=subscriber.locale,
        newsletters=confirmed,
        manage_url=links.manage_url(subscriber),
        max_age_days=current_app.config["MANAGE_MAX_AGE_DAYS"],
    )
    outbox.enqueue(
        kind=kind,
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        unsubscribe_url=links.unsubscribe_url(subscriber),
    )
    return True


# --------------------------------------------------------------------------- welcome


def queue_welcome(subscriber: Subscriber, newsletter: Newsletter, *, basis: str) -> None:
    """The welcome mail after an enrolment: why they get it and how to leave."""
    db.session.add(OutboxMessage(**welcome_mail_row(subscriber, newsletter, basis=basis)))
    jobs.queued_work()


def welcome_mail_row(subscriber: Subscriber, newsletter: Newsletter, *, basis: str) -> dict:
    """The welcome mail's outbox row (see `outbox.message_row`)."""
    # Signed once: the body and the List-Unsubscribe header carry the same link.
    unsubscribe_url = links.unsubscribe_url(subscriber, newsletter.id)
    mail = render_mail(
        "welcome",
        locale=subscriber.locale,
        newsletter=newsletter,
        basis=basis,
        manage_url=links.manage_url(subscriber),
        unsubscribe_url=unsubscribe_url,
    )
    return outbox.message_row(
        kind="welcome",
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        list_id=f"{newsletter.name} <{newsletter.slug}.{current_app.config['MAIL_DOMAIN']}>",
        unsubscribe_url=unsubscribe_url,
    )
