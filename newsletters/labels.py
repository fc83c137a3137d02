"""What staff and readers read for a stored code: one mapping per enum or code set.

Every status, method, kind and action the database keeps as a code (`web_form`,
`confirmed`, `edition.send`...) is shown through these, in the reader's language: the
`label` template filter (`{{ e.method | label("consent_method") }}`) and `label()` in
code. The maps are keyed by the stored value (a string), so this module imports no
feature and any layer may use it; the feature modules' own label dicts are built from
these. tests/test_labels.py checks that every value of every enum, and every audit
action in the code, has a label here.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_babel import lazy_gettext as _l

SUBSCRIPTION_STATUS = {
    "pending": _l("Waiting for confirmation"),
    "confirmed": _l("Subscribed"),
    "unsubscribed": _l("Unsubscribed"),
    # Not a stored status: a confirmed subscriber whose mail bounced for good.
    "stopped": _l("Mail stopped (bounces)"),
}

CONSENT_ACTION = {
    "requested": _l("Asked to subscribe"),
    "confirmed": _l("Confirmed"),
    "enrolled": _l("Enrolled on a basis"),
    "withdrawn": _l("Withdrew (unsubscribed)"),
}

# ConsentEvent.method: how a request, confirmation or withdrawal came about.
CONSENT_METHOD = {
    "web_form": _l("Subscribe form on the website"),
    "confirm_link": _l("Confirmation link in the mail"),
    "preference_centre": _l("Preference centre"),
    "one_click": _l("One-click unsubscribe in the mail program"),
    "unsubscribe_page": _l("Unsubscribe link in a newsletter"),
    "import_invite": _l("Import with an invitation"),
    "import_basis": _l("Import on a recorded basis"),
    "welcome-link": _l("Link in the welcome letter"),
    # "api:<token name>": through the REST API (see `label`).
    "api": _l("Through the API"),
}

EDITION_STATUS = {
    "draft": _l("Draft"),
    "scheduled": _l("Scheduled"),
    "sending": _l("Sending"),
    "paused": _l("Paused"),
    "sent": _l("Sent"),
    "cancelled": _l("Cancelled"),
}

DELIVERY_STATUS = {
    "queued": _l("Waiting"),
    "sending": _l("Being sent"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
    "skipped": _l("Skipped"),
    "cancelled": _l("Cancelled"),
}

OUTBOX_STATUS = {
    "queued": _l("Waiting"),
    "sent": _l("Sent"),
    "captured": _l("Kept locally"),
    "failed": _l("Failed"),
}

# OutboxMessage.kind: the mails other than editions.
MAIL_KIND = {
    "confirm": _l("Confirmation of a subscription"),
    "already_subscribed": _l("Already subscribed"),
    "manage_link": _l("Link to the preference centre"),
    "welcome": _l("Welcome"),
    "welcome_letter": _l("Welcome letter"),
}

BOUNCE_KIND = {
    "hard": _l("Hard"),
    "soft": _l("Soft"),
}

SUPPRESSION_REASON = {
    "hard_bounce": _l("Hard bounce"),
    "soft_bounces": _l("Repeated soft bounces"),
    "erasure": _l("Erased; asked never to be mailed again"),
    "manual": _l("Added by staff"),
}

STAFF_ROLE = {
    "editor": _l("Editor"),
    "admin": _l("Administrator"),
}

# StaffSession.login_method and the method of a sign-in in the audit log.
LOGIN_METHOD = {
    "password": _l("Password"),
    "oidc": _l("Single sign-on (SSO)"),
}

DIGEST_MODE = {
    "auto": _l("Send automatically at the hour"),
    "review": _l("Wait as a draft for an editor"),
    "off": _l("Off: not made from feeds"),
}

DIGEST_CADENCE = {
    "daily": _l("Every day"),
    "weekdays": _l("Weekdays (Monday to Friday)"),
    "weekly": _l("When there is news, at most once a week"),
}

AUDIT_ACTION = {
    "api_token.create": _l("API token created"),
    "api_token.first_use": _l("API token used for the first time"),
    "api_token.revoke": _l("API token revoked"),
    "edition.create": _l("Edition created"),
    "edition.save": _l("Edition saved"),
    "edition.test_send": _l("Test sent"),
    "edition.send": _l("Edition sent"),
    "edition.report_export": _l("Recipients' outcomes downloaded"),
    "edition.schedule": _l("Sending scheduled"),
    "edition.unschedule": _l("Scheduled sending withdrawn"),
    "edition.pause": _l("Sending paused"),
    "edition.resume": _l("Sending resumed"),
    "edition.cancel": _l("Sending cancelled"),
    "edition.paused": _l("Sending paused itself after failures"),
    "edition.finished": _l("Edition sent to everyone"),
    "edition.started": _l("Sending started"),
    "delivery.refused": _l("Message refused by the mail server"),
    "bounce.recorded": _l("Bounce recorded"),
    "edition.pick_feed_items": _l("Feed items added to an edition"),
    "digest.make": _l("Digest made"),
    "feed.add": _l("Feed added"),
    "feed.fetch": _l("Feed fetched"),
    "feed.enable": _l("Feed enabled"),
    "feed.disable": _l("Feed disabled"),
    "feed.remove": _l("Feed removed"),
    "feed.filter": _l("Feed filter changed"),
    "feed.position": _l("Feed moved in the digest"),
    "feed.digest_settings": _l("Digest settings changed"),
    "newsletter.settings": _l("Newsletter settings changed"),
    "staff.create": _l("Staff account created"),
    "staff.activate": _l("Staff account reactivated"),
    "staff.deactivate": _l("Staff account deactivated"),
    "staff.login": _l("Logged in"),
    "staff.login_failed": _l("Failed login"),
    "staff.login_throttled": _l("Login held back after failed attempts"),
    "staff.logout": _l("Logged out"),
    "staff.session_end": _l("Session ended"),
    "staff.sessions_end": _l("Sessions ended"),
    "staff.session_expired": _l("Session expired"),
    "staff.invite": _l("Invited to single sign-on"),
    "staff.invite_withdraw": _l("Invitation withdrawn"),
    "staff.sso_link": _l("Account linked to single sign-on"),
    "staff.role_change": _l("Role changed"),
    "staff.email_change": _l("Email address changed"),
    "staff.second_factor_failed": _l("Wrong two-factor code"),
    "staff.second_factor_throttled": _l("Two-factor code held back after wrong codes"),
    "staff.second_factor_unreadable": _l("Two-factor set-up could not be read (key changed?)"),
    "staff.totp_enrolled": _l("Two-factor login set up"),
    "staff.totp_removed": _l("Two-factor login turned off"),
    "staff.recovery_codes_renewed": _l("New recovery codes made"),
    "staff.second_factor_reset": _l("Two-factor login reset"),
    "staff.second_factor_resealed": _l("Two-factor secrets encrypted with a new key"),
    "staff.newsletters": _l("Newsletters of a staff account changed"),
    "newsletter.access_refused": _l("Access to a newsletter refused"),
    "subscribers.import": _l("Subscribers imported"),
    "subscribers.export": _l("Subscribers exported"),
    "subscriber.export": _l("A subscriber's data downloaded"),
    "subscriber.erase": _l("Subscriber erased"),
    "suppression.add": _l("Address added to the suppression list"),
    "suppression.lift": _l("Suppression lifted"),
    "welcome_letter.save": _l("Welcome letter saved"),
    "welcome_letter.send": _l("Welcome letter sent"),
    "webhook.add": _l("Webhook added"),
    "webhook.remove": _l("Webhook removed"),
    "webhook.enable": _l("Webhook enabled again"),
    "webhook.disable": _l("Webhook disabled (kept failing)"),
}

# The event types of outgoing webhooks (newsletters/webhooks).
WEBHOOK_EVENT = {
    "subscription.requested": _l("Someone asked to subscribe"),
    "subscription.confirmed": _l("A subscription was confirmed"),
    "subscription.unsubscribed": _l("Someone unsubscribed"),
    "subscriber.erased": _l("A subscriber was erased"),
    "bounce.recorded": _l("A bounce was recorded"),
    "edition.started": _l("Sending of an edition started"),
    "edition.finished": _l("Sending of an edition finished"),
    "edition.paused": _l("Sending of an edition paused"),
}

# The keys of an audit entry's details.
AUDIT_DETAIL = {
    "addresses": _l("addresses"),
    "api_token": _l("API token"),
    "at": _l("at"),
    "auto_send": _l("sent automatically"),
    "confirmed_with": _l("confirmed with"),
    "had_totp": _l("had two-factor login"),
    "known_place": _l("known place"),
    "login_method": _l("login method"),
    "method": _l("method"),
    "path": _l("address"),
    "purpose": _l("purpose"),
    "renewed": _l("set up again"),
    "second_factor": _l("second factor"),
    "sessions_ended": _l("sessions ended"),
    "to": _l("to"),
    "wait_seconds": _l("seconds to wait"),
    "cadence": _l("cadence"),
    "count": _l("number"),
    "detail": _l("detail"),
    "email": _l("address"),
    "endpoint": _l("webhook endpoint"),
    "events": _l("events"),
    "enrol": _l("enrolled"),
    "archive_public": _l("public archive"),
    "confirmed_newsletter_ids": _l("newsletters it was confirmed for"),
    "engagement_counting": _l("counting of opens and clicks"),
    "file": _l("file"),
    "from": _l("from"),
    "hour": _l("hour"),
    "invite": _l("invited"),
    "invited": _l("invited"),
    "is_public": _l("public"),
    "items": _l("items"),
    "mode": _l("mode"),
    "name": _l("name"),
    "never_again": _l("never mail again"),
    "new": _l("new"),
    "old": _l("before"),
    "newsletter": _l("newsletter"),
    "position": _l("position"),
    "reason": _l("reason"),
    "recipients": _l("recipients"),
    "role": _l("role"),
    "session": _l("session"),
    "sessions": _l("sessions ended"),
    "scopes": _l("scopes"),
    "status": _l("status"),
    "subject": _l("subject"),
    "subscriber_id": _l("subscriber"),
    "url": _l("address of the feed"),
    "via": _l("through"),
    "web": _l("on the web"),
}

LABELS: dict[str, dict[str, Any]] = {
    "subscription_status": SUBSCRIPTION_STATUS,
    "consent_action": CONSENT_ACTION,
    "consent_method": CONSENT_METHOD,
    "edition_status": EDITION_STATUS,
    "delivery_status": DELIVERY_STATUS,
    "outbox_status": OUTBOX_STATUS,
    "mail_kind": MAIL_KIND,
    "bounce_kind": BOUNCE_KIND,
    "suppression_reason": SUPPRESSION_REASON,
    "staff_role": STAFF_ROLE,
    "login_method": LOGIN_METHOD,
    "digest_mode": DIGEST_MODE,
    "digest_cadence": DIGEST_CADENCE,
    "audit_action": AUDIT_ACTION,
    "audit_detail": AUDIT_DETAIL,
    "webhook_event": WEBHOOK_EVENT,
}


def label(value: Any, kind: str) -> str:
    """The reader's words for a stored code; an unknown code is shown as it is."""
    code = getattr(value, "value", value)
    if kind == "consent_method" and isinstance(code, str) and code.startswith("api:"):
        # The channel names the API token that asked.
        return f"{LABELS[kind]['api']} ({code[4:]})"
    text = LABELS[kind].get(code)
    return str(text) if text is not None else str(code)


def labels_of(enum_type: type, kind: str) -> dict:
    """A feature's own {member: label} dict (for form choices), made from the map here."""
    return {member: LABELS[kind][member.value] for member in enum_type}


def init_app(app: Flask) -> None:
    app.jinja_env.filters["label"] = label
