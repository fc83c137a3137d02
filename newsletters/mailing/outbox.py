"""The durable outbox: mail is written with the action that causes it and sent later.

`enqueue` adds a row to the caller's transaction, so a mail exists exactly when the
action committed. `deliver_due` is the job the worker runs: claim due rows under a
lease, hand each to the SMTP server, record the outcome, retry with backoff.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, insert, literal, select, update

from newsletters import jobs
from newsletters.bulk import write_rows
from newsletters.extensions import db
from newsletters.mailing.addresses import ascii_address
from newsletters.mailing.compose import RenderedMail, build_message, envelope_sender
from newsletters.mailing.models import OutboxMessage, OutboxStatus
from newsletters.mailing.transport import DeliveryFailure, Transport, open_transport
from newsletters.timeutil import utcnow

log = logging.getLogger(__name__)


def enqueue(
    *,
    kind: str,
    to: str,
    mail: RenderedMail,
    subscriber_id: int | None = None,
    list_id: str | None = None,
    unsubscribe_url: str | None = None,
) -> OutboxMessage:
    """Add a mail to the current transaction; it is sent only if that transaction commits."""
    message = OutboxMessage(
        **message_row(
            kind=kind,
            to=to,
            mail=mail,
            subscriber_id=subscriber_id,
            list_id=list_id,
            unsubscribe_url=unsubscribe_url,
        )
    )
    db.session.add(message)
    jobs.queued_work()
    return message


def message_row(
    *,
    kind: str,
    to: str,
    mail: RenderedMail,
    subscriber_id: int | None = None,
    list_id: str | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The outbox row of one mail, built (the slow part) without touching the database:
    a bulk caller builds its rows first and writes them with `enqueue_rows`."""
    to = ascii_address(to)
    raw = build_message(
        to=to,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        list_id=list_id,
        unsubscribe_url=unsubscribe_url,
    )
    return {
        "kind": kind,
        "subscriber_id": subscriber_id,
        "to_address": to,
        "envelope_from": envelope_sender(),
        "subject": mail.subject,
        "raw": raw.decode("ascii"),
        "status": OutboxStatus.QUEUED,
        "next_attempt_at": utcnow(),
    }


def enqueue_rows(rows: list[dict[str, Any]]) -> None:
    """Add prepared mails (`message_row`) to the current transaction, all at once: on
    PostgreSQL with COPY, on SQLite with one executemany of plain values.

    Not SQLAlchemy's executemany: for 5 000 rows of 6.7 kB it made each row's defaults
    and processed each value (and on PostgreSQL sent them as bound parameters of
    multi-row INSERTs), more than the database's own work of writing them. A column's
    values are processed once per distinct value (the status and the times are the same
    for every row)."""
    if not rows:
        return
    connection = db.session.connection()
    dialect = connection.dialect
    table = OutboxMessage.__table__
    defaults = {"attempts": 0, "created_at": utcnow()}
    names = list(rows[0]) + [name for name in defaults if name not in rows[0]]
    cells: list[Callable[[dict[str, Any]], Any]] = []
    for name in names:
        process = table.c[name].type.bind_processor(dialect)
        if name not in rows[0]:
            value = process(defaults[name]) if process else defaults[name]
            cells.append(lambda row, value=value: value)
        elif process is None:
            cells.append(operator.itemgetter(name))
        else:
            cells.append(_once_per_value(name, process))
    values = [tuple(cell(row) for cell in cells) for row in rows]
    write_rows(connection, table.name, names, values)
    jobs.queued_work()


def enqueue_from(query: Select) -> int:
    """Add the mails a query gives to the current transaction, in one INSERT ... SELECT;
    how many. The query gives a row per mail, its columns labelled kind, subscriber_id,
    to_address, envelope_from, subject and raw or fills; the rest (queued, due now) is
    the outbox's own. For a bulk caller whose mails are made from its own tables (an
    import's invitations: 5 000 rows in one statement, none of them built in Python)."""
    table = OutboxMessage.__table__
    given = query.subquery()
    names = [column.name for column in given.c]
    now = utcnow()
    own = {
        "status": literal(OutboxStatus.QUEUED, type_=table.c.status.type),
        "attempts": literal(0),
        "created_at": literal(now, type_=table.c.created_at.type),
        "next_attempt_at": literal(now, type_=table.c.next_attempt_at.type),
    }
    result = db.session.execute(
        insert(table).from_select([*names, *own], select(*given.c, *own.values()))
    )
    jobs.queued_work()
    return result.rowcount


def _once_per_value(name: str, process: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Any]:
    """A row's `name` processed for the database, each distinct value once."""
    seen: dict[Any, Any] = {}

    def cell(row: dict[str, Any]) -> Any:
        value = row[name]
        if value not in seen:
            seen[value] = process(value)
        return seen[value]

    return cell


def claim_due(worker_id: str, limit: int) -> list[int]:
    """Lease up to `limit` queued, due messages to this worker; returns their ids."""
    return jobs.claim(OutboxMessage, worker_id, limit, OutboxMessage.status == OutboxStatus.QUEUED)


@dataclass
class DeliveryStats:
    sent: int = 0
    captured: int = 0
    retried: int = 0
    failed: int = 0
    connection_lost: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.captured + self.retried + self.failed


def deliver_due(worker_id: str, *, transport: Transport | None = None) -> DeliveryStats:
    """Send every due outbox message once; the job the worker runs on each tick."""
    stats = DeliveryStats()
    own_transport = transport is None
    transport = transport or open_transport()
    batch_size = int(current_app.config["WORKER_BATCH_SIZE"])
    try:
        while not stats.connection_lost:
            ids = claim_due(worker_id, batch_size)
            if not ids:
                break
            for message_id in ids:
                if stats.connection_lost:
                    _release(message_id, worker_id)
                    continue
                _deliver_one(message_id, worker_id, transport, stats)
            if len(ids) < batch_size:
                break
    finally:
        if own_transport:
            transport.close()
    return stats


def _release(message_id: int, worker_id: str) -> None:
    """Give back a claimed message untried (the connection is gone), due after a backoff."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.leased_by == worker_id)
        .values(leased_until=None, leased_by=None, next_attempt_at=utcnow() + jobs.backoff(1))
    )
    db.session.commit()


def _record_failure(message: OutboxMessage, failure: DeliveryFailure, stats: DeliveryStats) -> None:
    """Failed for good (5xx, or retried for too long), or due again after a backoff."""
    message.last_error = str(failure)[:2000]
    message.leased_until = None
    message.leased_by = None
    give_up = timedelta(hours=float(current_app.config["SEND_GIVE_UP_AFTER_HOURS"]))
    if failure.permanent or utcnow() - message.created_at > give_up:
        message.status = OutboxStatus.FAILED
        stats.failed += 1
        log.warning("outbox %s (%s) failed: %s", message.id, message.kind, failure)
    else:
        message.next_attempt_at = utcnow() + jobs.backoff(message.attempts)
        stats.retried += 1
        log.info("outbox %s will be retried: %s", message.id, failure)
    stats.connection_lost = failure.connection_lost
    stats.errors.append(str(failure))
    db.session.commit()


def _deliver_one(
    message_id: int, worker_id: str, transport: Transport, stats: DeliveryStats
) -> None:
    message = db.session.get(OutboxMessage, message_id)
    # Gone (subscriber erased) or taken over by another worker after our lease ran out.
    if message is None or message.leased_by != worker_id or message.status != OutboxStatus.QUEUED:
        db.session.rollback()
        return
    message.attempts += 1
    try:
        # A row with fills is written now by its composer, which may read the database:
        # without flushing the attempt first, which would take SQLite's write lock
        # while the dev mailbox's capture writes from a connection of its own.
        with db.session.no_autoflush:
            data = message.raw.encode("ascii")
        transport.send(message.envelope_from, message.to_address, data)
    except DeliveryFailure as failure:
        _record_failure(message, failure, stats)
        return
    except Exception as exc:
        # A message we cannot even hand over (a bug, bad data) must not block the rest
        # of the queue: record it as failed, start a fresh connection, go on.
        log.exception("outbox %s could not be sent", message.id)
        transport.close()
        _record_failure(
            message, DeliveryFailure(f"unexpected error: {exc!r}", permanent=True), stats
        )
        return
    message.status = OutboxStatus.CAPTURED if transport.captures else OutboxStatus.SENT
    message.sent_at = utcnow()
    message.leased_until = None
    message.last_error = None
    if transport.captures:
        stats.captured += 1
    else:
        stats.sent += 1
    db.session.commit()
