"""Handing messages to the SMTP server, with failures sorted into temporary and permanent.

The connection comes from Flask-Mail (it honours MAIL_SERVER, MAIL_PORT, MAIL_USE_TLS,
MAIL_USE_SSL, MAIL_USERNAME, MAIL_PASSWORD); the bytes are ours (see compose.py).
"""

from __future__ import annotations

import re
import smtplib
import socket
from typing import Protocol

from flask import current_app

from newsletters.extensions import mail
from newsletters.mailing import mailbox
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

    @property
    def envelope_open(self) -> bool: ...

    def send(self, envelope_from: str, to: str, raw: bytes) -> None: ...

    def open_envelope(self, envelope_from: str, to: str, size: int = 0) -> None: ...

    def envelope_ready(self) -> None: ...

    def write_body(self, raw: bytes, *, data_ready: bool = False) -> None: ...

    def finish(self, next_envelope: tuple[str, str, int] | None = None) -> None: ...

    def accepted(self) -> None: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...


class CaptureTransport:
    """The embedded default without a mail server: nothing leaves the machine.

    With DEV_MAILBOX on, every message is kept, as the bytes SMTP would have received,
    for the page /dev/mail (outbox mail through `send()`, editions through the steps of
    a bulk send); with it off, messages are dropped and only their outbox rows remain.
    The SMTP path (SmtpTransport) does none of this work.
    """

    captures = True

    def __init__(self) -> None:
        self._keep = bool(current_app.config.get("DEV_MAILBOX"))
        self._envelope: tuple[str, str] | None = None
        self._body: bytes | None = None

    @property
    def envelope_open(self) -> bool:
        return self._envelope is not None

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        if self._keep:
            mailbox.capture(envelope_from, to, mailbox.unstuff(_data_bytes(raw)))

    def open_envelope(self, envelope_from: str, to: str, size: int = 0) -> None:
        if self._envelope is not None:
            raise RuntimeError("open_envelope() while a message is unfinished")
        self._envelope = (envelope_from, to)

    def envelope_ready(self) -> None:
        return None

    def write_body(self, raw: bytes, *, data_ready: bool = False) -> None:
        if self._keep:
            self._body = raw if data_ready else _data_bytes(raw)

    def finish(self, next_envelope: tuple[str, str, int] | None = None) -> None:
        # The end of the message: the moment SMTP would deliver it.
        if self._keep and self._envelope is not None and self._body is not None:
            mailbox.capture(*self._envelope, mailbox.unstuff(self._body))
        self._envelope = self._body = None

    def accepted(self) -> None:
        return None

    def abandon(self) -> None:
        self._envelope = self._body = None

    def close(self) -> None:
        self.abandon()


class SmtpTransport:
    """A persistent SMTP connection, reopened after SEND_MAX_PER_CONNECTION messages or
    after it drops.

    `send()` hands one message over and waits for the answer. A bulk sender uses the
    steps instead, so that its own work overlaps the server's:

    1. `open_envelope()`: MAIL FROM, RCPT TO and DATA;
    2. `envelope_ready()`: their answers (raises DeliveryFailure when refused);
    3. `write_body()`: the message, without its end: nothing is delivered yet;
    4. `finish()`: the end of the message, the moment of delivery; where the server
       offers PIPELINING (RFC 2920) the next message's envelope goes in the same packet;
    5. `accepted()`: the server's answer to the end (raises DeliveryFailure).

    `abandon()` drops the connection at any step before 4, which makes the server
    discard the unfinished message (RFC 5321, 4.1.1.4). With PIPELINING a message costs
    one round trip instead of smtplib's four, and much less Python than `sendmail()`.
    """

    captures = False

    def __init__(self, bucket: TokenBucket | None = None) -> None:
        self._host: smtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._pipelining = False
        self._size = False
        # The envelope written but unanswered ("pending"), answered ("ready"), or the
        # message body written ("body"); and whether the end of a message awaits its answer.
        self._envelope: str | None = None
        self._awaiting_answer = False
        cfg = current_app.config
        self._max_per_connection = int(cfg["SEND_MAX_PER_CONNECTION"] or 0)
        self._timeout = float(cfg["MAIL_TIMEOUT_SECONDS"])
        rate = float(cfg["SEND_RATE_PER_SECOND"] or 0)
        self._bucket = bucket if bucket is not None else TokenBucket(rate) if rate > 0 else None

    @property
    def envelope_open(self) -> bool:
        return self._envelope is not None

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
            # The end of a message is a few bytes written after its body: with Nagle's
            # algorithm they would wait for the server's delayed ACK (40 ms and more).
            host.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sent_on_connection = 0
        self._pipelining = bool(host.does_esmtp and host.has_extn("pipelining"))
        self._size = bool(host.does_esmtp and host.has_extn("size"))
        return host

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        """Hand one message to the server; raises DeliveryFailure when it is not accepted."""
        self.open_envelope(envelope_from, to, len(raw))
        self.envelope_ready()
        self.write_body(raw)
        self.finish()
        self.accepted()

    def _envelope_commands(self, envelope_from: str, to: str, size: int) -> bytes:
        if "\r" in to or "\n" in to or "\r" in envelope_from or "\n" in envelope_from:
            raise DeliveryFailure(f"not an address: {to!r}", permanent=True)
        size_option = f" SIZE={size}" if self._size and size else ""
        commands = f"MAIL FROM:<{envelope_from}>{size_option}\r\nRCPT TO:<{to}>\r\nDATA\r\n"
        if not commands.isascii():
            # An address this client cannot send without SMTPUTF8 (never offered to it).
            raise DeliveryFailure(f"not an ASCII address: {to!r}", permanent=True)
        if self._bucket is not None:
            self._bucket.take()  # only for a message that will really be offered
        return commands.encode("ascii")

    def open_envelope(self, envelope_from: str, to: str, size: int = 0) -> None:
        """Send MAIL FROM, RCPT TO and DATA (their answers are read by envelope_ready)."""
        if self._envelope is not None or self._awaiting_answer:
            raise RuntimeError("open_envelope() while a message is unfinished")
        if self._host is None:
            self._host = self._connect()
        commands = self._envelope_commands(envelope_from, to, size)
        try:
            if self._pipelining:
                self._host.send(commands)
                self._envelope = "pending"
                return
            # One command at a time, each answer read before the next (RFC 5321).
            replies = []
            for command in commands.split(b"\r\n")[:3]:
                self._host.send(command + b"\r\n")
                replies.append(self._host.getreply())
                if replies[-1][0] not in (250, 251):
                    break
            self._envelope = "pending"
            self._check_envelope(replies)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc

    def envelope_ready(self) -> None:
        """The envelope's answers; on return the server waits for the message."""
        if self._envelope == "ready":
            return
        if self._envelope != "pending":
            raise RuntimeError("envelope_ready() without an envelope")
        try:
            self._check_envelope([self._host.getreply() for _ in range(3)])
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc

    def _check_envelope(self, replies: list[tuple[int, bytes]]) -> None:
        mail_reply = replies[0]
        rcpt_reply = replies[1] if len(replies) > 1 else (0, b"")
        data_reply = replies[2] if len(replies) > 2 else (0, b"")
        if data_reply[0] == 354 and (mail_reply[0] != 250 or rcpt_reply[0] not in (250, 251)):
            # A server that opens DATA without a recipient: leave without a message.
            raise self._lost(smtplib.SMTPDataError(*data_reply))
        if mail_reply[0] != 250:
            raise self._lost(smtplib.SMTPSenderRefused(*mail_reply, ""))
        if rcpt_reply[0] not in (250, 251):
            # The transaction is over for this message; the connection stays usable.
            self._envelope = None
            try:
                self._host.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
            code, text = rcpt_reply
            raise DeliveryFailure(f"{code} {_text(text)}", permanent=code >= 500, code=code)
        if data_reply[0] != 354:
            raise self._lost(smtplib.SMTPDataError(*data_reply))
        self._envelope = "ready"

    def write_body(self, raw: bytes, *, data_ready: bool = False) -> None:
        """Send the message without its end: the server holds it, nothing is delivered.

        `data_ready`: the caller promises CRLF line ends, dot-stuffing and a final CRLF
        (an edition's messages are built that way once), so the bytes go out as they are.
        """
        if self._envelope != "ready":
            raise RuntimeError("write_body() before the server asked for the message")
        try:
            self._host.send(raw if data_ready else _data_bytes(raw))
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc
        self._envelope = "body"

    def finish(self, next_envelope: tuple[str, str, int] | None = None) -> None:
        """End the message: from here it is delivered once the server answers.

        `next_envelope` (envelope sender, recipient, size) opens the next message's
        envelope in the same packet where the server offers PIPELINING."""
        if self._envelope != "body":
            raise RuntimeError("finish() without a message body")
        end = b".\r\n"
        pipelined = (
            next_envelope is not None
            and self._pipelining
            and not (
                self._max_per_connection
                and self._sent_on_connection + 1 >= self._max_per_connection
            )
        )
        if pipelined:
            try:
                end += self._envelope_commands(*next_envelope)
            except DeliveryFailure:
                pipelined = False  # the next message's own open_envelope() will say why
        try:
            self._host.send(end)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc
        self._envelope = "pending" if pipelined else None
        self._awaiting_answer = True

    def accepted(self) -> None:
        """The answer to the end of the message; returns if it was accepted."""
        if not self._awaiting_answer:
            raise RuntimeError("accepted() without a finished message")
        self._awaiting_answer = False
        try:
            code, text = self._host.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, text)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._lost(exc) from exc
        self._sent_on_connection += 1
        if (
            self._max_per_connection
            and self._sent_on_connection >= self._max_per_connection
            and self._envelope is None
        ):
            self.close()

    def abandon(self) -> None:
        """Give up whatever is unfinished: the connection is dropped, nothing more delivered."""
        self._envelope = None
        self._awaiting_answer = False
        self._drop()

    def _lost(self, exc: Exception) -> DeliveryFailure:
        """A failure after which the connection is not trusted: dropped, reconnect next."""
        self.abandon()
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

    def _drop(self) -> None:
        if self._host is not None:
            try:
                self._host.close()
            finally:
                self._host = None

    def close(self) -> None:
        if self._envelope is not None or self._awaiting_answer:
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
    """The message as DATA wants it: CRLF line ends, leading dots doubled (no end mark)."""
    if raw.count(b"\n") != raw.count(b"\r\n") or raw.count(b"\r") != raw.count(b"\r\n"):
        raw = _LINE_END.sub(b"\r\n", raw)
    raw = raw.replace(b"\r\n.", b"\r\n..")
    if raw.startswith(b"."):
        raw = b"." + raw
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def open_transport() -> Transport:
    """SMTP when MAIL_SERVER is set, local capture otherwise."""
    if current_app.config.get("MAIL_SERVER"):
        return SmtpTransport()
    return CaptureTransport()
