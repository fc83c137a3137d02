"""Handing messages to the SMTP server, with failures sorted into temporary and permanent.

The connection comes from Flask-Mail (it honours MAIL_SERVER, MAIL_PORT, MAIL_USE_TLS,
MAIL_USE_SSL, MAIL_USERNAME, MAIL_PASSWORD); the bytes are ours (see compose.py).
"""

from __future__ import annotations

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

    def close(self) -> None: ...


class CaptureTransport:
    """The embedded default without a mail server: messages stay in the outbox, readable
    at the dev-only page /dev/mail."""

    captures = True

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class SmtpTransport:
    """A persistent SMTP connection, reopened after SEND_MAX_PER_CONNECTION messages or
    after it drops."""

    captures = False

    def __init__(self) -> None:
        self._host: smtplib.SMTP | None = None
        self._sent_on_connection = 0
        cfg = current_app.config
        self._max_per_connection = int(cfg["SEND_MAX_PER_CONNECTION"] or 0)
        self._timeout = float(cfg["MAIL_TIMEOUT_SECONDS"])
        rate = float(cfg["SEND_RATE_PER_SECOND"] or 0)
        self._bucket = TokenBucket(rate) if rate > 0 else None

    def _connect(self) -> smtplib.SMTP:
        try:
            host = mail.connect().configure_host()
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
        return host

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        if self._bucket is not None:
            self._bucket.take()
        if self._host is None:
            self._host = self._connect()
        try:
            self._host.sendmail(envelope_from, [to], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise DeliveryFailure(
                f"{code} {_text(text)}", permanent=code >= 500, code=code
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # Sender refused, data refused, or a 421 "closing": the connection may be gone.
            self._drop()
            failure = DeliveryFailure(
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
                code=exc.smtp_code,
            )
            failure.connection_lost = exc.smtp_code == 421
            raise failure from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            failure = DeliveryFailure(f"connection: {exc!r}", permanent=False)
            failure.connection_lost = True
            raise failure from exc
        self._sent_on_connection += 1
        if self._max_per_connection and self._sent_on_connection >= self._max_per_connection:
            self.close()

    def _drop(self) -> None:
        if self._host is not None:
            try:
                self._host.close()
            finally:
                self._host = None

    def close(self) -> None:
        if self._host is not None:
            try:
                self._host.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def open_transport() -> Transport:
    """SMTP when MAIL_SERVER is set, local capture otherwise."""
    if current_app.config.get("MAIL_SERVER"):
        return SmtpTransport()
    return CaptureTransport()
