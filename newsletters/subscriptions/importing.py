"""CSV import and export of subscribers.

An import is all or nothing as far as the file goes: every row is checked first, and a
file with any bad row is refused whole, each bad line listed with its reason, before
anything is written. The rows are then written in chunks, each in short transactions
of its own (a large file never holds the database's write lock for long; on PostgreSQL
two chunks at once). Importing the same file again changes nothing, and re-running an
interrupted import completes it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import logging
import re
import shutil
import sqlite3
import tempfile
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, TextIO

from flask import current_app
from sqlalchemy import (
    Row,
    String,
    Text,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from newsletters import events
from newsletters.bulk import among
from newsletters.busy import is_busy
from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.addresses import InvalidAddress, ascii_address, normalise_email
from newsletters.names import InvalidName, clean_name
from newsletters.spreadsheet import csv_lines
from newsletters.subscriptions import enrolment, mails, suppression
from newsletters.subscriptions.consent import CURRENT_CONSENT_VERSION, RequestContext
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletters.subscriptions.municipalities import MUNICIPALITIES
from newsletters.timeutil import UTCDateTime, utcnow

COLUMNS = ("email", "name", "municipality", "role")
MAX_LENGTHS = {"name": 200, "municipality": 100, "role": 100}

log = logging.getLogger(__name__)


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

    def add(self, part: ImportReport) -> None:
        """Count in what a chunk written on its own report did."""
        for name in (
            "new_subscribers",
            "updated_subscribers",
            "enrolled",
            "invited",
            "welcomed",
            "unchanged",
        ):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.withdrawn.extend(part.withdrawn)
        self.suppressed.extend(part.suppressed)


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


class _Staging:
    """The file's valid rows, in a private temporary SQLite database on disk.

    The first pass checks every row and writes the good ones here; duplicates are found
    here (an index, not a set in memory), and the second pass reads the rows back in
    chunks. So an import's memory does not grow with the file: SQLite keeps about 2 MB
    of it in memory and the rest on disk, and deletes the file when it is closed.
    """

    def __init__(self) -> None:
        # "" = a private temporary database, deleted on close.
        self._db = sqlite3.connect("")
        self._db.execute(
            "CREATE TABLE rows (line INTEGER PRIMARY KEY, email TEXT NOT NULL,"
            " name TEXT NOT NULL, municipality TEXT NOT NULL, role TEXT NOT NULL)"
        )
        self._pending: list[tuple[int, str, str, str, str]] = []

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def clear(self) -> None:
        self._pending.clear()
        self._db.execute("DELETE FROM rows")

    def add(self, row: ImportRow) -> None:
        self._pending.append((row.line, row.email, row.name, row.municipality, row.role))
        if len(self._pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", self._pending)
        self._pending.clear()

    def finish(self) -> int:
        """Write what is left, index the addresses; the number of rows."""
        self._flush()
        self._db.execute("CREATE INDEX rows_email ON rows (email)")
        self._db.commit()
        return self._db.execute("SELECT count(*) FROM rows").fetchone()[0]

    def duplicates(self) -> Iterator[tuple[int, str]]:
        """(line, reason) for every row whose address is on an earlier line too."""
        for line, address, first in self._db.execute(
            "SELECT r.line, r.email, f.first FROM rows r JOIN"
            " (SELECT email, min(line) AS first FROM rows GROUP BY email HAVING count(*) > 1) f"
            " ON f.email = r.email WHERE r.line > f.first ORDER BY r.line"
        ):
            yield (
                line,
                Reason(N_("%(address)s is already on line %(line)d"), address=address, line=first),
            )

    def chunks(self, size: int) -> Iterator[list[ImportRow]]:
        after = 0
        while True:
            rows = [
                ImportRow(*values)
                for values in self._db.execute(
                    "SELECT line, email, name, municipality, role FROM rows"
                    " WHERE line > ? ORDER BY line LIMIT ?",
                    (after, size),
                )
            ]
            if not rows:
                return
            yield rows
            after = rows[-1].line


# Enough of the file's start to see a byte-order mark, a binary file and the header.
_HEAD_BYTES = 64 * 1024


def _load(stream: BinaryIO, staging: _Staging) -> tuple[list[tuple[int, str]], list[Reason]]:
    """First pass: read the file (UTF-8 with or without BOM, else Windows-1252 as Danish
    Excel saves it, or UTF-16 with a BOM), check every row, stage the good ones.

    Returns (problems, notes). Streams: a file that turns out not to be UTF-8 halfway
    is read again from the start as Windows-1252.
    """
    head = stream.read(_HEAD_BYTES)
    stream.seek(0)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" and some other tools write UTF-16 with a BOM.
        encodings = ["utf-16"]
    elif b"\x00" in head:
        raise ImportRefused(
            [(0, Reason(N_("the file is not a text file; save it from Excel as CSV")))]
        )
    else:
        encodings = ["utf-8-sig", "cp1252"]
    for attempt, encoding in enumerate(encodings):
        stream.seek(0)
        staging.clear()
        text = io.TextIOWrapper(stream, encoding=encoding, newline="")
        try:
            problems, notes = _check_rows(text, staging)
        except UnicodeDecodeError as exc:
            if attempt + 1 < len(encodings):
                continue
            if encoding == "utf-16":
                reason = Reason(N_("the file is damaged UTF-16 (%(reason)s)"), reason=exc.reason)
            else:
                reason = Reason(
                    N_("the file is neither UTF-8 nor Windows-1252 (%(reason)s)"),
                    reason=exc.reason,
                )
            raise ImportRefused([(0, reason)]) from exc
        finally:
            # The wrapper would close the caller's stream when it is collected.
            text.detach()
        if encoding == "cp1252":
            notes.insert(0, Reason(N_("the file is not UTF-8; it was read as Windows-1252")))
        return problems, notes
    raise AssertionError("unreachable")  # pragma: no cover


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def cell_problem(column: str, value: str) -> Reason | None:
    """What is wrong with a name, municipality or role cell (already stripped), if anything."""
    if len(value) > MAX_LENGTHS[column]:
        return Reason(
            N_("%(column)s is longer than %(limit)d characters"),
            column=column,
            limit=MAX_LENGTHS[column],
        )
    if _CONTROL_CHARACTERS.search(value):
        return Reason(
            N_("%(column)s contains a control character (a line break, tab or NUL)"),
            column=column,
        )
    return None


def name_problem(name: str) -> Reason | None:
    """What is wrong with a row's name, if anything: the shared rule for names
    (newsletters/names.py), as the form and the preference centre apply it."""
    try:
        clean_name(name)
    except InvalidName as exc:
        return Reason(exc.message, **exc.params)
    return None


def _check_rows(text: TextIO, staging: _Staging) -> tuple[list[tuple[int, str]], list[Reason]]:
    first = text.readline()
    if not first.strip() and not any(line.strip() for line in text):
        raise ImportRefused([(0, Reason(N_("the file is empty")))])
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(itertools.chain([first], text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
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

    problems: list[tuple[int, str]] = []
    for line, cells in _records(reader):
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
                        value=raw_email[:320],
                        why=str(exc),
                    ),
                )
            )
            continue
        name = ""
        try:
            name = clean_name(values.get("name", ""))
        except InvalidName as exc:
            name_error = Reason(exc.message, **exc.params)
        else:
            name_error = None
        row_problems = [
            problem
            for problem in (
                name_error,
                cell_problem("municipality", values.get("municipality", "")),
                cell_problem("role", values.get("role", "")),
            )
            if problem is not None
        ]
        municipality = values.get("municipality", "")
        if municipality and not row_problems:
            official = normalise_municipality(municipality)
            if official is None:
                row_problems.append(
                    Reason(
                        N_("'%(value)s' is not one of the 98 municipalities"),
                        value=municipality,
                    )
                )
            else:
                municipality = official
        if row_problems:
            problems.extend((line, problem) for problem in row_problems)
            continue
        staging.add(
            ImportRow(
                line=line,
                email=address,
                name=name,
                municipality=municipality,
                role=values.get("role", ""),
            )
        )
    return problems, notes


def _records(reader) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each record; the line where it starts (a quoted cell may hold
    line breaks, so a record can span several lines)."""
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportRefused(
                [(reader.line_num, Reason(N_("unreadable CSV: %(error)s"), error=str(exc)))]
            ) from exc
        yield start, cells


def import_subscribers(
    source: bytes | BinaryIO,
    *,
    newsletter_slug: str,
    basis: str | None = None,
    welcome: bool = False,
    dry_run: bool = False,
    ctx: RequestContext | None = None,
    actor_id: int | None = None,
    file_name: str = "",
) -> ImportReport:
    """Import a CSV file into one newsletter (see `import_steps`) and report what changed."""
    steps = import_steps(
        source,
        newsletter_slug=newsletter_slug,
        basis=basis,
        welcome=welcome,
        dry_run=dry_run,
        ctx=ctx,
        actor_id=actor_id,
        file_name=file_name,
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _begin_writing() -> None:
    """On SQLite, take the write lock before the chunk's first write (BEGIN IMMEDIATE,
    which waits DATABASE_LOCK_TIMEOUT_SECONDS): a deferred transaction that has read and
    then finds another connection's commit fails at once with SQLITE_BUSY, no wait."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if not raw.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class ImportProgress:
    """The rest of an import that has passed its check (`import_steps` after its first
    step), for a page that shows its progress: iterating yields (rows done, rows in
    all) after each chunk; then `report` holds the report, or `busy` is set when the
    database stayed busy too long, or `failed` when anything else stopped it (logged).
    Either way what was written is complete, and running the same file again imports
    the rest."""

    def __init__(self, steps: Generator[tuple[int, int], None, ImportReport]) -> None:
        self._steps = steps
        self.report: ImportReport | None = None
        self.busy = False
        self.failed = False
        self.done = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        try:
            while True:
                self.done, total = next(self._steps)
                yield self.done, total
        except StopIteration as done:
            self.report = done.value
        except DBAPIError as error:
            if is_busy(error):
                self.busy = True
            else:
                self._stopped()
        except Exception:
            self._stopped()

    def _stopped(self) -> None:
        # The page has been streaming for a while, so it cannot turn into an error page:
        # it says what happened in the reader's words, and the details go to the log.
        # The chunk that failed was rolled back; the chunks before it are whole.
        log.exception("an import from the staff page stopped after %s rows", self.done)
        db.session.rollback()
        self.failed = True

    def notes(self) -> list[str]:
        """The report's notes in the reader's language."""
        notes = self.report.notes if self.report else []
        return [note.localized() if isinstance(note, Reason) else note for note in notes]


def import_steps(
    source: bytes | BinaryIO,
    *,
    newsletter_slug: str,
    basis: str | None = None,
    welcome: bool = False,
    dry_run: bool = False,
    ctx: RequestContext | None = None,
    actor_id: int | None = None,
    file_name: str = "",
) -> Generator[tuple[int, int], None, ImportReport]:
    """Import a CSV file (bytes, or a binary stream; a pipe is spooled to disk) into one
    newsletter: invite (double opt-in) or enrol with a basis.

    Two passes. The first checks every row and refuses the whole file, every bad line
    listed, before anything is written. The second writes in chunks of
    IMPORT_CHUNK_ROWS rows, set-based, each chunk in short transactions of its own, so
    no transaction holds the database's write lock for more than a moment. Every chunk
    is idempotent: an import that was interrupted is completed by running it again.
    `dry_run` reads what each chunk would change and writes nothing.

    A generator: it yields (rows written, rows in the file) once the whole file has
    been checked, before anything is written, and after each chunk; the report is its
    return value (`import_subscribers` runs it to the end). ImportRefused comes before
    the first yield, so a caller that shows progress can still refuse the file whole.
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
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    if not stream.seekable():
        # A pipe (`subscribers import /dev/stdin`): both passes read the file from the
        # start, so it is spooled to a temporary file first (disk, not memory).
        with tempfile.TemporaryFile() as spooled:
            shutil.copyfileobj(stream, spooled)
            spooled.seek(0)
            return (
                yield from import_steps(
                    spooled,
                    newsletter_slug=newsletter_slug,
                    basis=basis,
                    welcome=welcome,
                    dry_run=dry_run,
                    ctx=ctx,
                    actor_id=actor_id,
                    file_name=file_name,
                )
            )
    # Nothing of the database is held while the file is read.
    db.session.rollback()
    with _Staging() as staging:
        problems, notes = _load(stream, staging)
        rows = staging.finish()
        problems.extend(staging.duplicates())
        if problems:
            raise ImportRefused(sorted(problems, key=lambda problem: problem[0]))
        if not rows:
            raise ImportRefused([(0, Reason(N_("the file has no rows below its header")))])
        report = ImportReport(rows=rows, dry_run=dry_run, notes=notes)
        ctx = ctx or RequestContext(method="import_basis" if basis else "import_invite")
        plan = _Plan(
            newsletter_id=newsletter.id,
            basis=basis.strip() if basis is not None else None,
            welcome=welcome,
            dry_run=dry_run,
            ctx=ctx,
            report=report,
        )
        chunk_rows = max(1, int(current_app.config["IMPORT_CHUNK_ROWS"]))
        yield 0, rows
        _refresh_statistics()
        if not dry_run and db.engine.dialect.name == "postgresql":
            yield from _write_two_at_once(plan, staging.chunks(chunk_rows), rows)
        else:
            statistics = _Statistics(report)
            done = 0
            for chunk in staging.chunks(chunk_rows):
                statistics.refresh_if_grown()
                try:
                    plan.run(chunk)
                except BaseException:
                    db.session.rollback()
                    raise
                done += len(chunk)
                yield done, rows
    if not dry_run:
        # Counts only: the audit log never names a subscriber. The chunks have
        # committed; the announcement is a transaction of its own.
        api = ctx.method.startswith("api:")
        via = "web" if actor_id is not None else ("api" if api else "cli")
        events.announce(
            "subscribers.import",
            f"newsletter:{newsletter_slug}",
            actor=events.Actor(actor_id, ctx.ip, via),
            **{
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
                "from": via,
                **({"api_token": ctx.method[4:]} if api else {}),
            },
        )
        db.session.commit()
    return report


def _write_two_at_once(
    plan: _Plan, chunks: Iterator[list[ImportRow]], rows: int
) -> Generator[tuple[int, int], None, None]:
    """PostgreSQL: write the chunks two at a time, each on a connection of its own in a
    thread of its own; yields (rows done, rows) as each finishes, in file order.

    The server's work per chunk (seven indexes on subscribers, two of them trigram,
    foreign-key checks, the outbox's rows) was most of an import's time, and one
    connection uses one core: two chunks at once use both, and the next chunk's reads
    and Python work go on while the server writes the last (benchmarks/README.md). The
    chunks are independent (each address is in one chunk only) and each is idempotent
    as before; a chunk that fails is rolled back, the other is let finish, and the
    error is raised here (the other's, if it failed too, is logged). SQLite takes one
    writer at a time and keeps the plain loop.
    """
    app = current_app._get_current_object()

    def write(chunk: list[ImportRow]) -> tuple[ImportReport, int]:
        part = dataclasses.replace(plan, report=ImportReport())
        with app.app_context():
            try:
                part.run(chunk)
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()
        return part.report, len(chunk)

    report = plan.report
    statistics = _Statistics(report)
    done = 0
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="import") as pool:
        running: deque[Future[tuple[ImportReport, int]]] = deque()

        def finish_first() -> int:
            part, size = running.popleft().result()
            report.add(part)
            return size

        try:
            for chunk in chunks:
                if len(running) == 2:
                    done += finish_first()
                    yield done, rows
                    statistics.refresh_if_grown()
                running.append(pool.submit(write, chunk))
            while running:
                done += finish_first()
                yield done, rows
        except BaseException:
            for future in running:
                future.cancel()
            # The error raised is the first chunk's; another chunk in flight that failed
            # too says why in the log, not silently (its rows are rolled back as well).
            for future in running:
                if not future.cancelled() and (error := future.exception()) is not None:
                    log.error(
                        "import: a chunk written beside the failed one failed too",
                        exc_info=error,
                    )
            raise


# On PostgreSQL the planner's statistics of a table that an import is filling go stale
# at once (a fresh table looks empty, and each chunk's lookups by address then scan
# it): measured, the unchanged re-import of 100 000 rows took 16 s instead of 8. So
# the tables are analysed before the chunks, after this many new subscribers, and again
# each time they have grown fourfold since (the plans need the size only roughly right,
# and each ANALYZE of a large table costs a few hundred milliseconds: every 10 000 rows
# it was a tenth of a 100 000-row import; at each doubling, 0.4 s of 10).
_ANALYSE_EVERY = 10_000


@dataclass
class _Statistics:
    """Analyses the tables when the import has grown them enough (see above)."""

    report: ImportReport
    analysed_at: int = 0

    def refresh_if_grown(self) -> None:
        if self.report.new_subscribers >= max(_ANALYSE_EVERY, 4 * self.analysed_at):
            _refresh_statistics()
            self.analysed_at = self.report.new_subscribers


def _refresh_statistics() -> None:
    if db.engine.dialect.name == "postgresql":
        # The outbox too: an inviting import looks up each chunk's addresses there (the
        # hourly limit), and never analysed it was scanned whole each time (3 of 21 s).
        db.session.execute(text("ANALYZE subscribers, subscriptions, outbox_messages"))
        db.session.commit()


_DETAILS = ("name", "municipality", "role")
_subscribers = Subscriber.__table__
_subscriptions = Subscription.__table__
_consent_events = ConsentEvent.__table__


@dataclass
class _Plan:
    """What an import does to each chunk of rows, set-based."""

    # An id, not the row: a page that streams the import's progress writes its chunks
    # after its request's first session has ended (stream_with_context).
    newsletter_id: int
    basis: str | None
    welcome: bool
    dry_run: bool
    ctx: RequestContext
    report: ImportReport
    _one_transaction: bool = False

    def run(self, rows: list[ImportRow]) -> None:
        report = self.report
        newsletter_id = self.newsletter_id
        blocked = suppression.suppressed_among((row.email for row in rows), normalised=True)
        if blocked:
            report.suppressed.extend(row.email for row in rows if row.email in blocked)
            rows = [row for row in rows if row.email not in blocked]
        known = {
            found.email: found
            for found in db.session.execute(
                select(
                    _subscribers.c.id,
                    _subscribers.c.email,
                    _subscribers.c.name,
                    _subscribers.c.municipality,
                    _subscribers.c.role,
                ).where(among(_subscribers.c.email, [row.email for row in rows]))
            )
        }
        status_of = dict(
            iter(
                db.session.execute(
                    select(_subscriptions.c.subscriber_id, _subscriptions.c.status).where(
                        _subscriptions.c.newsletter_id == newsletter_id,
                        among(
                            _subscriptions.c.subscriber_id, [found.id for found in known.values()]
                        ),
                    )
                )
            )
        )
        new_rows = [row for row in rows if row.email not in known]
        updates = []
        to_create: list[str] = [row.email for row in new_rows]  # subscription to insert
        to_confirm: list[int] = []  # pending subscriber ids to enrol
        for row in rows:
            found = known.get(row.email)
            if found is None:
                continue
            if any(
                getattr(row, col) and getattr(row, col) != getattr(found, col) for col in _DETAILS
            ):
                updates.append(
                    {
                        "b_id": found.id,
                        **{
                            f"b_{col}": getattr(row, col) or getattr(found, col) for col in _DETAILS
                        },
                    }
                )
            status = status_of.get(found.id)
            if status is None:
                to_create.append(row.email)
            elif status == SubscriptionStatus.UNSUBSCRIBED:
                # A withdrawal is never overridden by an import.
                report.withdrawn.append(row.email)
            elif status == SubscriptionStatus.PENDING and self.basis is not None:
                to_confirm.append(found.id)
            else:
                report.unchanged += 1
        report.new_subscribers += len(new_rows)
        report.updated_subscribers += len(updates)
        if self.dry_run:
            self._count(len(to_create) + len(to_confirm))
            db.session.rollback()
            return

        # Transaction 1: the people. Committed on its own, so the mails below are built
        # with their ids before the second, short transaction writes the rest. An import
        # interrupted in between finds them here and carries on. On PostgreSQL an
        # enrolment without mails writes the chunk in one transaction (no lock to give
        # up between the two, and a commit's WAL flush the fewer).
        self._one_transaction = (
            db.engine.dialect.name == "postgresql" and self.basis is not None and not self.welcome
        )
        if new_rows or updates:
            _begin_writing()
            enrolment.insert_subscribers(
                [
                    {
                        "email": row.email,
                        "name": row.name,
                        "municipality": row.municipality,
                        "role": row.role,
                    }
                    for row in new_rows
                ]
            )
            if updates:
                db.session.connection().execute(
                    update(_subscribers)
                    .where(_subscribers.c.id == bindparam("b_id"))
                    .values({col: bindparam(f"b_{col}") for col in _DETAILS}),
                    updates,
                )
            if not self._one_transaction:
                db.session.commit()
        if not to_create and not to_confirm:
            db.session.commit()
            return
        self._subscribe(to_create, to_confirm)

    def _count(self, changes: int) -> None:
        if self.basis is not None:
            self.report.enrolled += changes
            if self.welcome:
                self.report.welcomed += changes
        else:
            self.report.invited += changes

    def _subscribe(self, to_create: list[str], to_confirm: list[int]) -> None:
        newsletter = db.session.get(Newsletter, self.newsletter_id)
        newsletter_id = newsletter.id
        now = utcnow()
        mail_rows: dict[int, dict] = {}
        invited: dict[int, Row] = {}
        if self.basis is None or self.welcome:
            theirs = among(Subscriber.email, to_create) | among(Subscriber.id, to_confirm)
            if self.basis is None:
                # Only the columns the invitation needs (loading 5 000 ORM objects cost
                # more than assembling their mails).
                found = db.session.execute(select(*mails.ConfirmationMails.COLUMNS).where(theirs))
                people = [(ascii_address(p.email), p) for p in found]
                limit = int(current_app.config["ADDRESS_MAILS_PER_HOUR"])
                sent = mails.mails_this_hour(to for to, _ in people)
                invited = {p.id: p for to, p in people if sent.get(to, 0) < limit}
            else:
                for person in db.session.scalars(select(Subscriber).where(theirs)):
                    mail_rows[person.id] = mails.welcome_mail_row(
                        person, newsletter, basis=self.basis
                    )
        if not self._one_transaction:
            db.session.rollback()  # end the reads: the write transaction starts now

        # Transaction 2: subscriptions, consent records and mails, all or nothing; each
        # table one set-based statement (INSERT ... SELECT), the mails one executemany.
        confirmed = self.basis is not None
        consent = {
            "action": ConsentAction.ENROLLED if confirmed else ConsentAction.REQUESTED,
            "ctx": self.ctx,
            "at": now,
            "basis": self.basis,
            "consent_version": None if confirmed else CURRENT_CONSENT_VERSION,
        }
        if self._one_transaction:
            # No mails to queue: the new subscriptions' consent records are written by
            # the same statement, not looked up again by id.
            recorded = _insert_subscriptions_with_consent(
                newsletter_id, to_create, SubscriptionStatus.CONFIRMED, now, consent
            )
            created: list[tuple[int, int]] = []
        else:
            recorded = 0
            created = _insert_subscriptions(
                newsletter_id,
                to_create,
                SubscriptionStatus.CONFIRMED if confirmed else SubscriptionStatus.PENDING,
                now,
            )
        if to_confirm:
            created += list(
                db.session.connection().execute(
                    update(_subscriptions)
                    .where(
                        _subscriptions.c.newsletter_id == newsletter_id,
                        among(_subscriptions.c.subscriber_id, to_confirm),
                        # Not withdrawn meanwhile: a withdrawal is never overridden.
                        _subscriptions.c.status == SubscriptionStatus.PENDING,
                    )
                    .values(status=SubscriptionStatus.CONFIRMED, confirmed_at=now)
                    .returning(_subscriptions.c.id, _subscriptions.c.subscriber_id)
                )
            )
        if created:
            _record_consent([subscription_id for subscription_id, _ in created], **consent)
            outbox.enqueue_rows([mail_rows[s] for _id, s in created if s in mail_rows])
            if invited:
                # Written when the worker sends them (mails.ConfirmationMails).
                mails.ConfirmationMails([newsletter]).enqueue(
                    [invited[s] for _id, s in created if s in invited]
                )
        db.session.commit()
        # Subscribed meanwhile by someone else (a form carried out between the two
        # transactions): nothing to do for them.
        done = recorded + len(created)
        self.report.unchanged += len(to_create) + len(to_confirm) - done
        self._count(done)


def _dialect_insert(table):
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def _insert_subscriptions(
    newsletter_id: int, emails: list[str], status: SubscriptionStatus, now: datetime
) -> list[tuple[int, int]]:
    """Subscribe these addresses' subscribers (one INSERT ... SELECT), skipping any
    subscription that exists by now; (id, subscriber_id) of those inserted."""
    if not emails:
        return []
    columns = ["subscriber_id", "newsletter_id", "status", "requested_at"]
    values = [
        _subscribers.c.id,
        literal(newsletter_id),
        literal(status.value),
        literal(now, UTCDateTime),
    ]
    if status == SubscriptionStatus.CONFIRMED:
        columns.append("confirmed_at")
        values.append(literal(now, UTCDateTime))
    statement = (
        _dialect_insert(_subscriptions)
        .from_select(columns, select(*values).where(among(_subscribers.c.email, emails)))
        .on_conflict_do_nothing(
            index_elements=[_subscriptions.c.subscriber_id, _subscriptions.c.newsletter_id]
        )
        .returning(_subscriptions.c.id, _subscriptions.c.subscriber_id)
    )
    return [tuple(row) for row in db.session.connection().execute(statement)]


def _insert_subscriptions_with_consent(
    newsletter_id: int, emails: list[str], status: SubscriptionStatus, now: datetime, consent: dict
) -> int:
    """`_insert_subscriptions` and `_record_consent` in one statement (PostgreSQL: the
    consent records inserted from the subscriptions' INSERT ... RETURNING, a
    data-modifying WITH); the number of subscriptions inserted."""
    if not emails:
        return 0
    columns = ["subscriber_id", "newsletter_id", "status", "requested_at", "confirmed_at"]
    values = [
        _subscribers.c.id,
        literal(newsletter_id),
        literal(status.value),
        literal(now, UTCDateTime),
        literal(now if status == SubscriptionStatus.CONFIRMED else None, UTCDateTime),
    ]
    created = (
        _dialect_insert(_subscriptions)
        .from_select(columns, select(*values).where(among(_subscribers.c.email, emails)))
        .on_conflict_do_nothing(
            index_elements=[_subscriptions.c.subscriber_id, _subscriptions.c.newsletter_id]
        )
        .returning(_subscriptions.c.id)
        .cte("created")
    )
    records = _consent_values(created.c.id, **consent)
    recorded = (
        insert(_consent_events)
        .from_select(list(records), select(*records.values()))
        .returning(_consent_events.c.id)
        .cte("recorded")
    )
    return db.session.connection().execute(select(func.count()).select_from(recorded)).scalar_one()


def _consent_values(
    subscription_id,
    action: ConsentAction,
    ctx: RequestContext,
    *,
    at: datetime,
    basis: str | None,
    consent_version: str | None,
) -> dict:
    """The columns of a consent record: the subscription's id from `subscription_id`."""
    return {
        "subscription_id": subscription_id,
        "action": literal(action.value),
        "method": literal(ctx.method),
        "at": literal(at, UTCDateTime),
        "ip": literal((ctx.ip or None) and ctx.ip[:64], String),
        "user_agent": literal((ctx.user_agent or None) and ctx.user_agent[:512], String),
        "consent_text_version": literal(consent_version, String),
        "locale": literal(ctx.locale),
        "basis": literal(basis, Text),
    }


def _record_consent(
    subscription_ids: list[int],
    action: ConsentAction,
    ctx: RequestContext,
    *,
    at: datetime,
    basis: str | None,
    consent_version: str | None,
) -> None:
    """One consent record per subscription (one INSERT ... SELECT)."""
    values = _consent_values(
        _subscriptions.c.id,
        action,
        ctx,
        at=at,
        basis=basis,
        consent_version=consent_version,
    )
    db.session.connection().execute(
        insert(_consent_events).from_select(
            list(values),
            select(*values.values()).where(among(_subscriptions.c.id, subscription_ids)),
        )
    )


def announce_export(newsletter_slug: str, *, actor: events.Actor) -> bool:
    """Record that `actor` takes the newsletter's subscriber list (audited, committed), before
    the download starts; False, and nothing recorded, if there is no such newsletter."""
    if newsletter_by_slug(newsletter_slug) is None:
        return False
    events.announce(
        "subscribers.export", f"newsletter:{newsletter_slug}", actor=actor, **{"from": actor.via}
    )
    db.session.commit()
    return True


# Rows fetched from the database at a time (a server-side cursor on PostgreSQL), and
# lines handed on at a time: memory stays the same for a hundred rows or a million.
EXPORT_BATCH = 1_000


def export_confirmed(newsletter_slug: str) -> Iterator[str]:
    """CSV lines (header first) of the newsletter's confirmed subscribers, streamed: the
    header before the query runs (first bytes at once), then the rows in chunks of
    EXPORT_BATCH lines as they are read, EXPORT_BATCH rows at a time."""
    newsletter = newsletter_by_slug(newsletter_slug)
    if newsletter is None:
        raise ImportRefused(
            [(0, Reason(N_("there is no newsletter '%(slug)s'"), slug=newsletter_slug))]
        )
    lines = csv_lines(
        ("email", "name", "municipality", "role", "confirmed_at"), _confirmed_rows(newsletter.id)
    )
    yield next(lines)
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= EXPORT_BATCH:
            yield "".join(chunk)
            chunk.clear()
    if chunk:
        yield "".join(chunk)


def _confirmed_rows(newsletter_id: int) -> Iterator[tuple[str, str, str, str, str]]:
    """The rows of the export, read EXPORT_BATCH at a time (the query runs at the first
    row asked for)."""
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
            Subscription.newsletter_id == newsletter_id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
        )
        .order_by(Subscriber.email)
        .execution_options(yield_per=EXPORT_BATCH)
    )
    for email, name, municipality, role, confirmed_at in result:
        yield (email, name, municipality, role, confirmed_at.isoformat() if confirmed_at else "")
