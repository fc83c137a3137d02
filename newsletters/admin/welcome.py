"""The welcome letter to subscribers enrolled on a recorded basis (the new mayors after a
municipal election): an administrator edits it (Markdown, kept per newsletter) and sends
it; each mail offers the other newsletters, each with a signed one-click subscribe link
(tokens.Purpose.JOIN) whose page confirms that subscription with a button.

Each enrolled person gets the letter once (`Subscription.welcome_letter_sent_at`). The
mails go through the outbox like every other mail, so the send rate and retries apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import exists, func, select

from newsletters import events
from newsletters.admin.models import WelcomeLetter
from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.rendering import markdown_to_html, markdown_to_text
from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.compose import list_id_for, render_mail
from newsletters.subscriptions import enrolment, links
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from newsletters.timeutil import utcnow

DEFAULT_SUBJECT = "Velkommen som borgmester: KL's nyhedsbreve"
DEFAULT_BODY = """Kære borgmester

Tillykke med valget. Som borgmester modtager du **Nyt fra KL's bestyrelse**, et kort
referat af KL's bestyrelsesmøder med de vigtigste beslutninger, sendt lige efter hvert
møde.

KL har flere nyhedsbreve, som kan være nyttige i dit nye arbejde. Du kan tilmelde dig
med ét klik herunder.

Venlig hilsen
KL"""


class WelcomeLetterError(ValueError):
    pass


@dataclass
class LetterState:
    newsletter: Newsletter
    subject: str
    body_markdown: str
    saved: bool
    # Enrolled, confirmed, mailable, and not yet sent the letter.
    waiting: int
    sent: int


def _newsletter(slug: str) -> Newsletter:
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        raise WelcomeLetterError(f"there is no newsletter '{slug}'")
    return newsletter


def _enrolled(newsletter_id: int):
    """Conditions: confirmed subscriptions of the newsletter enrolled on a basis, to an
    address mail may go to."""
    return (
        Subscription.newsletter_id == newsletter_id,
        Subscription.status == SubscriptionStatus.CONFIRMED,
        exists().where(
            ConsentEvent.subscription_id == Subscription.id,
            ConsentEvent.action == ConsentAction.ENROLLED,
        ),
        Subscriber.hard_bounced_at.is_(None),
        ~exists().where(Suppression.email == Subscriber.email),
    )


def state(slug: str) -> LetterState:
    newsletter = _newsletter(slug)
    letter = db.session.scalar(
        select(WelcomeLetter).where(WelcomeLetter.newsletter_id == newsletter.id)
    )
    base = (
        select(func.count())
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(*_enrolled(newsletter.id))
    )
    waiting = db.session.scalar(base.where(Subscription.welcome_letter_sent_at.is_(None)))
    sent = db.session.scalar(base.where(Subscription.welcome_letter_sent_at.is_not(None)))
    return LetterState(
        newsletter=newsletter,
        subject=letter.subject if letter else DEFAULT_SUBJECT,
        body_markdown=letter.body_markdown if letter else DEFAULT_BODY,
        saved=letter is not None,
        waiting=waiting or 0,
        sent=sent or 0,
    )


def save(slug: str, *, subject: str, body_markdown: str, by_staff_id: int | None, ip=None):
    """Keep the letter's text (one transaction, audited)."""
    newsletter = _newsletter(slug)
    letter = db.session.scalar(
        select(WelcomeLetter).where(WelcomeLetter.newsletter_id == newsletter.id)
    )
    if letter is None:
        letter = WelcomeLetter(newsletter_id=newsletter.id)
        db.session.add(letter)
    letter.subject = " ".join(subject.split())[:300]
    letter.body_markdown = body_markdown
    letter.updated_by = by_staff_id
    events.announce(
        "welcome_letter.save",
        f"newsletter:{slug}",
        actor=events.Actor(by_staff_id, ip, "web"),
        subject=subject,
    )
    db.session.commit()


def offers_for(subscriber_id: int, newsletter_id: int) -> list[Newsletter]:
    """The other public newsletters the person does not receive yet."""
    confirmed = select(Subscription.newsletter_id).where(
        Subscription.subscriber_id == subscriber_id,
        Subscription.status == SubscriptionStatus.CONFIRMED,
    )
    return list(
        db.session.scalars(
            select(Newsletter)
            .where(
                Newsletter.id != newsletter_id,
                Newsletter.is_public.is_(True),
                Newsletter.id.not_in(confirmed),
            )
            .order_by(Newsletter.position, Newsletter.id)
        )
    )


def send(slug: str, *, by_staff_id: int | None, ip: str | None = None) -> int:
    """Queue the saved letter to every enrolled person who has not had it; one
    transaction (mails, marks and the audit entry together). Returns how many."""
    current = state(slug)
    if not current.saved:
        raise WelcomeLetterError("save the letter before sending it")
    newsletter = current.newsletter
    rows = db.session.execute(
        select(Subscription.id, Subscriber)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(*_enrolled(newsletter.id), Subscription.welcome_letter_sent_at.is_(None))
        .order_by(Subscriber.id)
        .with_for_update(of=Subscription)
    ).all()
    body_html = markdown_to_html(current.body_markdown)
    body_text = markdown_to_text(current.body_markdown)
    list_id = list_id_for(newsletter.name, newsletter.slug)
    now = utcnow()
    for _, subscriber in rows:
        offers = [
            (n, links.join_url(subscriber, n.id)) for n in offers_for(subscriber.id, newsletter.id)
        ]
        unsubscribe_url = links.unsubscribe_url(subscriber, newsletter.id)
        mail = render_mail(
            "welcome_letter",
            locale=subscriber.locale,
            newsletter=newsletter,
            subject=current.subject,
            body_html=body_html,
            body_text=body_text,
            offers=offers,
            manage_url=links.manage_url(subscriber),
            unsubscribe_url=unsubscribe_url,
            max_age_days=current_app.config["JOIN_MAX_AGE_DAYS"],
        )
        outbox.enqueue(
            kind="welcome_letter",
            to=subscriber.email,
            mail=mail,
            subscriber_id=subscriber.id,
            list_id=list_id,
            unsubscribe_url=unsubscribe_url,
        )
    # subscriptions owns the mark; it is set in this transaction, with the mails.
    enrolment.mark_welcome_letter_sent([subscription_id for subscription_id, _ in rows], at=now)
    events.announce(
        "welcome_letter.send",
        f"newsletter:{slug}",
        actor=events.Actor(by_staff_id, ip, "web"),
        recipients=len(rows),
        subject=current.subject,
    )
    db.session.commit()
    return len(rows)
