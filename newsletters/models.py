"""Every model, imported in one place so that metadata and Alembic see all tables."""

from newsletters.admin.models import WelcomeLetter
from newsletters.api.models import ApiToken
from newsletters.audit.models import AuditEntry
from newsletters.bounces.models import Bounce, BounceKind
from newsletters.catalog.models import Newsletter
from newsletters.editions.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionItem,
    EditionStatus,
)
from newsletters.feeds.models import DigestRun, Feed, FeedItem
from newsletters.mailing.models import CapturedMail, OutboxMessage, OutboxStatus
from newsletters.reports.models import ErasureCount
from newsletters.staff.models import Staff, StaffRole
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscribeRequest,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from newsletters.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Bounce",
    "BounceKind",
    "CapturedMail",
    "ErasureCount",
    "Suppression",
    "SuppressionReason",
    "WelcomeLetter",
    "Delivery",
    "DeliveryStatus",
    "Edition",
    "EditionItem",
    "EditionStatus",
    "ConsentAction",
    "DigestRun",
    "Feed",
    "FeedItem",
    "ConsentEvent",
    "Newsletter",
    "OutboxMessage",
    "OutboxStatus",
    "Staff",
    "StaffRole",
    "SubscribeRequest",
    "Subscriber",
    "Subscription",
    "SubscriptionStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
]
