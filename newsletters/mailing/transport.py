"""Handing messages to the SMTP server, with failures sorted into temporary and permanent.

The connection comes from Flask-Mail (it honours MAIL_SERVER, MAIL_PORT, MAIL_USE_TLS,
MAIL_USE_SSL, MAIL_USERNAME, MAIL_PASSWORD); the bytes are ours (see compose.py).
"""

from __future__ import annotations

import re
import smtplib
from typing import Protocol

from flask import current_app

from newsletters.extensions import mail
from newsletters.mailing.throttle import TokenBucket


class DeliveryFailure(Exception):
    """A message was not accepted. `permanent` is True for 5xx answers."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        # A connection-level failure: the rest of the batch will fail the same way.
        self.connection_lost = False


class Transport(Protocol):
    captures: bool

    def send(self, envelope_from: str, to: str, raw: bytes) -> None: ...

    def open_envelope(self, envelope_from: str, to: str, size: int = 0) -> None: ...

    def hand_over(self, raw: bytes) -> None: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...


class CaptureTransport:
    """The embedded default without a mail server: messages stay in the outbox, readable
    at the dev-only page /dev/mail."""

    captures = True

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        return None

    def open_envelope(self, envelope_from: str, to: str, size: int = 0) -> None:
        return None

    def hand_over(self, raw: bytes) -> None:
        return None

    def abandon(self) -> None:
        return None

    def close(self) -> None:
        return None


class SmtpTransport:
    """A persistent SMTP connection, reopened after SEND_MAX_PER_CONNECTION messages or
    after it drops.

    A message is handed over in two steps, so the caller can do other work (the send
    loop commits its in-flight mark) while the server answers the envelope:
    `open_envelope()` sends MAIL FROM, RCPT TO and DATA, `hand_over()` the message and
    its end, which is the moment of delivery; `abandon()` drops the connection instead,
    which makes the server discard the message (RFC 5321, 4.1.1.4). Where the server
    offers PIPELINING (RFC 2920), the three envelope commands go out in one packet and
    their answers are read together: two round trips per message instead of smtplib's
    four, and much less Python per message than `sendmail()`.
    """

    captures = False

    def __init__(self) -> None:
        self._host: smtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._pipelining = False
        self._size = False
        self._envelope_open = False
        cfg = current_app.config
        self._max_per_connection = int(cfg["SEND_MAX_PER_CONNECTION"] or 0)
        self._timeout = float(cfg["MAIL_TIMEOUT_SECONDS"])
        rate = float(cfg["SEND_RATE_PER_SECOND"] or 0)
        self._bucket = TokenBucket(rate) if rate > 0 else None

    def _connect(self) -> smtplib.SMTP:
        try:
            host = mail.connect().configure_host()
            host.ehlo_or_helo_if_needed()
        except smtplib.SMTPConnectError as exc:
            failure = DeliveryFailure(
                f"connect: {exc.smtp_code} {exc.smtp_error!r}", permanent=False, code=exc.smtp_code
            )
            failure.connection_lost = True
            raise failure from exc
        except (OSError, smtplib.SMTPException) as exc:
            failure = DeliveryFailure(f"connect: {exc}", permanent=False)
            failure.connection_lost = True
            raise failure from exc
        if host.sock is not None:
            host.sock.settimeout(self._timeout)
        self._sent_on_connection = 0
        self._pipelining = bool(host.does_esmtp and host.has_extn("pipelining"))
        self._size = bool(host.does_esmtp and host.has_extn("size"))
        return host

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        """Hand one message to the server; raises DeliveryFailure when it is not accepted."""
        self.open_envelope(envelope_from, to, len(raw))
        self.hand_over(raw)

    def open_envelope(self, envelope_from: str, to: str, size: int = 0) -> None:
        """MAIL FROM, RCPT TO and DATA: on return the server waits for the message."""
        if "\r" in to or "\n" in to or "\r" in envelope_from or "\n" in envelope_from:
            raise DeliveryFailure(f"not an address: {to!r}", permanent=True)
        if self._bucket is not None:
            self._bucket.take()
        if self._host is None:
            self._host = self._connect()
        host = self._host
        mail_from = f"MAIL FROM:<{envelope_from}>"
        if self._size and size:
            mail_from += f" SIZE={size}"
        try:
            if self._pipelining:
                host.send(f"{mail_from}\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode("ascii"))
                mail_reply = host.getreply()
                rcpt_reply = host.getreply()
                data_reply = host.getreply()
            else:
                host.send(f"{mail_from}\r\n".encode("ascii"))
                mail_reply = host.getreply()
                rcpt_reply = data_reply = (0, b"")
                if mail_reply[0] == 250:
                    host.send(f"RCPT TO:<{to}>\r\n".encode("ascii"))
                    rcpt_reply = host.getreply()
                    if rcpt_reply[0] in (250, 251):
                        host.send(b"DATA\r\n")
                        data_reply = host.getreply()
            if data_reply[0] == 354 and (mail_reply[0] != 250 or rcpt_reply[0] not in (250, 251)):
                # A server that opens DATA without a recipient: leave without a message.
                self._drop()
            if mail_reply[0] != 250:
                raise smtplib.SMTPSenderRefused(*mail_reply, envelope_from)
            if rcpt_reply[0] not in (250, 251):
                if self._host is not None:
                    self._rset()
                raise smtplib.SMTPRecipientsRefused({to: rcpt_reply})
            if data_reply[0] != 354:
                raise smtplib.SMTPDataError(*data_reply)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise DeliveryFailure(
                f"{code} {_text(text)}", permanent=code >= 500, code=code
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise self._lost(exc) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc
        self._envelope_open = True

    def hand_over(self, raw: bytes) -> None:
        """Send the message and its end; returns once the server has accepted it."""
        host = self._host
        if host is None or not self._envelope_open:
            raise RuntimeError("hand_over() without an open envelope")
        self._envelope_open = False
        try:
            host.send(_data_bytes(raw))
            code, text = host.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, text)
        except smtplib.SMTPResponseException as exc:
            raise self._lost(exc) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc
        self._sent_on_connection += 1
        if self._max_per_connection and self._sent_on_connection >= self._max_per_connection:
            self.close()

    def abandon(self) -> None:
        """Give up the open envelope: the connection is dropped, so nothing is delivered."""
        self._envelope_open = False
        self._drop()

    def _lost(self, exc: Exception) -> DeliveryFailure:
        """A failure after which the connection is not trusted: dropped, reconnect next."""
        self._envelope_open = False
        self._drop()
        if isinstance(exc, smtplib.SMTPResponseException):
            # Sender refused, data refused, or a 421 "closing".
            failure = DeliveryFailure(
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
                code=exc.smtp_code,
            )
            failure.connection_lost = exc.smtp_code == 421
            return failure
        failure = DeliveryFailure(f"connection: {exc!r}", permanent=False)
        failure.connection_lost = True
        return failure

    def _rset(self) -> None:
        try:
            self._host.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._host is not None:
            try:
                self._host.close()
            finally:
                self._host = None

    def close(self) -> None:
        if self._envelope_open:
            self.abandon()
        if self._host is not None:
            try:
                self._host.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


_LINE_END = re.compile(rb"\r\n|\n|\r")


def _data_bytes(raw: bytes) -> bytes:
    """The message as DATA wants it: CRLF line ends, leading dots doubled, the end mark."""
    if raw.count(b"\n") != raw.count(b"\r\n") or raw.count(b"\r") != raw.count(b"\r\n"):
        raw = _LINE_END.sub(b"\r\n", raw)
    raw = raw.replace(b"\r\n.", b"\r\n..")
    if raw.startswith(b"."):
        raw = b"." + raw
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def open_transport() -> Transport:
    """SMTP when MAIL_SERVER is set, local capture otherwise."""
    if current_app.config.get("MAIL_SERVER"):
        return SmtpTransport()
    return CaptureTransport()
