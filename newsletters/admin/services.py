"""Reading subscribers for the administrators' pages: search and filter with keyset
paging (fast at 1 000 000 rows: every filter has an index, the search a trigram index,
the count stops at COUNT_CAP), and one person's full history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, exists, func, literal_column, or_, select, table, text

from newsletters.bounces.models import Bounce
from newsletters.catalog.models import Newsletter
from newsletters.editions.models import Delivery, Edition
from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import (
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.subscriptions.municipalities import MUNICIPALITIES

# Beyond the subscription statuses: addresses that mail no longer goes to.
STOPPED = "stopped"

# The page counts the matches only up to here and then says "more than": an exact
# count of a million rows is a scan of a million rows on every page.
COUNT_CAP = 10_000

# A term of three characters or more is looked for anywhere in the address or the name,
# through the trigram indexes (migration 0024: pg_trgm on PostgreSQL, FTS5 on SQLite). A
# shorter term has no trigram to look up: it matches the start of the address only, which
# the address's own B-tree answers ("bo" finds bo@odense.dk, not anna.bohr@...).
TRIGRAM = 3
_sqlite_search = table("subscribers_search")
# Above every character: `term <= address < term + _TOP` holds for the addresses starting
# with `term` (binary / C collation order, as the databases compare addresses).
_TOP = "\U0010ffff"


@dataclass(frozen=True)
class SubscriberFilter:
    query: str = ""
    newsletter: str = ""
    status: str = ""
    municipality: str = ""
    role: str = ""

    @property
    def active(self) -> bool:
        return any((self.query, self.newsletter, self.status, self.municipality, self.role))


@dataclass
class SubscriberRow:
    id: int
    email: str
    name: str
    municipality: str
    role: str
    stopped: bool
    # (newsletter name, status) of each subscription.
    subscriptions: list[tuple[str, str]] = field(default_factory=list)
    # The newsletters' slugs, in the same order (for the API).
    slugs: list[str] = field(default_factory=list)


@dataclass
class SubscriberPage:
    rows: list[SubscriberRow]
    # The number of matches, at most COUNT_CAP; `capped`: there are more than that.
    total: int
    # Keyset paging on the (unique) address: the next page starts after this one.
    next_after: str | None
    capped: bool = False


def search_term(query: str) -> str:
    """The term as the search compares it: lower case, no NUL (PostgreSQL refuses it in
    text and no address or name holds one), no surrounding space."""
    return query.replace("\x00", "").strip().lower()


def _escape_like(term: str) -> str:
    """`term` with LIKE's own characters taken literally (escape character \\)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matches(term: str):
    """Subscribers whose address or name contains `term` (lower-cased, 3+ characters),
    through an index. A term with a space is looked for in names only (an address has
    none), one with an @ in addresses only: one index to read instead of two.

    PostgreSQL: LIKE, which the GIN trigram indexes on email and lower(name) answer.
    SQLite: the FTS5 trigram table (a phrase in double quotes is a substring match
    there, case-insensitive, Unicode-aware: "ø" finds "Ø").

    A term with an @ looks up only the part before it in the index (after it when that
    is shorter than a trigram) and the rows found are checked for the whole term: the
    trigrams of a domain (".dk", "mai", "l.d") are in most addresses, and an index read
    costs by the commonest trigram it has to go through.
    """
    columns = ["email", "name"]
    probe = term
    if " " in term:
        columns = ["name"]
    elif "@" in term:
        columns = ["email"]
        local, _, domain = term.partition("@")
        if len(local) >= TRIGRAM:
            probe = local
        elif len(domain) >= TRIGRAM:
            probe = domain
    if db.session.get_bind().dialect.name == "sqlite":
        phrase = "{" + " ".join(columns) + '} : "' + probe.replace('"', '""') + '"'
        found = (
            select(literal_column("rowid"))
            .select_from(_sqlite_search)
            .where(text("subscribers_search MATCH :search_phrase").bindparams(search_phrase=phrase))
        )
        condition = Subscriber.id.in_(found)
        whole = func.instr(Subscriber.email, term) > 0
    else:
        pattern = f"%{_escape_like(probe)}%"
        indexed = {"email": Subscriber.email, "name": func.lower(Subscriber.name)}
        condition = or_(*(indexed[c].like(pattern, escape="\\") for c in columns))
        whole = func.strpos(Subscriber.email, term) > 0
    return condition if probe == term else and_(condition, whole)


def _starts(term: str):
    """Subscribers whose address starts with `term` (1-2 characters): a range of the
    address's unique index, walked in order."""
    return and_(
        Subscriber.email >= term,
        Subscriber.email < term + _TOP,
        Subscriber.email.like(f"{_escape_like(term)}%", escape="\\"),
    )


def _filtered(f: SubscriberFilter):
    stmt = select(Subscriber)
    term = search_term(f.query)
    if term:
        stmt = stmt.where(_matches(term) if len(term) >= TRIGRAM else _starts(term))
    if f.municipality:
        stmt = stmt.where(Subscriber.municipality == f.municipality)
    if f.role:
        role = Subscriber.role
        if f.municipality and db.session.get_bind().dialect.name == "sqlite":
            # Both: the municipality's index answers, the role checked on its entries
            # (they hold it). `|| ''` keeps SQLite, which has no statistics, off the
            # role's index, whose rows for a common role are many times a municipality's
            # (370 ms at 1 000 000; 2 ms so). PostgreSQL's planner picks the municipality's
            # index by itself, and misjudges the rows of `role || ''` (a sort, 11 ms).
            role = role.concat("")
        stmt = stmt.where(role == f.role)
    if f.status == STOPPED:
        stmt = stmt.where(Subscriber.hard_bounced_at.is_not(None))
    if f.newsletter or (f.status and f.status != STOPPED):
        conditions = [Subscription.subscriber_id == Subscriber.id]
        if f.newsletter:
            conditions.append(_newsletter_is(f.newsletter))
        if f.status and f.status != STOPPED:
            conditions.append(Subscription.status == SubscriptionStatus(f.status))
        stmt = stmt.where(exists().where(*conditions))
    return stmt


def _newsletter_is(slug: str):
    return (
        Subscription.newsletter_id
        == select(Newsletter.id).where(Newsletter.slug == slug).scalar_subquery()
    )


def search(f: SubscriberFilter, *, after: str | None = None, per_page: int = 50) -> SubscriberPage:
    """One page of subscribers matching the filter, ordered by address (keyset paging:
    the page after the address `after`).

    The page first. A list (no search term) counts its rows up to COUNT_CAP. A search
    counts no further than its page: a full page says "more than" the page's size (and
    asks for more of the term), a page that is not full is the count. Counting a common
    term's matches reads every one of them (a trigram index cannot count alone), which
    cost more than the page itself at 1 000 000 subscribers.
    """
    stmt = _filtered(f)
    # `after` comes from the URL: no NUL (PostgreSQL refuses it), no longer than an address.
    after = after.replace("\x00", "")[:320] or None if after else None
    searching = bool(search_term(f.query))
    cap = per_page if searching else COUNT_CAP
    if _walks_first(f):
        subscribers = _walked_page(search_term(f.query), after, per_page)
    else:
        subscribers = _ordered_page(stmt, after, per_page, addresses_only=_addresses_only(f))
    more = len(subscribers) > per_page
    subscribers = subscribers[:per_page]
    if searching and more:
        total = per_page + 1  # "more than per_page"
    elif not after and not more:
        total = len(subscribers)
    else:
        total = _count(f, stmt, cap)
    rows = {
        s.id: SubscriberRow(
            s.id, s.email, s.name, s.municipality, s.role, s.hard_bounced_at is not None
        )
        for s in subscribers
    }
    if rows:
        for subscriber_id, name, slug, status in db.session.execute(
            select(
                Subscription.subscriber_id, Newsletter.name, Newsletter.slug, Subscription.status
            )
            .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
            .where(Subscription.subscriber_id.in_(list(rows)))
            .order_by(Newsletter.position, Newsletter.id)
        ):
            rows[subscriber_id].subscriptions.append((name, status.value))
            rows[subscriber_id].slugs.append(slug)
    return SubscriberPage(
        rows=list(rows.values()),
        total=min(total, cap),
        next_after=subscribers[-1].email if more else None,
        capped=total > cap,
    )


def _count(f: SubscriberFilter, stmt, cap: int) -> int:
    """The number of rows of `stmt` (the filter `f`), counted up to cap + 1.

    A filter on a newsletter (and a status) alone counts that newsletter's subscriptions
    in the index on (newsletter_id, status): a person has at most one subscription to a
    newsletter (unique), so they are as many as the subscribers. Counted from the
    subscribers, every one of them was looked up with its subscriptions until 10 001
    matched: 150 ms at 1 000 000 subscribers on SQLite, for a page of 2 ms.
    """
    rows = stmt.with_only_columns(Subscriber.id)
    if (
        f.newsletter
        and f.status != STOPPED
        and not (search_term(f.query) or f.municipality or f.role)
    ):
        conditions = [_newsletter_is(f.newsletter)]
        if f.status:
            conditions.append(Subscription.status == SubscriptionStatus(f.status))
        # A column of the index: an index-only read on PostgreSQL too.
        rows = select(Subscription.newsletter_id).where(*conditions)
    capped_rows = rows.limit(cap + 1).subquery()
    return db.session.scalar(select(func.count()).select_from(capped_rows)) or 0


# SQLite: a search first walks this many addresses in order, checking each; when the
# matches it found say the page ends within WALK_MOST, it walks on that far; the trigram
# table finds the rest. Five times as many for a term with an @: only the address index is
# read (its entries hold the address), no row.
WALK = 3_000
WALK_MOST = 8_000
WALK_ADDRESSES = 5


def _walks_first(f: SubscriberFilter) -> bool:
    """Whether the search walks the address index before the trigram table: on SQLite,
    for a term of 3+ characters without a space and no other filter. A term with a space
    is looked for in names only, most often a first and a last name: rare (`mette
    nielsen`, 0.03 %), and not found by a walk in address order (the walk cost 8 ms
    before the same lookup in the table)."""
    alone = not (f.newsletter or f.status or f.municipality or f.role)
    term = search_term(f.query)
    return (
        alone
        and len(term) >= TRIGRAM
        and " " not in term
        and db.session.get_bind().dialect.name == "sqlite"
    )


def _contains(term: str):
    """Subscribers whose address or name contains `term` (lower-cased, no space: see
    _walks_first), checked row by row as `_matches` finds them through the trigram
    table: a term with an @ in addresses only, names compared in lower case beyond ASCII
    (`lower_unicode`, registered on each SQLite connection in extensions)."""
    in_address = func.instr(Subscriber.email, term) > 0
    if "@" in term:
        return in_address
    return or_(in_address, func.instr(func.lower_unicode(Subscriber.name), term) > 0)


def _walked_page(term: str, after: str | None, per_page: int) -> list[Subscriber]:
    """The next per_page + 1 matches of `term` in address order (SQLite).

    SQLite has no statistics to choose, as PostgreSQL's planner does, between walking the
    address index and sorting what the trigram table finds, and the FTS5 table gives
    every match before one can be ordered (`hansen`, 4 % of the rows: 50 000 of them,
    60 ms at 1 000 000). So the addresses are walked in order and checked first, which
    ends the page when the matches are common (`hansen`: 355 rows, `aarhus.dk`: 5 500);
    the trigram table finds the matches beyond the walk when the page is not full. A
    rare term pays the first WALK rows (about 7 ms at 1 000 000) before the table; the
    first walk is not shorter because addresses are clustered (first name, last name):
    the first 1 000 hold no `østergaard`, the first 2 700 hold 51.
    """
    limit = per_page + 1
    scale = WALK_ADDRESSES if "@" in term else 1
    first = WALK * scale
    found, end = _walk(term, after, first, limit)
    if found and len(found) < limit and end is not None:
        # As dense further on as so far: where the page would end.
        ahead = (limit - len(found)) * first / len(found)
        if first + ahead <= WALK_MOST * scale:
            more, end = _walk(term, end, WALK_MOST * scale - first, limit - len(found))
            found += more
    if len(found) == limit or end is None:
        return found
    rest = select(Subscriber).where(_matches(term), Subscriber.email > end)
    rest = rest.order_by(Subscriber.email).limit(limit - len(found))
    return found + list(db.session.scalars(rest))


def _walk(
    term: str, after: str | None, rows: int, limit: int
) -> tuple[list[Subscriber], str | None]:
    """Up to `limit` matches of `term` among the next `rows` addresses after `after`, in
    address order, and the last of those addresses (None: fewer than `rows` remain, the
    walk went to the end)."""
    addresses = select(Subscriber.email).order_by(Subscriber.email)
    if after:
        addresses = addresses.where(Subscriber.email > after)
    end = db.session.scalar(addresses.offset(rows - 1).limit(1))
    near = select(Subscriber).where(_contains(term))
    if after:
        near = near.where(Subscriber.email > after)
    if end is not None:
        near = near.where(Subscriber.email <= end)
    return list(db.session.scalars(near.order_by(Subscriber.email).limit(limit))), end


def _addresses_only(f: SubscriberFilter) -> bool:
    """Whether the filter looks at the address alone: a search term with an @ (searched
    in addresses only) and nothing else."""
    term = search_term(f.query)
    alone = not (f.newsletter or f.status or f.municipality or f.role)
    return alone and "@" in term and len(term) >= TRIGRAM


def _ordered_page(
    stmt, after: str | None, per_page: int, *, addresses_only: bool = False
) -> list[Subscriber]:
    """The next per_page + 1 rows of `stmt` in address order, after `after`: a walk of
    the address index that stops at the page's end when the matches are many, the
    matches from the trigram index sorted when they are few (the planner's choice, from
    the trigram statistics).

    A condition on the address alone (`addresses_only`), on PostgreSQL: the page's
    addresses first, then their rows. The walk then reads the address index only (an
    index-only scan, the condition checked on each entry) instead of fetching every row it
    passes from the table: `@kl.dk` (1 % of the rows) passes 8 400 rows before its 51st
    match, 8 466 pages read, 3-18 ms at 1 000 000; 77 pages and 1.4 ms so.
    """
    if after:
        stmt = stmt.where(Subscriber.email > after)
    stmt = stmt.order_by(Subscriber.email).limit(per_page + 1)
    if addresses_only and db.session.get_bind().dialect.name == "postgresql":
        addresses = stmt.with_only_columns(Subscriber.email)
        stmt = select(Subscriber).where(Subscriber.email.in_(addresses))
        stmt = stmt.order_by(Subscriber.email)
    return list(db.session.scalars(stmt))


# The distinct roles by a walk of the role index (a "loose index scan"): one index probe
# per role instead of a scan of every subscriber (290 ms at 1 000 000 on PostgreSQL).
_ROLES = text(
    "WITH RECURSIVE walk(role) AS ("
    " SELECT min(role) FROM subscribers WHERE role > ''"
    " UNION ALL"
    " SELECT (SELECT min(s.role) FROM subscribers s WHERE s.role > walk.role)"
    " FROM walk WHERE walk.role IS NOT NULL"
    ") SELECT role FROM walk WHERE role IS NOT NULL"
)


def filter_choices() -> tuple[list[str], list[str]]:
    """The municipalities (the 98, fixed) and the roles subscribers have, for the filter.

    Not SELECT DISTINCT: on 1 000 000 rows that was most of the page's time.
    """
    roles = db.session.scalars(_ROLES).all()
    return sorted(MUNICIPALITIES), list(roles)


@dataclass
class History:
    subscriber: Subscriber
    # (subscription, its consent events oldest first)
    subscriptions: list[tuple[Subscription, list[ConsentEvent]]]
    deliveries: list  # rows of (Delivery, Edition, Newsletter)
    deliveries_total: int
    bounces: list[Bounce]
    mails: list[OutboxMessage]
    suppressed: bool


HISTORY_DELIVERIES = 100


def history(subscriber_id: int) -> History | None:
    """Everything about one subscriber, for the history page (newest deliveries first)."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    subscriptions = list(
        db.session.scalars(
            select(Subscription)
            .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
            .where(Subscription.subscriber_id == subscriber_id)
            .order_by(Newsletter.position, Newsletter.id)
        )
    )
    events: dict[int, list[ConsentEvent]] = {s.id: [] for s in subscriptions}
    if events:
        for event in db.session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscription_id.in_(list(events)))
            .order_by(ConsentEvent.at, ConsentEvent.id)
        ):
            events[event.subscription_id].append(event)
    deliveries = list(
        db.session.execute(
            select(Delivery, Edition, Newsletter)
            .join(Edition, Edition.id == Delivery.edition_id)
            .join(Newsletter, Newsletter.id == Edition.newsletter_id)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.id.desc())
            .limit(HISTORY_DELIVERIES)
        ).all()
    )
    deliveries_total = db.session.scalar(
        select(func.count()).where(Delivery.subscriber_id == subscriber_id)
    )
    bounces = list(
        db.session.scalars(
            select(Bounce).where(Bounce.subscriber_id == subscriber_id).order_by(Bounce.at.desc())
        )
    )
    mails = list(
        db.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.subscriber_id == subscriber_id)
            .order_by(OutboxMessage.id.desc())
            .limit(HISTORY_DELIVERIES)
        )
    )
    return History(
        subscriber=subscriber,
        subscriptions=[(s, events[s.id]) for s in subscriptions],
        deliveries=deliveries,
        deliveries_total=deliveries_total or 0,
        bounces=bounces,
        mails=mails,
        suppressed=suppression.is_suppressed(subscriber.email),
    )
