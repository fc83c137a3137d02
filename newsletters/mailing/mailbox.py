"""The dev mailbox: what the embedded default (no MAIL_SERVER) would have handed to SMTP.

The capture transport keeps every message here, outbox mail and editions alike, as the
exact bytes of the SMTP transaction (dot-stuffing undone), while DEV_MAILBOX is on. The
pages at /dev/mail parse them as a mail client would.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy import delete, insert

from newsletters.extensions import db
from newsletters.mailing.models import CapturedMail
from newsletters.timeutil import utcnow

_captured = CapturedMail.__table__


def capture(envelope_from: str, to: str, raw: bytes) -> None:
    """Keep one message; committed at once on a connection of its own, so the caller's
    transaction (a delivery's marks, an outbox row) is neither committed nor waited on."""
    with db.engine.begin() as connection:
        connection.execute(
            insert(_captured).values(
                captured_at=utcnow(),
                envelope_from=envelope_from,
                to_address=to,
                raw=raw.decode("ascii", "replace"),
            )
        )


def forget(*addresses: str) -> None:
    """Delete the captured mail to these addresses (part of the caller's transaction)."""
    db.session.execute(delete(CapturedMail).where(CapturedMail.to_address.in_(set(addresses))))


def unstuff(data: bytes) -> bytes:
    """The message from SMTP DATA bytes: leading dots un-doubled (RFC 5321, 4.5.2)."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


@dataclass(frozen=True)
class Parts:
    message: EmailMessage
    text: str
    html: str


def parse(mail: CapturedMail) -> Parts:
    """The message as a mail client reads it: headers, the plain-text and HTML parts."""
    message = email.message_from_string(mail.raw, policy=email.policy.default)
    text = html = ""
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not text:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and not html:
            html = part.get_content()
    return Parts(message=message, text=text, html=html)
