"""Reading and seeding the catalogue of newsletters."""

import time
from dataclasses import dataclass

from flask import current_app

from newsletters import events
from newsletters.catalog.models import DigestCadence, DigestMode, Newsletter
from newsletters.extensions import db
from newsletters.timeutil import utcnow


@dataclass(frozen=True)
class SeedNewsletter:
    slug: str
    name: str
    description_da: str
    description_en: str
    cadence_da: str
    cadence_en: str
    # Feed-based newsletters start in auto-send (migration 0005 sets the same).
    digest_mode: DigestMode = DigestMode.OFF
    digest_cadence: DigestCadence = DigestCadence.DAILY
    digest_hour: int = 7


# The newsletter written after each board meeting: its editions have a meeting date and a
# list of decisions (items), and new mayors are enrolled in it.
BOARD_NEWSLETTER = "bestyrelse"


def is_board_newsletter(newsletter: Newsletter | str) -> bool:
    """Whether `newsletter` (or the newsletter of this slug) is the board's."""
    slug = newsletter if isinstance(newsletter, str) else newsletter.slug
    return slug == BOARD_NEWSLETTER


KL_NEWSLETTERS: tuple[SeedNewsletter, ...] = (
    SeedNewsletter(
        BOARD_NEWSLETTER,
        "Nyt fra KL's bestyrelse",
        "Et kort referat af KL's bestyrelsesmøde med de vigtigste beslutninger, sendt lige "
        "efter hvert møde. Borgmestre modtager det, når de tiltræder.",
        "A short summary of the KL board meeting and its main decisions, sent right after "
        "each meeting. Mayors receive it when they take office.",
        "Efter hvert bestyrelsesmøde",
        "After each board meeting",
    ),
    SeedNewsletter(
        "kl-nyheder",
        "KL's daglige nyhedsbreve",
        "Dagens nyheder fra KL om økonomi, beskæftigelse, børn, ældre, klima og de øvrige "
        "kommunale områder.",
        "Today's news from KL on the economy, employment, children, elderly care, climate "
        "and the other municipal areas.",
        "Hverdage, én gang om dagen",
        "Weekdays, once a day",
        DigestMode.AUTO,
        DigestCadence.WEEKDAYS,
        7,
    ),
    SeedNewsletter(
        "momentum",
        "Momentum",
        "Nyt fra Momentum, KL's medie for kommunalpolitikere: analyser, interviews og debat.",
        "News from Momentum, KL's magazine for local politicians: analysis, interviews and debate.",
        "Når der er nyt, højst en gang om ugen",
        "When there is news, at most once a week",
        DigestMode.AUTO,
        DigestCadence.WEEKLY,
        8,
    ),
    SeedNewsletter(
        "danske-kommuner",
        "Danske Kommuner",
        "Dagens artikler fra magasinet Danske Kommuner om kommunal politik og forvaltning.",
        "Today's articles from the magazine Danske Kommuner on local politics and administration.",
        "Dagligt",
        "Daily",
        DigestMode.AUTO,
        DigestCadence.DAILY,
        7,
    ),
)


def seed_newsletters() -> tuple[list[str], list[str]]:
    """Create the four KL newsletters that are missing; returns (created, existing) slugs.

    Idempotent: an existing newsletter is left as administrators have edited it.
    """
    existing = set(db.session.scalars(db.select(Newsletter.slug)))
    created: list[str] = []
    for position, seed in enumerate(KL_NEWSLETTERS):
        if seed.slug in existing:
            continue
        db.session.add(
            Newsletter(
                slug=seed.slug,
                name=seed.name,
                description_da=seed.description_da,
                description_en=seed.description_en,
                cadence_da=seed.cadence_da,
                cadence_en=seed.cadence_en,
                position=position,
                digest_mode=seed.digest_mode,
                digest_cadence=seed.digest_cadence,
                digest_hour=seed.digest_hour,
            )
        )
        created.append(seed.slug)
    db.session.commit()
    forget_cached_choices()
    return created, sorted(existing & {s.slug for s in KL_NEWSLETTERS})


def public_newsletters() -> list[Newsletter]:
    """The newsletters offered on the public form, in display order."""
    return list(
        db.session.scalars(
            db.select(Newsletter)
            .where(Newsletter.is_public.is_(True))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )


# The subscribe form validates against these on every POST; administrators add
# newsletters rarely, so each process keeps them for a short while.
CHOICES_TTL_SECONDS = 30.0


def public_newsletter_choices() -> list[tuple[str, str]]:
    """(slug, name) of the public newsletters, cached per process for CHOICES_TTL_SECONDS."""
    cached = current_app.extensions.get("newsletter_choices")
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    choices = [(n.slug, n.name) for n in public_newsletters()]
    current_app.extensions["newsletter_choices"] = (now + CHOICES_TTL_SECONDS, choices)
    return choices


def forget_cached_choices() -> None:
    current_app.extensions.pop("newsletter_choices", None)


def newsletter_by_slug(slug: str) -> Newsletter | None:
    return db.session.scalar(db.select(Newsletter).where(Newsletter.slug == slug))


def update_newsletter(
    slug: str,
    *,
    name: str,
    description_da: str,
    description_en: str,
    cadence_da: str,
    cadence_en: str,
    is_public: bool,
    position: int,
    archive_public: bool | None = None,
    engagement_counting: bool | None = None,
    actor: events.Actor | None = None,
) -> Newsletter:
    """Change a newsletter's texts, visibility, archive and place; the slug never changes.

    `archive_public` or `engagement_counting` None leaves that setting as it is.

    LookupError if there is no such newsletter.
    """
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        raise LookupError(f"no newsletter {slug!r}")
    newsletter.name = name.strip()
    newsletter.description_da = description_da.strip()
    newsletter.description_en = description_en.strip()
    newsletter.cadence_da = cadence_da.strip()
    newsletter.cadence_en = cadence_en.strip()
    newsletter.is_public = is_public
    if archive_public is not None:
        newsletter.archive_public = archive_public
    if engagement_counting is not None:
        newsletter.engagement_counting = engagement_counting
    newsletter.position = position
    if actor is not None:
        events.announce(
            "newsletter.settings",
            f"newsletter:{slug}",
            actor=actor,
            name=newsletter.name,
            is_public=is_public,
            archive_public=newsletter.archive_public,
            engagement_counting=newsletter.engagement_counting,
            position=position,
        )
    db.session.commit()
    # This process's public form shows the change at once; others within CHOICES_TTL_SECONDS.
    forget_cached_choices()
    return newsletter


def set_digest_schedule(
    newsletter: Newsletter,
    *,
    mode: DigestMode,
    cadence: DigestCadence,
    hour: int,
    sections: bool | None = None,
) -> None:
    """Write how the newsletter's digest is made (the feeds feature decides; the settings
    live on the newsletter). The caller commits.

    Turning it on, or changing its cadence or hour, starts its schedule anew: the next
    slot is the first one from now (an hour that passed today is not made up for, nor
    counted as skipped). Between auto-send and review the schedule goes on. `sections`
    None leaves that setting as it is.
    """
    mode, cadence = DigestMode(mode), DigestCadence(cadence)
    if (
        (newsletter.digest_mode == DigestMode.OFF) != (mode == DigestMode.OFF)
        or newsletter.digest_cadence != cadence
        or newsletter.digest_hour != hour
    ):
        newsletter.digest_schedule_from = utcnow()
    newsletter.digest_mode = mode
    newsletter.digest_cadence = cadence
    newsletter.digest_hour = hour
    if sections is not None:
        newsletter.digest_sections = bool(sections)
