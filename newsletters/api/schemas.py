"""The bodies the API takes and gives, as pydantic models: validation and the OpenAPI 3.1
document (JSON Schema 2020-12) come from the same definitions."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# One line of text: no control characters (CR, LF, NUL, ...).
LINE = r"^[^\x00-\x1f\x7f]*$"
# Several lines (Markdown): anything but NUL.
LINES = r"^[^\x00]*$"


def _line(max_length: int, min_length: int = 0):
    return Annotated[
        str, StringConstraints(max_length=max_length, min_length=min_length, pattern=LINE)
    ]


def _lines(max_length: int, min_length: int = 0):
    return Annotated[
        str, StringConstraints(max_length=max_length, min_length=min_length, pattern=LINES)
    ]


Slug = _line(64, 1)
Email = _line(320, 1)
Name = _line(200)
Short = _line(100)
Cursor = _line(600)
Subject = _line(300, 1)
Preheader = _line(300)
Heading = _line(300, 1)
Link = _line(1000)
Basis = _lines(2000, 1)
ItemText = _lines(20000)
Markdown = _lines(200_000)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- problems


class FieldError(BaseModel):
    field: str = Field(description="Where: the field's name, dotted for nested ones.")
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="The fields at fault (422 only)."
    )


# --------------------------------------------------------------------------- newsletters


class NewsletterOut(BaseModel):
    slug: str
    name: str
    description: str
    public: bool = Field(description="Whether anyone may subscribe (the public form offers it).")


class NewsletterList(BaseModel):
    items: list[NewsletterOut]


# --------------------------------------------------------------------------- subscriptions


class SubscriptionRequest(Strict):
    email: Email
    name: Name = ""
    municipality: Short = Field(
        default="", description="One of Denmark's 98 municipalities, or empty."
    )
    newsletters: list[Slug] = Field(min_length=1, max_length=20)
    locale: Literal["da", "en"] | None = Field(
        default=None, description="The language of the confirmation mail (Danish by default)."
    )


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


# --------------------------------------------------------------------------- subscribers

SubscriptionStatusCode = Literal["pending", "confirmed", "unsubscribed"]


class SubscribersQuery(Strict):
    newsletter: Slug | None = None
    status: Literal["pending", "confirmed", "unsubscribed", "stopped"] | None = None
    municipality: Short | None = None
    role: Short | None = None
    cursor: Cursor | None = Field(
        default=None, description="`next_cursor` of the previous page (opaque)."
    )
    limit: int = Field(default=50, ge=1, le=200)


class SubscriptionSummary(BaseModel):
    newsletter: str
    status: SubscriptionStatusCode


class SubscriberSummary(BaseModel):
    id: int
    email: str
    name: str
    municipality: str
    role: str
    mail_stopped: bool = Field(description="Mail bounced for good: no more editions go there.")
    subscriptions: list[SubscriptionSummary]


class SubscriberPage(BaseModel):
    items: list[SubscriberSummary]
    total: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class ConsentEventOut(BaseModel):
    action: Literal["requested", "confirmed", "enrolled", "withdrawn"]
    method: str
    at: datetime
    ip: str | None
    user_agent: str | None
    consent_text_version: str | None
    locale: str | None
    basis: str | None


class SubscriptionDetail(BaseModel):
    newsletter: str
    status: SubscriptionStatusCode
    requested_at: datetime | None
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    consent_history: list[ConsentEventOut]


class SubscriberDetail(BaseModel):
    id: int
    email: str
    name: str
    municipality: str
    role: str
    locale: str
    created_at: datetime
    mail_stopped: bool
    suppressed: bool
    subscriptions: list[SubscriptionDetail]


class Enrolment(Strict):
    email: Email
    name: Name = ""
    municipality: Short = ""
    role: Short = ""
    newsletters: list[Slug] = Field(min_length=1, max_length=20)
    basis: Basis = Field(
        description="The recorded basis of the enrolment, as `subscribers import --basis` takes it."
    )
    welcome: bool = Field(default=False, description="Send each enrolment the welcome mail.")


class EnrolmentOutcome(BaseModel):
    id: int = Field(description="The subscriber's id.")
    enrolled: list[str] = Field(description="Newsletters subscribed now.")
    unchanged: list[str] = Field(description="Newsletters they already had.")
    withdrawn: list[str] = Field(
        description="Newsletters they left earlier: a withdrawal is never overridden."
    )
    suppressed: bool = Field(description="The address is on the suppression list: nothing done.")


class ErasureQuery(Strict):
    never_again: bool = Field(
        default=False,
        description="Keep a one-way code of the address on the suppression list, so the "
        "person is never mailed again.",
    )


# --------------------------------------------------------------------------- editions


class ItemIn(Strict):
    heading: Heading
    text: ItemText = ""
    link: Link = ""


class EditionIn(Strict):
    newsletter: Slug
    subject: Subject
    body: Markdown = Field(description="Markdown.")
    preheader: Preheader = ""
    items: list[ItemIn] = Field(default_factory=list, max_length=100)


class EditionOut(BaseModel):
    id: int
    newsletter: str
    subject: str
    status: Literal["draft", "scheduled", "sending", "paused", "sent", "cancelled"]
    recipients: int
    sent: int
    failed: int
    skipped: int
    remaining: int
    possible_duplicates: int
    rate_per_second: float
    paused_reason: str | None


# --------------------------------------------------------------------------- webhooks

WebhookEventType = Literal[
    "subscription.requested",
    "subscription.confirmed",
    "subscription.unsubscribed",
    "subscriber.erased",
    "bounce.recorded",
    "edition.started",
    "edition.finished",
    "edition.paused",
]


class WebhookIn(Strict):
    url: Annotated[str, StringConstraints(max_length=2000, min_length=1, pattern=LINE)]
    events: list[WebhookEventType] = Field(min_length=1, max_length=8)


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    last_success_at: datetime | None
    last_error: str | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...): shown this once only.")


class WebhookList(BaseModel):
    items: list[WebhookOut]
