"""Webhook endpoints and the deliveries queued for them (owned by newsletters.webhooks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow

MAX_URL_LENGTH = 2000


class WebhookEndpoint(db.Model):
    """A URL that gets a signed POST for each event it subscribed to."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    # Event types, comma-separated (no spaces): "subscription.confirmed,bounce.recorded".
    events: Mapped[str] = mapped_column(String(500))
    # The Standard Webhooks secret, "whsec_" + base64 of 32 random bytes. Shown once when
    # the endpoint is added; kept because every delivery is signed with it.
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the worker (or nobody) disabled it, shown on the staff page and by `list`.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    # Health: the last attempt of any delivery, and the last success.
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The first failure since the last success: an endpoint failing for
    # WEBHOOKS_DISABLE_AFTER_HOURS is disabled.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def event_list(self) -> list[str]:
        return [name for name in self.events.split(",") if name]


class WebhookDelivery(db.Model):
    """One event for one endpoint, until a 2xx answer (or a day of failures).

    `next_attempt_at`, `leased_until` and `leased_by` are the lease of `jobs.claim`: a
    worker that dies mid-call leaves the row to another after WORKER_LEASE_SECONDS, and
    the event keeps its `event_id` (the webhook-id header), so a receiver that got it
    twice can tell.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The worker's query: undelivered rows that are due.
        Index("ix_webhook_deliveries_due", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    # "msg_" + 32 hex digits: the same for every endpoint the event goes to.
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    event_type: Mapped[str] = mapped_column(String(60))
    # The exact JSON body that is signed and sent.
    payload: Mapped[str] = mapped_column(Text)
    # Whom the event is about, so that an erasure can scrub the address from it.
    subscriber_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when retries ran out (a day): no further attempt.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship()
