"""Delivering queued webhook events: the worker's `webhooks` lane.

Due deliveries are claimed under a lease (`jobs.claim`), then POSTed, each endpoint's in
order in a thread of its own and WEBHOOKS_CONCURRENCY endpoints at a time, while this
thread records each outcome as it comes (one short transaction each). A worker killed
mid-call leaves its lease to run out: another worker sends the event again with the same
webhook-id, so no event is lost and the receiver can tell a repeat.

A 2xx answer ends a delivery. Anything else (another status, a refused or dropped
connection, no answer within WEBHOOKS_TIMEOUT) is retried after
WEBHOOKS_RETRY_BACKOFF_SECONDS, doubling each time up to WEBHOOKS_RETRY_MAX_BACKOFF_SECONDS,
until WEBHOOKS_RETRY_HOURS after the event; the endpoint's other waiting events wait as
long (no hammering a server that is down). An endpoint whose every delivery has failed
for WEBHOOKS_DISABLE_AFTER_HOURS is disabled, with the reason shown.

Every connection goes through `outbound.GuardedTransport`: the address is checked when
the connection is opened, not only when the endpoint was added (DNS rebinding).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from flask import Flask, current_app
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from newsletters import jobs, outbound
from newsletters.extensions import db
from newsletters.timeutil import utcnow
from newsletters.webhooks import services
from newsletters.webhooks.models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

# Bytes of an answer read (and then dropped): enough to keep the connection for reuse.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Call:
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    event_id: str
    payload: str


@dataclass
class Outcome:
    call: Call
    status: int | None = None
    error: str | None = None
    attempted_at: datetime = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Settings:
    timeout: float
    allow_private: bool
    concurrency: int
    user_agent: str


def settings() -> Settings:
    cfg = current_app.config
    return Settings(
        timeout=float(cfg["WEBHOOKS_TIMEOUT"]),
        allow_private=bool(cfg["WEBHOOKS_ALLOW_PRIVATE"]),
        concurrency=max(1, int(cfg["WEBHOOKS_CONCURRENCY"])),
        user_agent=f"KL-Nyhedsbreve-Webhooks/1.0 (+{cfg['PUBLIC_BASE_URL']})",
    )


def signed_headers(call: Call, user_agent: str) -> dict[str, str]:
    """The Standard Webhooks headers. The timestamp is the real time of this attempt
    (receivers compare it with their own clock to refuse replays), not the app's clock."""
    now = datetime.fromtimestamp(int(time.time()), UTC)
    signature = Webhook(call.secret).sign(call.event_id, now, call.payload)
    return {
        "webhook-id": call.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": user_agent,
    }


def post(client: httpx.Client, call: Call, cfg: Settings) -> Outcome:
    """One signed POST within one deadline. Never raises."""
    outcome = Outcome(call=call)
    try:
        with (
            outbound.deadline(cfg.timeout),
            client.stream(
                "POST",
                call.url,
                content=call.payload.encode("utf-8"),
                headers=signed_headers(call, cfg.user_agent),
            ) as response,
        ):
            outcome.status = response.status_code
            read = 0
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    break
            if not outcome.ok:
                outcome.error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    except outbound.RefusedAddress as refused:
        outcome.error = f"refused: {refused.reason}"
    except httpx.TimeoutException:
        outcome.error = f"no answer within {cfg.timeout:g} seconds"
    except (httpx.TransportError, httpx.StreamError) as error:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, outbound.RefusedAddress):
            outcome.error = f"refused: {cause.reason}"
        else:
            outcome.error = f"the connection failed: {type(error).__name__}: {error}"[:500]
    except Exception as error:  # one endpoint's failure must not stop the others
        outcome.error = f"{type(error).__name__}: {error}"[:500]
    outcome.attempted_at = utcnow()
    return outcome


def client_for(app: Flask, cfg: Settings) -> httpx.Client:
    """One client per app and settings (its pool reused across ticks and threads)."""
    key = ("webhooks.client", cfg.allow_private, cfg.concurrency, cfg.timeout)
    client = app.extensions.get(key)
    if client is None:
        limits = httpx.Limits(
            max_connections=cfg.concurrency * 2, max_keepalive_connections=cfg.concurrency * 2
        )
        client = httpx.Client(
            timeout=httpx.Timeout(cfg.timeout),
            transport=outbound.GuardedTransport(allow_private=cfg.allow_private, limits=limits),
            trust_env=False,
            # A redirect is not a 2xx: the endpoint's owner must give the final URL.
            follow_redirects=False,
        )
        app.extensions[key] = client
    return client


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: doubling from the first."""
    cfg = current_app.config
    first = float(cfg["WEBHOOKS_RETRY_BACKOFF_SECONDS"])
    cap = float(cfg["WEBHOOKS_RETRY_MAX_BACKOFF_SECONDS"])
    return timedelta(seconds=min(first * (2 ** max(attempts - 1, 0)), cap))


def deliver_due(worker_id: str, *, stop: threading.Event | None = None) -> int:
    """The worker's job: deliver the due events; how many were attempted."""
    cfg = settings()
    limit = int(current_app.config["WEBHOOKS_BATCH_SIZE"])
    enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
    ids = jobs.claim(
        WebhookDelivery,
        worker_id,
        limit,
        WebhookDelivery.delivered_at.is_(None),
        WebhookDelivery.failed_at.is_(None),
        WebhookDelivery.endpoint_id.in_(enabled),
    )
    if not ids:
        return 0
    rows = db.session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.endpoint_id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookDelivery.event_id,
            WebhookDelivery.payload,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    ).all()
    db.session.commit()
    groups: dict[int, list[Call]] = {}
    for row in rows:
        groups.setdefault(row.endpoint_id, []).append(Call(*row))
    lease = float(current_app.config["WORKER_LEASE_SECONDS"])
    # Start no call that could outlast the lease: another worker would send it too.
    until = time.monotonic() + max(lease - cfg.timeout - 1.0, lease / 2)
    client = client_for(current_app._get_current_object(), cfg)
    attempted = 0
    for batch in _run(groups, client, cfg, until, stop):
        # Whatever has come in by now is written in one transaction: a worker killed
        # before it commits sends those again (with the same webhook-id), never fewer.
        outcomes = [item for item in batch if isinstance(item, Outcome)]
        attempted += len(outcomes)
        _record(outcomes)
        for item in batch:
            if not isinstance(item, Outcome):
                ids, after_failure_of = item
                # Queued after the failure's outcome, so that is recorded already.
                not_before = _next_attempt_of(after_failure_of) if after_failure_of else None
                _put_back(ids, not_before)
    return attempted


def _run(
    groups: dict[int, list[Call]],
    client: httpx.Client,
    cfg: Settings,
    until: float,
    stop: threading.Event | None,
) -> Iterator[list[Outcome | tuple[list[int], int | None]]]:
    """Each endpoint's calls in order, in threads; yields what has come in each time
    (outcomes, and (ids, id of the failed delivery they wait behind, if any) for calls
    not made), in the order it came."""
    results: queue.Queue = queue.Queue()
    done = object()

    def run_group(calls: list[Call]) -> None:
        try:
            for index, call in enumerate(calls):
                if (stop is not None and stop.is_set()) or time.monotonic() > until:
                    results.put(([c.delivery_id for c in calls[index:]], None))
                    return
                outcome = post(client, call, cfg)
                results.put(outcome)
                if not outcome.ok:
                    # The endpoint is failing: its other events wait as long as this one.
                    rest = [c.delivery_id for c in calls[index + 1 :]]
                    if rest:
                        results.put((rest, call.delivery_id))
                    return
        finally:
            results.put(done)

    with ThreadPoolExecutor(
        max_workers=min(cfg.concurrency, len(groups)), thread_name_prefix="webhooks"
    ) as pool:
        for calls in groups.values():
            pool.submit(run_group, calls)
        remaining = len(groups)
        while remaining:
            batch = [results.get()]
            while True:
                try:
                    batch.append(results.get_nowait())
                except queue.Empty:
                    break
            remaining -= sum(1 for item in batch if item is done)
            batch = [item for item in batch if item is not done]
            if batch:
                yield batch


def _next_attempt_of(delivery_id: int) -> datetime | None:
    return db.session.scalar(
        select(WebhookDelivery.next_attempt_at).where(WebhookDelivery.id == delivery_id)
    )


def _put_back(ids: list[int], not_before: datetime | None) -> None:
    """Release calls not made (stopping, lease running short, or their endpoint failing)."""
    values: dict = {"leased_until": None, "leased_by": None}
    if not_before is not None:
        values["next_attempt_at"] = not_before
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.delivered_at.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _record(outcomes: list[Outcome]) -> None:
    """Write outcomes: delivered, or failed with the next attempt; one transaction."""
    if not outcomes:
        return
    delivered = [o for o in outcomes if o.ok]
    if delivered:
        _record_delivered(delivered)
    for outcome in outcomes:
        if not outcome.ok:
            _record_failure(outcome)
    db.session.commit()


def _record_delivered(outcomes: list[Outcome]) -> None:
    """Set-based: one UPDATE per answer status, one for the endpoints."""
    now = max(o.attempted_at for o in outcomes)
    by_status: dict[int | None, list[int]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(outcome.call.delivery_id)
    for status, ids in by_status.items():
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(
                attempts=WebhookDelivery.attempts + 1,
                last_attempt_at=now,
                last_status=status,
                last_error=None,
                delivered_at=now,
                leased_until=None,
                leased_by=None,
            )
            .execution_options(synchronize_session=False)
        )
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_({o.call.endpoint_id for o in outcomes}))
        .values(last_attempt_at=now, last_success_at=now, failing_since=None, last_error=None)
        .execution_options(synchronize_session=False)
    )


def _record_failure(outcome: Outcome) -> None:
    call = outcome.call
    now = outcome.attempted_at
    delivery = db.session.get(WebhookDelivery, call.delivery_id)
    endpoint = db.session.get(WebhookEndpoint, call.endpoint_id)
    if delivery is None or endpoint is None:  # removed meanwhile
        return
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status = outcome.status
    delivery.leased_until = None
    delivery.leased_by = None
    endpoint.last_attempt_at = now
    error = (outcome.error or "failed")[:1000]
    delivery.last_error = error
    endpoint.last_error = error
    cfg = current_app.config
    if now - delivery.created_at >= timedelta(hours=float(cfg["WEBHOOKS_RETRY_HOURS"])):
        delivery.failed_at = now
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif endpoint.enabled and now - endpoint.failing_since >= timedelta(
        hours=float(cfg["WEBHOOKS_DISABLE_AFTER_HOURS"])
    ):
        hours = float(cfg["WEBHOOKS_DISABLE_AFTER_HOURS"])
        services.disable_endpoint(
            endpoint.id,
            f"Every delivery failed for {hours:g} hours; the last: {error}",
        )
    db.session.flush()
