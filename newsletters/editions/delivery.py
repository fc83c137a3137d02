"""The delivery loop: claim due deliveries, mark each in flight, record the outcome.

For each message, one committed transaction records the previous message as SENT and
marks this one SENDING, on condition that the edition is still sending and the
subscription still confirmed; only then is the message handed to the SMTP server. So:

- pausing, cancelling and unsubscribing take effect before the next message
  (PRODUCT.md invariant 3);
- a worker killed at any instant leaves at most one SENDING delivery, which another
  worker sends again once the lease runs out and counts as a possible duplicate; every
  other delivery is either SENT or still QUEUED, so nobody is skipped (invariant 2).

Read top to bottom: `send_due` (the worker's job) runs lanes; a lane claims batches
(`_claim_next`); `_BatchSender` sends a batch with `_Marks` (the in-flight marks) and
`messages` (the message and its SMTP conversation); a refusal is recorded
(`_record_failure`) and announced as `delivery.refused` for bounces to act on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from select import select as wait_until_ready

from flask import current_app
from psycopg import pq
from sqlalchemy import func, select, update

from newsletters import events, jobs
from newsletters.editions import lifecycle, messages
from newsletters.editions.messages import Recipient
from newsletters.editions.models import Delivery, DeliveryStatus, Edition, EditionStatus
from newsletters.extensions import db
from newsletters.mailing.throttle import TokenBucket
from newsletters.mailing.transport import (
    DeliveryFailure,
    SmtpTransport,
    Transport,
    open_transport,
)
from newsletters.subscriptions.models import Subscriber
from newsletters.timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
editions = Edition.__table__


@dataclass
class SendStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    connection_lost: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.retried + self.skipped

    def merge(self, other: SendStats) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.retried += other.retried
        self.skipped += other.skipped
        self.connection_lost = self.connection_lost or other.connection_lost
        self.errors.extend(other.errors)


_edition_sending = (
    select(editions.c.id)
    .where(
        editions.c.id == deliveries.c.edition_id,
        editions.c.status == EditionStatus.SENDING.value,
    )
    .exists()
)

# The writes of every message; the status values are those of DeliveryStatus,
# EditionStatus and SubscriptionStatus. The in-flight mark: this claimed delivery
# becomes SENDING only if it is still this worker's and unsent, its edition still
# sending and its subscriber still confirmed; the check and the mark are one statement.
# The SENT mark of the message before it goes into the same transaction.
_IN_FLIGHT_SQL = """UPDATE deliveries
SET status = 'sending', attempts = attempts + 1,
    possible_duplicates = possible_duplicates + CASE WHEN status = 'sending' THEN 1 ELSE 0 END
WHERE id = :delivery AND leased_by = :worker AND status IN ('queued', 'sending')
  AND EXISTS (SELECT 1 FROM editions
              WHERE editions.id = :edition AND editions.status = 'sending')
  AND EXISTS (SELECT 1 FROM subscriptions
              WHERE subscriptions.subscriber_id = :subscriber
                AND subscriptions.newsletter_id = :newsletter
                AND subscriptions.status = 'confirmed')"""
_SENT_SQL = """UPDATE deliveries SET status = 'sent', sent_at = :sent_at, leased_until = NULL
WHERE id = :sent"""
_SENT_SQL_PG = _SENT_SQL.replace(":sent_at", "%(sent_at)s").replace(":sent", "%(sent)s")
# PostgreSQL: both as one prepared statement ($1 the SENT one, 0 for none).
_PG_MARK_SQL = (
    "WITH sent AS ("
    + _SENT_SQL.replace(":sent_at", "$2::timestamptz").replace(":sent", "$1::integer")
    + ")\n"
    + _IN_FLIGHT_SQL.replace(":delivery", "$3::integer")
    .replace(":worker", "$4::varchar")
    .replace(":edition", "$5::integer")
    .replace(":subscriber", "$6::integer")
    .replace(":newsletter", "$7::integer")
).encode("utf-8")


_MARK_TIMEOUT_SECONDS = 60.0


def _wait_for(fd: int, *, write: bool, deadline: float) -> None:
    """Wait until the database connection's socket can be read (or written)."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        raise TimeoutError("the database did not answer the delivery mark")
    if write:
        wait_until_ready([], [fd], [], timeout)
    else:
        wait_until_ready([fd], [], [], timeout)


class _Marks:
    """Each message's committed in-flight mark, on one connection held for a batch.

    `start()` begins, in ONE transaction, marking the previous message (accepted by the
    server) SENT and this one SENDING if the conditions of _IN_FLIGHT_SQL hold;
    `marked()` waits for the commit and says whether this one was marked. Only then may
    the message be handed over. On PostgreSQL that is a single statement (the SENT mark
    as a data-modifying CTE), prepared once per connection and sent in autocommit mode
    without waiting for it (libpq's asynchronous calls): the server plans, writes and
    flushes it while the worker assembles the message and opens its SMTP envelope, so
    the round trip costs the send almost nothing. On SQLite, which runs in this process,
    `start()` does the work at once: two statements and a commit.

    The connection comes from SQLAlchemy's pool (which sets and resets its isolation level
    and rolls back whatever is left when it goes back); the statements run on the driver
    itself. This runs once per message: through the ORM session it cost 3x the database
    work (benchmarks/README.md, "Sending an edition").
    """

    _PG_STATEMENT = b"newsletters_delivery_mark"

    def __init__(self, worker_id: str) -> None:
        engine = db.engine
        self._connection = engine.connect()
        self._postgresql = engine.dialect.name == "postgresql"
        try:
            if self._postgresql:
                self._connection.execution_options(isolation_level="AUTOCOMMIT")
            self._driver = self._connection.connection.driver_connection
            if self._postgresql:
                self._pg = self._driver.pgconn
                self._prepare_pg()
            else:
                self._cursor = self._driver.cursor()
        except BaseException:
            self._connection.close()
            raise
        self._worker = worker_id.encode("utf-8") if self._postgresql else worker_id
        self._sent_at = UTCDateTime().bind_processor(engine.dialect) or (lambda value: value)
        self._waiting = False
        self._result = False

    def _prepare_pg(self) -> None:
        # Named statements live as long as the server connection; a pooled connection
        # may have it already from an earlier batch (42P05 duplicate_prepared_statement).
        result = self._pg.prepare(self._PG_STATEMENT, _PG_MARK_SQL)
        if result.status != pq.ExecStatus.COMMAND_OK:
            sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
            if sqlstate != b"42P05":
                raise RuntimeError(
                    "cannot prepare the delivery mark: "
                    + (result.error_message or b"").decode("utf-8", "replace")
                )

    def start(
        self,
        delivery_id: int,
        edition_id: int,
        subscriber_id: int,
        newsletter_id: int,
        *,
        sent: int | None,
    ) -> None:
        if self._postgresql:
            sent_at = utcnow().isoformat().encode("ascii")
            self._pg.send_query_prepared(
                self._PG_STATEMENT,
                [
                    str(sent if sent is not None else 0).encode("ascii"),
                    sent_at,
                    str(delivery_id).encode("ascii"),
                    self._worker,
                    str(edition_id).encode("ascii"),
                    str(subscriber_id).encode("ascii"),
                    str(newsletter_id).encode("ascii"),
                ],
            )
            # psycopg keeps libpq non-blocking: the query may still sit in its buffer.
            self._pg.flush()
            self._waiting = True
            return
        cursor = self._cursor
        if sent is not None:
            cursor.execute(_SENT_SQL, {"sent": sent, "sent_at": self._sent_at(utcnow())})
        cursor.execute(
            _IN_FLIGHT_SQL,
            {
                "delivery": delivery_id,
                "worker": self._worker,
                "edition": edition_id,
                "subscriber": subscriber_id,
                "newsletter": newsletter_id,
            },
        )
        self._result = cursor.rowcount == 1
        self._driver.commit()

    def marked(self) -> bool:
        """Whether the delivery started last is now committed as in flight."""
        if not self._waiting:
            return self._result
        self._waiting = False
        pg = self._pg
        deadline = time.monotonic() + _MARK_TIMEOUT_SECONDS
        while pg.flush():
            _wait_for(pg.socket, write=True, deadline=deadline)
        pg.consume_input()
        while pg.is_busy():
            _wait_for(pg.socket, write=False, deadline=deadline)
            pg.consume_input()
        outcome = None
        while (result := pg.get_result()) is not None:
            outcome = outcome or result
        if outcome is None or outcome.status != pq.ExecStatus.COMMAND_OK:
            message = b"no result" if outcome is None else outcome.error_message
            raise RuntimeError(
                "delivery mark failed: " + (message or b"").decode("utf-8", "replace")
            )
        return outcome.command_tuples == 1

    def sent(self, delivery_id: int) -> None:
        """Mark the last message of a batch SENT (committed on return)."""
        self._connection.exec_driver_sql(
            _SENT_SQL if not self._postgresql else _SENT_SQL_PG,
            {"sent": delivery_id, "sent_at": self._sent_at(utcnow())},
        )
        if not self._postgresql:
            self._driver.commit()

    def close(self) -> None:
        try:
            if self._waiting:
                # Leave nothing half-read on a connection that goes back to the pool.
                while self._pg.get_result() is not None:
                    pass
            if not self._postgresql:
                self._cursor.close()
        finally:
            self._connection.close()


def send_due(worker_id: str, *, transport: Transport | None = None) -> SendStats:
    """Send every due delivery of every sending edition; the worker's sending job.

    With SEND_CONNECTIONS above 1 (and a mail server), that many sending lanes run at
    once, each a thread with its own SMTP connection, database connection and worker id
    (`<worker>/<n>`), claiming its own batches: each lane is a worker of its own in the
    sense of PRODUCT.md invariant 2, with at most one message in flight. They share the
    rate limit. Lanes hide the latencies of the mail server and of the database's
    commits behind each other, which one lane cannot (benchmarks/README.md).
    """
    if _first_sending_delivery_id() is None:
        # Nothing is sending: no lanes started, no connection opened, nothing to finish.
        return SendStats()
    lanes = int(current_app.config["SEND_CONNECTIONS"] or 1)
    if transport is not None or lanes <= 1 or not current_app.config.get("MAIL_SERVER"):
        stats = _send_lane(worker_id, transport)
    else:
        stats = _send_lanes(worker_id, lanes)
    lifecycle.finish_complete_editions()
    return stats


def _send_lane(worker_id: str, transport: Transport | None = None) -> SendStats:
    """One lane: claim batches and send them over one connection until nothing is due."""
    stats = SendStats()
    start = _first_sending_delivery_id()
    if start is None:
        return stats  # nothing is sending: no claim, no connection
    own_transport = transport is None
    transport = transport or open_transport()
    # The lane walks the deliveries upwards from the lowest of the sending editions;
    # at the end, one more pass from there picks up what came due behind it (retries,
    # deliveries taken over from a dead worker), until a pass finds nothing.
    cursor = start - 1
    found_since_start = False
    try:
        while not stats.connection_lost:
            ids, cursor = _claim_next(worker_id, cursor)
            if ids:
                found_since_start = True
                _send_batch(ids, worker_id, transport, stats)
                continue
            if not found_since_start:
                break
            cursor, found_since_start = start - 1, False
    finally:
        if own_transport:
            transport.close()
    return stats


def _first_sending_delivery_id() -> int | None:
    firsts = db.session.scalars(
        select(Edition.first_delivery_id).where(Edition.status == EditionStatus.SENDING)
    ).all()
    db.session.commit()
    if not firsts:
        return None
    return 0 if None in firsts else min(firsts)


def _claim_next(worker_id: str, cursor: int) -> tuple[list[int], int]:
    """Lease the next due deliveries above `cursor`; them, and the new cursor.

    Walks the primary key in windows of at most 10 batches, so a claim reads a bounded
    number of rows whatever plan the database picks (there is no index on status, see
    Delivery, and planners misjudge how many of an edition's rows are still due).
    """
    size = _batch_size()
    while True:
        window = select(Delivery.id).where(Delivery.id > cursor).order_by(Delivery.id)
        window_end = db.session.scalar(select(func.max(window.limit(size * 10).subquery().c.id)))
        if window_end is None:
            db.session.commit()
            return [], cursor
        ids = jobs.claim(
            Delivery,
            worker_id,
            size,
            Delivery.id > cursor,
            Delivery.id <= window_end,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
            _edition_sending,
        )
        if ids:
            return ids, ids[-1]
        cursor = window_end


def _send_lanes(worker_id: str, lanes: int) -> SendStats:
    app = current_app._get_current_object()
    rate = float(app.config["SEND_RATE_PER_SECOND"] or 0)
    bucket = TokenBucket(rate) if rate > 0 else None
    results: list[SendStats | BaseException | None] = [None] * lanes

    def lane(number: int) -> None:
        with app.app_context():
            try:
                transport = SmtpTransport(bucket=bucket)
                try:
                    results[number] = _send_lane(f"{worker_id}/{number + 1}", transport)
                finally:
                    transport.close()
            except BaseException as exc:  # re-raised in the worker's own thread
                results[number] = exc
            finally:
                db.session.remove()

    threads = [
        threading.Thread(target=lane, args=(n,), name=f"newsletters-send-{n + 1}")
        for n in range(lanes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = SendStats()
    for result in results:
        if isinstance(result, BaseException):
            raise result
        stats.merge(result)
    return stats


def _batch_size() -> int:
    cfg = current_app.config
    size = int(cfg["SEND_BATCH_SIZE"])
    rate = float(cfg["SEND_RATE_PER_SECOND"] or 0)
    if rate > 0:
        # A rate-limited batch must finish well inside its lease.
        size = max(1, min(size, int(rate * float(cfg["WORKER_LEASE_SECONDS"]) / 2)))
    return size


@dataclass
class _BatchSender:
    """Sends one claimed batch, one message in flight at a time, with the waits overlapped.

    For each message, in this order: the answer to the previous message's end is read
    (accepted: it becomes SENT in the next mark); the in-flight mark of this one is
    started (the previous SENT with it, one transaction); the envelope's answers are read
    and the body written without its end; the next message is assembled while the mark
    commits; then, only once the mark is committed, the end of this message goes out,
    with the next envelope in the same packet. So a message is delivered only after its
    mark is durable, at most one message is ever unsettled, and the server, the database
    and this loop all work at once. A refused mark (paused, cancelled, unsubscribed)
    drops the connection before the end, so the server discards the message.
    """

    def __init__(self, worker_id: str, transport: Transport, stats: SendStats) -> None:
        self.worker_id = worker_id
        self.transport = transport
        self.stats = stats
        self.assembler = messages.Assembler()
        self.stopped_editions: set[int] = set()
        self.failures_in_a_row = 0
        self.pause_after = int(current_app.config["SEND_PAUSE_AFTER_FAILURES"] or 0)
        self.pending_sent: int | None = None  # accepted; its SENT goes into the next mark
        self.awaiting: Recipient | None = None  # ended; the server's answer not yet read

    def run(self, ids: list[int]) -> None:
        rows = db.session.execute(
            select(
                Delivery.id,
                Delivery.edition_id,
                Delivery.subscriber_id,
                Subscriber.email,
                Subscriber.locale,
                Subscriber.token_version,
                # The links name the person by this key; fetched here, not per message.
                Subscriber.link_key,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        if len(rows) < len(ids):
            # Deliveries whose subscriber was deleted while the send started (a delete
            # that raced start_send's INSERT ... SELECT): nobody left to send them to.
            gone = set(ids) - {row[0] for row in rows}
            result = db.session.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(gone), deliveries.c.leased_by == self.worker_id)
                .values(
                    status=DeliveryStatus.SKIPPED.value,
                    leased_until=None,
                    last_error="the subscriber no longer exists",
                )
            )
            self.stats.skipped += result.rowcount
        db.session.commit()
        self.rows = rows
        self.marks = _Marks(self.worker_id)
        try:
            recipient = self._recipient(0)
            for index in range(len(rows)):
                following = self._recipient(index + 1)
                self._send(recipient, following)
                recipient = following
            self._settle()
            if self.pending_sent is not None:
                self.marks.sent(self.pending_sent)
                self.pending_sent = None
        except BaseException:
            self.transport.abandon()
            raise
        finally:
            self.marks.close()

    def _recipient(self, index: int) -> Recipient | None:
        if index >= len(self.rows):
            return None
        return self.assembler.recipient(self.rows[index])

    def _send(self, recipient: Recipient, following: Recipient | None) -> None:
        transport, stats = self.transport, self.stats
        self._settle()
        if recipient.edition_id in self.stopped_editions or stats.connection_lost:
            if transport.envelope_open:
                transport.abandon()
            _release(recipient.delivery_id, self.worker_id)
            return
        template = self.assembler.template(recipient.edition_id, recipient.locale)
        self.marks.start(
            recipient.delivery_id,
            recipient.edition_id,
            recipient.subscriber_id,
            template.newsletter_id,
            sent=self.pending_sent,
        )
        self.pending_sent = None
        message = self.assembler.assemble(recipient)
        failure: DeliveryFailure | None = None
        bounce = True
        try:
            messages.hand_over(transport, template.envelope_from, recipient.to, message)
        except DeliveryFailure as refused:
            failure = refused
        except Exception as exc:  # a message we cannot even hand over must not stop the rest
            log.exception("delivery %s could not be sent", recipient.delivery_id)
            transport.abandon()
            failure = DeliveryFailure(f"unexpected error: {exc!r}", permanent=True)
            bounce = False
        if failure is None and following is not None and self.assembler.has_template(following):
            self.assembler.assemble(following)  # while the mark commits
        if not self.marks.marked():
            if transport.envelope_open:
                transport.abandon()  # without its end, the server discards the message
            if _why_not_sendable(
                recipient.delivery_id, recipient.edition_id, self.worker_id, stats
            ):
                self.stopped_editions.add(recipient.edition_id)
            return
        if failure is None:
            try:
                messages.end(transport, template.envelope_from, following)
            except DeliveryFailure as lost:
                failure = lost
        if failure is not None:
            self._failed(recipient, failure, bounce=bounce)
            return
        self.awaiting = recipient

    def _settle(self) -> None:
        """Read the answer to the message last ended, and record it."""
        recipient, self.awaiting = self.awaiting, None
        if recipient is None:
            return
        try:
            self.transport.accepted()
        except DeliveryFailure as failure:
            self._failed(recipient, failure)
            return
        self.failures_in_a_row = 0
        self.pending_sent = recipient.delivery_id
        self.stats.sent += 1

    def _failed(
        self, recipient: Recipient, failure: DeliveryFailure, *, bounce: bool = True
    ) -> None:
        if self.pending_sent is not None:
            # The SENT mark first: a failure's own transaction must not leave it unwritten.
            self.marks.sent(self.pending_sent)
            self.pending_sent = None
        self.failures_in_a_row += 1
        _record_failure(
            recipient.delivery_id, recipient.subscriber_id, failure, self.stats, bounce=bounce
        )
        if self.pause_after and self.failures_in_a_row >= self.pause_after:
            lifecycle.pause_for_failures(recipient.edition_id, self.failures_in_a_row, str(failure))
            self.stopped_editions.add(recipient.edition_id)


def _send_batch(ids: list[int], worker_id: str, transport: Transport, stats: SendStats) -> None:
    _BatchSender(worker_id, transport, stats).run(ids)


def _why_not_sendable(delivery_id: int, edition_id: int, worker_id: str, stats: SendStats) -> bool:
    """After a refused in-flight mark: skip the delivery, or stop the edition (True)."""
    edition_status = db.session.scalar(select(Edition.status).where(Edition.id == edition_id))
    if edition_status != EditionStatus.SENDING:
        _release(delivery_id, worker_id)
        return True
    # Unsubscribed (or unconfirmed) since the send started: never sent, recorded why.
    result = db.session.execute(
        update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.leased_by == worker_id,
            deliveries.c.status == DeliveryStatus.QUEUED.value,
        )
        .values(status=DeliveryStatus.SKIPPED.value, leased_until=None)
    )
    db.session.commit()
    stats.skipped += result.rowcount
    return False


def _release(delivery_id: int, worker_id: str) -> None:
    db.session.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.leased_by == worker_id)
        .values(leased_until=None, leased_by=None)
    )
    db.session.commit()


def _record_failure(
    delivery_id: int,
    subscriber_id: int,
    failure: DeliveryFailure,
    stats: SendStats,
    *,
    bounce: bool = True,
) -> None:
    delivery = db.session.get(Delivery, delivery_id)
    delivery.last_error = str(failure)[:2000]
    delivery.leased_until = None
    stats.errors.append(str(failure))
    if failure.permanent:
        delivery.status = DeliveryStatus.FAILED
        stats.failed += 1
        if bounce:
            # A 5xx for an address is a hard bounce: announced in this transaction, for
            # bounces to record like those from the bounce mailbox (and to stop mail to
            # the address: hard_bounced_at, suppression).
            message = str(failure)
            events.announce(
                "delivery.refused",
                f"delivery:{delivery_id}",
                actor=events.WORKER,
                audited=False,
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                status=_status_of(message),
                diagnostic=message,
                permanent=True,
            )
    else:
        # Never accepted: back in the queue after a backoff (a dropped connection may
        # have delivered it, which the receiving side sees as the same Message-ID).
        delivery.status = DeliveryStatus.QUEUED
        delivery.leased_by = None
        delivery.next_attempt_at = utcnow() + jobs.backoff(delivery.attempts)
        stats.retried += 1
        stats.connection_lost = failure.connection_lost
    db.session.commit()


def _status_of(message: str) -> str:
    """The enhanced status code (5.1.1) or else the SMTP reply code in an error text."""
    match = re.search(r"\b[245]\.\d{1,3}\.\d{1,3}\b", message) or re.search(
        r"\b[45]\d\d\b", message
    )
    return match.group(0) if match else ""
