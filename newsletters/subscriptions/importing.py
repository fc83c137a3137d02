"""CSV import and export of subscribers.

An import is all or nothing: every row is checked first, and a file with any bad row
is refused whole, each bad line listed with its reason. Importing the same file again
changes nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select

from newsletters.audit import services as audit
from newsletters.bounces import suppression
from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.names import InvalidName, clean_name
from newsletters.spreadsheet import csv_lines
from newsletters.subscriptions import services
from newsletters.subscriptions.addresses import InvalidAddress, normalise_email
from newsletters.subscriptions.consent import CURRENT_CONSENT_VERSION
from newsletters.subscriptions.models import (
    ConsentAction,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.subscriptions.municipalities import MUNICIPALITIES
from newsletters.timeutil import utcnow

COLUMNS = ("email", "name", "municipality", "role")
MAX_LENGTHS = {"name": 200, "municipality": 100, "role": 100}


class Reason(str):
    """A problem or note of an import: English as a plain string (the CLI, logs), and
    `localized()` in the reader's language on the staff pages."""

    template: str
    params: dict

    def __new__(cls, template: str, **params: object) -> Reason:
        value = super().__new__(cls, template % params if params else template)
        value.template = template
        value.params = params
        return value

    def localized(self) -> str:
        from flask_babel import gettext

        return gettext(self.template, **self.params) if self.params else gettext(self.template)


def N_(template: str) -> str:  # noqa: N802 - the conventional name for "extract, don't translate yet"
    return template


class ImportRefused(Exception):
    """The file cannot be imported; `problems` lists (line, reason), line 0 for the file."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


@dataclass
class ImportRow:
    line: int
    email: str
    name: str = ""
    municipality: str = ""
    role: str = ""


@dataclass
class ImportReport:
    rows: int = 0
    new_subscribers: int = 0
    updated_subscribers: int = 0
    enrolled: int = 0
    invited: int = 0
    welcomed: int = 0
    unchanged: int = 0
    # Left the newsletter earlier: a withdrawal is never overridden by an import.
    withdrawn: list[str] = field(default_factory=list)
    # On the suppression list (bounced, or asked never to be mailed again): left out.
    suppressed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def skipped(self) -> int:
        return len(self.withdrawn) + len(self.suppressed)


_BY_FOLDED_NAME = {m.casefold(): m for m in MUNICIPALITIES}


def normalise_municipality(value: str) -> str | None:
    """The official short name for 'Aarhus', 'Aarhus Kommune', 'Københavns Kommune', ...;
    None when it is none of the 98."""
    folded = " ".join(value.split()).casefold()
    if not folded:
        return ""
    for suffix in (" regionskommune", " kommune"):
        if folded.endswith(suffix):
            folded = folded.removesuffix(suffix)
            break
    if folded in _BY_FOLDED_NAME:
        return _BY_FOLDED_NAME[folded]
    if folded.endswith("s") and folded[:-1] in _BY_FOLDED_NAME:
        return _BY_FOLDED_NAME[folded[:-1]]
    return None


def decode(data: bytes) -> tuple[str, Reason | None]:
    """The file's text; UTF-8 (with or without BOM), else Windows-1252 as Danish Excel
    saves it. Returns (text, note about the encoding or None)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" and some other tools write UTF-16 with a BOM.
        try:
            return data.decode("utf-16"), None
        except UnicodeDecodeError as exc:
            raise ImportRefused(
                [(0, Reason(N_("the file is damaged UTF-16 (%(reason)s)"), reason=exc.reason))]
            ) from exc
    if b"\x00" in data:
        raise ImportRefused(
            [(0, Reason(N_("the file is not a text file; save it from Excel as CSV")))]
        )
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), Reason(
            N_("the file is not UTF-8; it was read as Windows-1252")
        )
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            [
                (
                    0,
                    Reason(
                        N_("the file is neither UTF-8 nor Windows-1252 (%(reason)s)"),
                        reason=exc.reason,
                    ),
                )
            ]
        ) from exc


def parse(text: str) -> tuple[list[ImportRow], list[Reason]]:
    """Rows of a CSV text with an `email` column; raises ImportRefused listing bad lines."""
    if not text.strip():
        raise ImportRefused([(0, Reason(N_("the file is empty")))])
    first_line = text.splitlines()[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    notes: list[Reason] = []
    if "email" not in header:
        raise ImportRefused(
            [
                (
                    1,
                    Reason(
                        N_(
                            "the header has no 'email' column "
                            "(columns: email, name, municipality, role)"
                        )
                    ),
                )
            ]
        )
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        notes.append(
            Reason(N_("ignored unknown column(s): %(columns)s"), columns=", ".join(unknown))
        )
    duplicated = {h for h in header if h in COLUMNS and header.count(h) > 1}
    if duplicated:
        raise ImportRefused(
            [
                (
                    1,
                    Reason(
                        N_("column(s) named twice: %(columns)s"),
                        columns=", ".join(sorted(duplicated)),
                    ),
                )
            ]
        )
    index = {h: i for i, h in enumerate(header) if h in COLUMNS}

    rows: list[ImportRow] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for record in _records(reader):
        line, cells = record
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) > len(header):
            problems.append(
                (
                    line,
                    Reason(
                        N_("%(cells)d cells, but the header has %(columns)d"),
                        cells=len(cells),
                        columns=len(header),
                    ),
                )
            )
            continue
        values = {col: (cells[i].strip() if i < len(cells) else "") for col, i in index.items()}
        raw_email = values.get("email", "")
        if not raw_email:
            problems.append((line, Reason(N_("email is empty"))))
            continue
        try:
            address = normalise_email(raw_email)
        except InvalidAddress as exc:
            problems.append(
                (
                    line,
                    Reason(
                        N_("'%(value)s' is not a valid email address (%(why)s)"),
                        value=raw_email,
                        why=str(exc),
                    ),
                )
            )
            continue
        if address in seen:
            problems.append(
                (
                    line,
                    Reason(
                        N_("%(address)s is already on line %(line)d"),
                        address=address,
                        line=seen[address],
                    ),
                )
            )
            continue
        seen[address] = line
        row_ok = True
        for col, limit in MAX_LENGTHS.items():
            if len(values.get(col, "")) > limit:
                problems.append(
                    (
                        line,
                        Reason(
                            N_("%(column)s is longer than %(limit)d characters"),
                            column=col,
                            limit=limit,
                        ),
                    )
                )
                row_ok = False
        try:
            name = clean_name(values.get("name", ""))
        except InvalidName as exc:
            problems.append((line, Reason(exc.message, **exc.params)))
            row_ok = False
            name = ""
        municipality = values.get("municipality", "")
        if municipality:
            official = normalise_municipality(municipality)
            if official is None:
                problems.append(
                    (
                        line,
                        Reason(
                            N_("'%(value)s' is not one of the 98 municipalities"),
                            value=municipality,
                        ),
                    )
                )
                row_ok = False
            else:
                municipality = official
        if row_ok:
            rows.append(
                ImportRow(
                    line=line,
                    email=address,
                    name=name,
                    municipality=municipality,
                    role=values.get("role", ""),
                )
            )
    if problems:
        raise ImportRefused(problems)
    if not rows:
        raise ImportRefused([(0, Reason(N_("the file has no rows below its header")))])
    return rows, notes


def _records(reader) -> Iterator[tuple[int, list[str]]]:
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportRefused(
                [(reader.line_num, Reason(N_("unreadable CSV: %(error)s"), error=str(exc)))]
            ) from exc
        yield reader.line_num, cells


def import_subscribers(
    data: bytes,
    *,
    newsletter_slug: str,
    basis: str | None = None,
    welcome: bool = False,
    dry_run: bool = False,
    ctx: services.RequestContext | None = None,
    actor_id: int | None = None,
    file_name: str = "",
) -> ImportReport:
    """Import a CSV file into one newsletter: invite (double opt-in) or enrol with a basis.

    One transaction for the whole file; `dry_run` reports the changes and rolls back.
    """
    newsletter = newsletter_by_slug(newsletter_slug)
    if newsletter is None:
        raise ImportRefused(
            [(0, Reason(N_("there is no newsletter '%(slug)s'"), slug=newsletter_slug))]
        )
    if basis is not None and not basis.strip():
        raise ImportRefused([(0, Reason(N_("--basis must state the basis for enrolment")))])
    if welcome and basis is None:
        raise ImportRefused(
            [(0, Reason(N_("--welcome needs --basis (invitations are mailed anyway)")))]
        )
    text, encoding_note = decode(data)
    rows, notes = parse(text)
    report = ImportReport(rows=len(rows), dry_run=dry_run, notes=notes)
    if encoding_note:
        report.notes.insert(0, encoding_note)
    ctx = ctx or services.RequestContext(method="import_basis" if basis else "import_invite")
    blocked = suppression.suppressed_among(row.email for row in rows)
    try:
        for row in rows:
            if row.email in blocked:
                report.suppressed.append(row.email)
                continue
            _import_row(row, newsletter, basis=basis, welcome=welcome, ctx=ctx, report=report)
        if dry_run:
            db.session.rollback()
        else:
            # In the import's own transaction: the entry exists exactly when it happened.
            # Counts only: the audit log never names a subscriber.
            audit.record(
                actor_id,
                "subscribers.import",
                f"newsletter:{newsletter.slug}",
                {
                    "file": file_name[:200],
                    "mode": "enrol" if basis is not None else "invite",
                    "basis": basis,
                    "welcome": welcome,
                    "rows": report.rows,
                    "new_subscribers": report.new_subscribers,
                    "enrolled": report.enrolled,
                    "invited": report.invited,
                    "welcomed": report.welcomed,
                    "unchanged": report.unchanged,
                    "skipped": report.skipped,
                    "from": "web" if actor_id is not None else "cli",
                },
                ctx.ip,
            )
            db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return report


def _import_row(
    row: ImportRow,
    newsletter: Newsletter,
    *,
    basis: str | None,
    welcome: bool,
    ctx: services.RequestContext,
    report: ImportReport,
) -> None:
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == row.email))
    if subscriber is None:
        subscriber = Subscriber(
            email=row.email, name=row.name, municipality=row.municipality, role=row.role
        )
        db.session.add(subscriber)
        db.session.flush()
        report.new_subscribers += 1
    else:
        changed = False
        for col in ("name", "municipality", "role"):
            value = getattr(row, col)
            if value and getattr(subscriber, col) != value:
                setattr(subscriber, col, value)
                changed = True
        report.updated_subscribers += changed

    subscription = db.session.scalar(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber.id,
            Subscription.newsletter_id == newsletter.id,
        )
    )
    if subscription is not None and subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        report.withdrawn.append(row.email)
        return
    if basis is not None:
        if services.enrol(subscriber, newsletter, basis=basis.strip(), ctx=ctx):
            report.enrolled += 1
            if welcome:
                services.queue_welcome(subscriber, newsletter, basis=basis.strip())
                report.welcomed += 1
        else:
            report.unchanged += 1
        return
    if subscription is not None:
        # Already invited (pending) or confirmed: a second import sends nothing.
        report.unchanged += 1
        return
    subscription = Subscription(
        subscriber=subscriber,
        newsletter=newsletter,
        status=SubscriptionStatus.PENDING,
        requested_at=utcnow(),
    )
    db.session.add(subscription)
    services.record_event(
        subscription, ConsentAction.REQUESTED, ctx, consent_version=CURRENT_CONSENT_VERSION
    )
    db.session.flush()
    services.queue_confirmation(subscriber, [newsletter])
    report.invited += 1


def export_confirmed(newsletter_slug: str) -> Iterator[str]:
    """CSV lines (header first) of the newsletter's confirmed subscribers, streamed."""
    newsletter = newsletter_by_slug(newsletter_slug)
    if newsletter is None:
        raise ImportRefused(
            [(0, Reason(N_("there is no newsletter '%(slug)s'"), slug=newsletter_slug))]
        )
    result = db.session.execute(
        select(
            Subscriber.email,
            Subscriber.name,
            Subscriber.municipality,
            Subscriber.role,
            Subscription.confirmed_at,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
        )
        .order_by(Subscriber.email)
        .execution_options(yield_per=1000)
    )
    rows = (
        (email, name, municipality, role, confirmed_at.isoformat() if confirmed_at else "")
        for email, name, municipality, role, confirmed_at in result
    )
    yield from csv_lines(("email", "name", "municipality", "role", "confirmed_at"), rows)
