"""A strict SMTP server on loopback (aiosmtpd) that records what it accepts."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

REQUIRED_HEADERS = ("Date", "Message-ID", "From", "To", "Subject")


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_to: str
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part.get_content()
        raise AssertionError(f"no {content_type} part")

    @property
    def text(self) -> str:
        return self.part("text/plain")

    @property
    def html(self) -> str:
        return self.part("text/html")

    def link(self, path_prefix: str) -> str:
        """The first link in the plain-text part whose path starts with path_prefix."""
        match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[^\s<>\"]*)", self.text)
        if not match:
            raise AssertionError(f"no {path_prefix} link in:\n{self.text}")
        return match.group(0)


@dataclass
class StrictHandler:
    """Rejects what a strict server would: over-long lines, bare LF, 8-bit data without
    8BITMIME, missing required headers. `answer` may refuse chosen recipients."""

    received: list[ReceivedMail] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    answer: Callable[[str], str | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Offered like Postfix and Exchange do, so the client's pipelined path is the one
    # tested; aiosmtpd reads commands in order from its stream, so it copes.
    pipelining: bool = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.answer is not None:
            reply = self.answer(address)
            if reply:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data: bytes = envelope.original_content or envelope.content
        problem = _problem(data)
        if problem:
            with self.lock:
                self.rejected.append(problem)
            return f"550 {problem}"
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(ReceivedMail(envelope.mail_from, rcpt, data))
        return "250 Message accepted"


def _problem(data: bytes) -> str | None:
    lines = data.split(b"\r\n")
    for number, line in enumerate(lines, 1):
        if b"\n" in line or b"\r" in line:
            return f"bare LF or CR on line {number}"
        if len(line) > 998:
            return f"line {number} is {len(line)} octets (max 998)"
        if any(b > 127 for b in line):
            return f"8-bit data on line {number} without 8BITMIME"
    message = email.message_from_bytes(data, policy=email.policy.default)
    missing = [h for h in REQUIRED_HEADERS if h not in message]
    if missing:
        return f"missing headers: {', '.join(missing)}"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SMTPServer:
    def __init__(self, *, pipelining: bool = True) -> None:
        self.handler = StrictHandler(pipelining=pipelining)
        self._port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self._port)
        self._running = False

    def start(self) -> SMTPServer:
        self.controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self.controller.stop()
            self._running = False

    def restart(self) -> None:
        """Come back on the same port, keeping what was received (a controller is single-use)."""
        self.stop()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self._port)
        self.start()

    @property
    def port(self) -> int:
        return self._port

    @property
    def received(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.received if m.rcpt_to == address]

    def wait_for(
        self, count: int, timeout: float = 10.0, address: str | None = None
    ) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mails = self.to(address) if address else self.received
            if len(mails) >= count:
                return mails
            time.sleep(0.02)
        raise AssertionError(
            f"expected {count} mail(s), got {len(self.to(address) if address else self.received)};"
            f" rejected: {self.handler.rejected}"
        )
