"""Subscribers in bulk: multi-row INSERTs and one INSERT ... SELECT, not one ORM object
each (100 000 subscribers in seconds, not minutes)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice


def subscriber_row(email: str, name: str, municipality: str, now, role: str = "") -> dict:
    """One `subscribers` row as the bulk INSERT takes it."""
    return {
        "email": email,
        "name": name,
        "municipality": municipality,
        "role": role,
        "locale": "da",
        "token_version": 1,
        "created_at": now,
        "updated_at": now,
    }


def insert_subscribers(rows: list[dict], chunk: int = 20_000) -> None:
    """Multi-row INSERTs of `rows` into subscribers, in the caller's transaction."""
    from sqlalchemy import insert

    from newsletters.extensions import db
    from newsletters.subscriptions.models import Subscriber

    for start in range(0, len(rows), chunk):
        db.session.execute(insert(Subscriber), rows[start : start + chunk])


def confirm_all(newsletter_id: int, email_like: str, now) -> None:
    """A confirmed subscription to the newsletter for every subscriber whose address is
    LIKE `email_like`: one INSERT ... SELECT, in the caller's transaction."""
    from sqlalchemy import bindparam, insert, literal, select

    from newsletters.extensions import db
    from newsletters.subscriptions.models import Subscriber, Subscription, SubscriptionStatus
    from newsletters.timeutil import UTCDateTime

    confirmed = select(
        Subscriber.id,
        literal(newsletter_id),
        literal(SubscriptionStatus.CONFIRMED.value),
        bindparam("now", now, type_=UTCDateTime()),
        bindparam("now2", now, type_=UTCDateTime()),
    ).where(Subscriber.email.like(email_like))
    db.session.execute(
        insert(Subscription).from_select(
            ["subscriber_id", "newsletter_id", "status", "requested_at", "confirmed_at"],
            confirmed,
        )
    )


def confirmed_audience(app, slug: str, emails: Iterable[tuple[str, str, str]], like: str) -> int:
    """Subscribers (email, name, municipality) all confirmed to `slug`, committed; `like`
    matches exactly their addresses. Returns the newsletter's id."""
    from newsletters.catalog.services import newsletter_by_slug
    from newsletters.extensions import db
    from newsletters.timeutil import utcnow

    with app.app_context():
        newsletter = newsletter_by_slug(slug)
        now = utcnow()
        # In chunks as they come: a million rows never sit in this process at once.
        people = iter(emails)
        while chunk := [subscriber_row(e, n, m, now) for e, n, m in islice(people, 20_000)]:
            insert_subscribers(chunk)
        confirm_all(newsletter.id, like, now)
        db.session.commit()
        return newsletter.id


def analyze(app) -> None:
    """Planner statistics for the audience tables, as a live database would have them."""
    from sqlalchemy import text

    from newsletters.extensions import db

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE subscribers"))
                conn.execute(text("ANALYZE subscriptions"))
        else:
            db.session.execute(text("ANALYZE"))
            db.session.commit()


# A population like a real national list: Danish first and last names (a fifth with a
# middle name), addresses `first.last@domain` (a number after the name once every
# combination is taken: anna.hansen2@aarhus.dk), at the municipalities' own domains
# (some of them *.kommune.dk), KL's and the regions' and the common mail providers.
FIRST_NAMES = (
    "Anna", "Anne", "Mette", "Kirsten", "Hanne", "Helle", "Susanne", "Lene", "Marianne",
    "Camilla", "Louise", "Charlotte", "Pia", "Inge", "Maria", "Lone", "Tina", "Bente",
    "Karen", "Sofie", "Ida", "Emma", "Freja", "Julie", "Line", "Åse", "Birgitte", "Dorte",
    "Gitte", "Rikke", "Peter", "Jens", "Michael", "Lars", "Henrik", "Søren", "Thomas",
    "Jan", "Niels", "Rasmus", "Martin", "Jesper", "Anders", "Morten", "Christian", "Hans",
    "Mads", "Ole", "Kim", "Per", "Jørgen", "Poul", "Torben", "Frederik", "Mikkel", "Jakob",
    "Bo", "Kasper", "Bjørn", "Mathias",
)  # fmt: skip
LAST_NAMES = (
    "Nielsen", "Jensen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen",
    "Sørensen", "Rasmussen", "Jørgensen", "Petersen", "Madsen", "Kristensen", "Olsen",
    "Thomsen", "Christiansen", "Poulsen", "Johansen", "Møller", "Mortensen", "Knudsen",
    "Jakobsen", "Mikkelsen", "Frederiksen", "Laursen", "Henriksen", "Lund", "Holm",
    "Schmidt", "Eriksen", "Kristiansen", "Simonsen", "Clausen", "Svendsen", "Andreasen",
    "Iversen", "Østergaard", "Jeppesen", "Vestergaard", "Nissen", "Lauridsen", "Kjær",
    "Jespersen", "Mogensen", "Skov", "Jepsen", "Nørgaard", "Bach", "Dahl", "Friis",
)  # fmt: skip
OTHER_DOMAINS = (
    "kl.dk", "gmail.com", "hotmail.com", "outlook.dk", "live.dk", "yahoo.dk", "mail.dk",
    "jubii.dk", "sol.dk", "regionh.dk", "rm.dk", "rsyd.dk", "rn.dk", "regionsjaelland.dk",
    "ft.dk", "im.dk", "kombit.dk", "icloud.com", "email.dk", "youmail.dk",
)  # fmt: skip
ROLES = ("borgmester", "byrådsmedlem", "medarbejder", "", "direktør", "konsulent", "")


def ascii_part(text: str) -> str:
    """The part of an address a Danish name becomes: ø -> oe, æ -> ae, å -> aa."""
    table = {"æ": "ae", "ø": "oe", "å": "aa", "é": "e", " ": "", "-": ""}
    return "".join(table.get(c, c) for c in text.lower())


def domains() -> list[str]:
    from newsletters.subscriptions.municipalities import MUNICIPALITIES

    own = [
        f"{ascii_part(m)}.kommune.dk" if i % 3 == 0 else f"{ascii_part(m)}.dk"
        for i, m in enumerate(MUNICIPALITIES)
    ]
    return own + list(OTHER_DOMAINS)


def person(n: int) -> tuple[str, str]:
    """The address and name of the population's `n`th subscriber (as `populate` makes it)."""
    doms = domains()
    f, rest = n % len(FIRST_NAMES), n // len(FIRST_NAMES)
    last, rest = rest % len(LAST_NAMES), rest // len(LAST_NAMES)
    d, k = rest % len(doms), rest // len(doms)
    local = f"{ascii_part(FIRST_NAMES[f])}.{ascii_part(LAST_NAMES[last])}{k or ''}"
    middle = f" {LAST_NAMES[(n // 7) % len(LAST_NAMES)]}" if n % 5 == 0 else ""
    return f"{local}@{doms[d]}", f"{FIRST_NAMES[f]}{middle} {LAST_NAMES[last]}"


def spread(count: int) -> int:
    """A step near count / golden ratio with no factor in common with count."""
    import math

    step = max(1, int(count * 0.618))
    while math.gcd(step, count) != 1:
        step += 1
    return step


def populate(count: int, newsletter_ids: list[int], now, *, suppress_every: int = 100) -> int:
    """`count` subscribers (person(0) .. person(count - 1)), set-based: a few INSERT ...
    SELECTs over a series of numbers joined to small tables of name parts, in the
    caller's transaction. Municipality n % 98, a role from ROLES; subscriber i is
    subscribed to the first 1 + i % 3 of `newsletter_ids`, one in ten of those
    unsubscribed; every `suppress_every`th address is on the suppression list (hard
    bounce). Returns the number of suppressed addresses."""
    from sqlalchemy import bindparam, text

    from newsletters.extensions import db
    from newsletters.subscriptions.municipalities import MUNICIPALITIES
    from newsletters.subscriptions.suppression import address_hash
    from newsletters.timeutil import UTCDateTime

    session = db.session
    postgres = session.get_bind().dialect.name == "postgresql"
    doms = domains()
    parts = {
        "bench_first": [(i, v, ascii_part(v)) for i, v in enumerate(FIRST_NAMES)],
        "bench_last": [(i, v, ascii_part(v)) for i, v in enumerate(LAST_NAMES)],
        "bench_domain": [(i, v, v) for i, v in enumerate(doms)],
        "bench_municipality": [(i, v, v) for i, v in enumerate(MUNICIPALITIES)],
        "bench_role": [(i, v, v) for i, v in enumerate(ROLES)],
        "bench_newsletter": [(i, str(v), str(v)) for i, v in enumerate(newsletter_ids)],
    }
    for name, rows in parts.items():
        session.execute(text(f"DROP TABLE IF EXISTS {name}"))
        session.execute(
            text(f"CREATE TEMPORARY TABLE {name} (i INTEGER PRIMARY KEY, v TEXT, a TEXT)")
        )
        session.execute(
            text(f"INSERT INTO {name} (i, v, a) VALUES (:i, :v, :a)"),  # noqa: S608
            [{"i": i, "v": v, "a": a} for i, v, a in rows],
        )
    nf, nl, nd = len(FIRST_NAMES), len(LAST_NAMES), len(doms)
    # Row n is person(n * step % count): a bijection that scatters names and domains over
    # the table as years of sign-ups do, instead of runs of one domain in adjacent rows.
    count = int(count)
    step = spread(count)
    if postgres:
        numbers = f"SELECT g AS i, CAST(g AS BIGINT) * {step} % {count} AS n"
        numbers += f" FROM generate_series(0, {count - 1}) AS g"
        key = "md5(seq.n::text || clock_timestamp()::text)"
    else:
        numbers = (
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s"  # noqa: S608
            f" WHERE i + 1 < {count})"
            f" SELECT i, i * {step} % {count} AS n FROM s"
        )
        key = "lower(hex(randomblob(16)))"
    k = f"seq.n / {nf * nl * nd}"  # integer division on both
    now_param = bindparam("now", now, type_=UTCDateTime())
    # As a restore does: the secondary indexes built once after the load, not kept row by
    # row during it (a GIN trigram index kept through a million inserts takes minutes).
    rebuild = []
    if postgres:
        rebuild = list(
            session.execute(
                text(
                    "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
                    " FROM pg_index i WHERE i.indrelid IN"
                    " ('subscribers'::regclass, 'subscriptions'::regclass)"
                    " AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
                    " WHERE c.conindid = i.indexrelid)"
                )
            )
        )
        for name, _definition in rebuild:
            session.execute(text(f'DROP INDEX "{name}"'))
    session.execute(
        text(
            "INSERT INTO subscribers (link_key, email, name, municipality, role, locale,"  # noqa: S608
            " token_version, created_at, updated_at)"
            f" SELECT {key},"
            f" f.a || '.' || l.a || CASE WHEN {k} > 0 THEN CAST({k} AS TEXT) ELSE '' END"
            " || '@' || d.v,"
            " f.v || CASE WHEN seq.n % 5 = 0 THEN ' ' || m.v ELSE '' END || ' ' || l.v,"
            " mu.v, r.v, 'da', 1, :now, :now"
            f" FROM ({numbers}) AS seq"
            f" JOIN bench_first f ON f.i = seq.n % {nf}"
            f" JOIN bench_last l ON l.i = (seq.n / {nf}) % {nl}"
            f" JOIN bench_domain d ON d.i = (seq.n / {nf * nl}) % {nd}"
            f" JOIN bench_last m ON m.i = (seq.n / 7) % {nl}"
            f" JOIN bench_municipality mu ON mu.i = seq.n % {len(MUNICIPALITIES)}"
            f" JOIN bench_role r ON r.i = (seq.n / 3) % {len(ROLES)}"
            " ORDER BY seq.i"
        ).bindparams(now_param)
    )
    session.execute(
        text(
            "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, requested_at,"
            " confirmed_at)"
            " SELECT s.id, CAST(nl.v AS INTEGER),"
            " CASE WHEN (s.id * 7 + nl.i) % 10 = 0 THEN 'unsubscribed' ELSE 'confirmed' END,"
            " :now, :now"
            " FROM subscribers s JOIN bench_newsletter nl ON nl.i <= s.id % 3"
        ).bindparams(now_param)
    )
    if rebuild:
        session.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for _name, definition in rebuild:
            session.execute(text(definition))
    suppressed = [person(n)[0] for n in range(0, count, suppress_every)]
    if suppressed:
        session.execute(
            text(
                "INSERT INTO suppressions (address_hash, email, reason, note, created_at,"
                " bounce_count) VALUES (:h, :e, 'hard_bounce', '', :now, 1)"
            ).bindparams(now_param),
            [{"h": address_hash(a), "e": a} for a in suppressed],
        )
    for name in parts:
        session.execute(text(f"DROP TABLE {name}"))
    return len(suppressed)
