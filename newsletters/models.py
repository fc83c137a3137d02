"""Every model, imported in one place so that metadata and Alembic see all tables."""

from newsletters.catalog.models import Newsletter
from newsletters.mailing.models import OutboxMessage, OutboxStatus
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscribeRequest,
    Subscription,
    SubscriptionStatus,
)

__all__ = [
    "ConsentAction",
    "ConsentEvent",
    "Newsletter",
    "OutboxMessage",
    "OutboxStatus",
    "SubscribeRequest",
    "Subscriber",
    "Subscription",
    "SubscriptionStatus",
]
