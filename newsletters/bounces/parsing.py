"""Reading bounce mail: RFC 3464 delivery status notifications, the common non-standard
formats (flufl.bounce, GNU Mailman's detectors), and auto-replies that are not bounces.

Pure functions of the message bytes: no database, so every format can be tested alone.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr

from flufl.bounce import all_failures

from newsletters.bounces.models import BounceKind

log = logging.getLogger(__name__)

# Subjects of out-of-office and other automatic answers, in the languages KL's readers
# write (Danish, English, and what Outlook, Gmail and Exchange put there).
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic|matisk)?[ -]?(reply|svar|response|besvarelse)|autosvar|"
    r"out of (the )?office|fraværende|fravær|ikke (på|til stede)|ferie|"
    r"abwesenheit|abwesend|away from|vacation|on leave|autoreply)",
    re.IGNORECASE,
)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([45])\d\d\b")


@dataclass(frozen=True)
class BouncedRecipient:
    address: str
    kind: BounceKind
    status: str = ""
    diagnostic: str = ""


@dataclass
class ParsedBounce:
    """What a message in the bounce mailbox says."""

    recipients: list[BouncedRecipient] = field(default_factory=list)
    # (edition id, delivery id) of the returned message, when it names one.
    delivery: tuple[int, int] | None = None
    auto_reply: bool = False
    # Only a warning ("delayed, still trying"): not a bounce.
    warning_only: bool = False

    @property
    def is_bounce(self) -> bool:
        return bool(self.recipients)


def parse(raw: bytes, *, mail_domain: str) -> ParsedBounce:
    """Classify a message from the bounce mailbox and find whom it concerns."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    result = ParsedBounce(delivery=find_delivery(message, raw, mail_domain))
    if _is_delivery_status_report(message):
        result.recipients, result.warning_only = _rfc3464(message)
        if not result.recipients and not result.warning_only:
            # A report whose status fields we could not read: let the heuristics try.
            result.recipients = _heuristic(message)
        return result
    # Mail systems mark their bounces Auto-Submitted: auto-replied too (Exim does), so
    # the sender decides first: a mailer daemon's message is read as a bounce.
    if not _from_mail_system(message) and is_auto_reply(message):
        result.auto_reply = True
        return result
    result.recipients = _heuristic(message)
    return result


_MAIL_SYSTEM_SENDER = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|mail\.delivery|maildelivery|mdaemon)\b",
    re.IGNORECASE,
)


def _from_mail_system(message: Message) -> bool:
    """From a mail system rather than a person: MAILER-DAEMON, postmaster, or a message
    naming its failed recipients (Exim's X-Failed-Recipients)."""
    if message.get("X-Failed-Recipients"):
        return True
    local_part = parseaddr(str(message.get("From") or ""))[1].split("@")[0]
    return bool(_MAIL_SYSTEM_SENDER.match(local_part))


def is_auto_reply(message: Message) -> bool:
    """An out-of-office or other automatic answer (RFC 3834 and the usual headers)."""
    auto_submitted = (message.get("Auto-Submitted") or "").strip().lower()
    if auto_submitted.startswith("auto-replied"):
        return True
    for header in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress-Reply"):
        if message.get(header):
            return True
    if (message.get("Precedence") or "").strip().lower() == "auto_reply":
        return True
    subject = str(message.get("Subject") or "")
    with contextlib.suppress(email.errors.HeaderParseError, UnicodeDecodeError, LookupError):
        subject = str(email.header.make_header(email.header.decode_header(subject)))
    return bool(_AUTO_REPLY_SUBJECT.match(subject))


def _is_delivery_status_report(message: Message) -> bool:
    if message.get_content_type() == "multipart/report":
        return True
    return any(part.get_content_type() == "message/delivery-status" for part in message.walk())


def _status_fields(part: Message) -> list[Message]:
    """The per-message and per-recipient field groups of a message/delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # Some MTAs send the part with a transfer encoding; the email package then leaves it
    # as text. Parse the groups ourselves.
    text = part.get_payload(decode=True) or b""
    groups = re.split(rb"\r?\n\s*\r?\n", text)
    return [email.message_from_bytes(g.strip() + b"\n") for g in groups if g.strip()]


def _rfc3464(message: Message) -> tuple[list[BouncedRecipient], bool]:
    recipients: list[BouncedRecipient] = []
    delayed = False
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for group in _status_fields(part):
            action = (group.get("Action") or "").strip().lower()
            recipient = group.get("Original-Recipient") or group.get("Final-Recipient")
            if not recipient:
                continue
            address = _address_of(recipient)
            if not address:
                continue
            status = (group.get("Status") or "").strip()
            diagnostic = " ".join(str(group.get("Diagnostic-Code") or "").split())
            if action == "delayed":
                delayed = True
                continue
            if action != "failed":
                continue  # delivered, relayed, expanded: not a failure
            recipients.append(
                BouncedRecipient(address, classify(status, diagnostic), status[:20], diagnostic)
            )
    return recipients, delayed and not recipients


def _address_of(field_value: str) -> str:
    """'rfc822; a@b.dk' -> 'a@b.dk' (also without the address type, or in <>)."""
    value = " ".join(str(field_value).split())
    if ";" in value:
        value = value.split(";", 1)[1]
    return parseaddr(value.strip())[1].strip().lower()


def classify(status: str, diagnostic: str = "") -> BounceKind:
    """Hard or soft, from the enhanced status code (or the SMTP code in the diagnostic).

    5.x.x is permanent, with two exceptions that say nothing against the address itself:
    a full mailbox (x.2.2) and a policy or spam refusal (x.7.x), which are soft.
    """
    match = _STATUS.search(status or "") or _STATUS.search(diagnostic or "")
    if match:
        klass, subject, detail = match.groups()
        if klass == "4":
            return BounceKind.SOFT
        if (subject, detail) == ("2", "2") or subject == "7":
            return BounceKind.SOFT
        return BounceKind.HARD
    code = _SMTP_CODE.search(diagnostic or "")
    if code and code.group(1) == "4":
        return BounceKind.SOFT
    return BounceKind.HARD


def _heuristic(message: Message) -> list[BouncedRecipient]:
    """Non-standard bounces (qmail, old Exim, Exchange, Yahoo, ...) via flufl.bounce.

    Only its permanent failures count: its "temporary" ones are mostly delay warnings.
    """
    try:
        _temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on odd mail must not stop the mailbox
        log.exception("bounce detectors failed on a message")
        return []
    text = _plain_text(message)
    found = []
    for raw_address in sorted(permanent):
        address = raw_address.decode("ascii", "replace").strip().lower()
        if "@" not in address:
            continue
        status, diagnostic = _context_of(address, text)
        found.append(BouncedRecipient(address, classify(status, diagnostic), status, diagnostic))
    return found


def _context_of(address: str, text: str) -> tuple[str, str]:
    """The status code and error line near an address in a free-text bounce."""
    index = text.lower().find(address)
    window = text[index : index + 600] if index >= 0 else text[:1200]
    status = _STATUS.search(window)
    lines = [line.strip() for line in window.splitlines() if line.strip()]
    diagnostic = " ".join(lines[:3])[:500]
    return (status.group(0) if status else ""), diagnostic


def _plain_text(message: Message) -> str:
    chunks = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "utf-8"
            try:
                chunks.append(payload.decode(charset, "replace"))
            except LookupError:
                chunks.append(payload.decode("utf-8", "replace"))
    return "\n".join(chunks)


def find_delivery(message: Message, raw: bytes, mail_domain: str) -> tuple[int, int] | None:
    """The edition delivery a bounce answers, from the returned message's
    X-Newsletters-Delivery or Message-ID header, wherever the bounce quotes it."""
    haystack = raw.decode("utf-8", "replace") + "\n" + _plain_text(message)
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            with contextlib.suppress(LookupError, UnicodeError, TypeError):
                haystack += "\n" + part.as_string()
    header = re.search(r"X-Newsletters-Delivery:\s*(\d+)\.(\d+)", haystack, re.IGNORECASE)
    if header:
        return int(header.group(1)), int(header.group(2))
    message_id = re.search(
        r"<e(\d+)\.d(\d+)@" + re.escape(mail_domain) + ">", haystack, re.IGNORECASE
    )
    if message_id:
        return int(message_id.group(1)), int(message_id.group(2))
    return None
