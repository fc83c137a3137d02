"""Where bounce mail is read from: a Maildir (stdlib mailbox) or an IMAP folder (imaplib).

Messages already read are skipped: a processed message is marked seen (the Maildir "S"
flag, IMAP \\Seen) and left where it is, so a person can still read the mailbox, and
reading it again records nothing twice (bounces are also de-duplicated by fingerprint).
"""

from __future__ import annotations

import imaplib
import mailbox
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


class MailboxError(RuntimeError):
    """The mailbox cannot be read (missing, refused login, no such folder)."""


@contextmanager
def maildir(path: str | Path) -> Iterator[tuple[Iterator[tuple[str, bytes]], Callable]]:
    """(unseen messages as (key, raw bytes), mark_seen(key)) of a Maildir."""
    folder = Path(path)
    if not (folder / "cur").is_dir() or not (folder / "new").is_dir():
        raise MailboxError(f"{folder} is not a Maildir (it needs cur/ and new/)")
    box = mailbox.Maildir(str(folder), factory=None, create=False)

    def unseen() -> Iterator[tuple[str, bytes]]:
        for key in sorted(box.keys()):
            try:
                message = box.get_message(key)
            except (KeyError, FileNotFoundError):
                continue  # taken by another reader meanwhile
            if "S" in message.get_flags():
                continue
            yield key, box.get_bytes(key)

    def mark_seen(key: str) -> None:
        try:
            message = box.get_message(key)
        except (KeyError, FileNotFoundError):
            return
        message.set_subdir("cur")
        message.add_flag("S")
        box[key] = message

    box.lock()
    try:
        yield unseen(), mark_seen
    finally:
        box.unlock()
        box.close()


@dataclass(frozen=True)
class ImapSettings:
    host: str
    username: str
    password: str
    port: int | None = None
    use_ssl: bool = True
    folder: str = "INBOX"
    timeout: float = 60.0


@contextmanager
def imap(settings: ImapSettings) -> Iterator[tuple[Iterator[tuple[bytes, bytes]], Callable]]:
    """(unseen messages as (uid, raw bytes), mark_seen(uid)) of an IMAP folder."""
    try:
        if settings.use_ssl:
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                settings.host,
                settings.port or 993,
                ssl_context=ssl.create_default_context(),
                timeout=settings.timeout,
            )
        else:
            client = imaplib.IMAP4(settings.host, settings.port or 143, timeout=settings.timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"cannot connect to {settings.host}: {exc}") from exc
    try:
        try:
            client.login(settings.username, settings.password)
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"the IMAP server refused the login: {exc}") from exc
        status, _ = client.select(_quote(settings.folder))
        if status != "OK":
            raise MailboxError(f"there is no IMAP folder {settings.folder!r}")
        status, data = client.uid("SEARCH", None, "UNSEEN")
        if status != "OK":
            raise MailboxError(f"the IMAP search failed: {data!r}")
        uids = (data[0] or b"").split()

        def unseen() -> Iterator[tuple[bytes, bytes]]:
            for uid in uids:
                # PEEK: fetching must not mark the message seen before it is recorded.
                status, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                if status != "OK":
                    continue
                for part in parts:
                    if isinstance(part, tuple) and len(part) == 2:
                        yield uid, part[1]
                        break

        def mark_seen(uid: bytes) -> None:
            client.uid("STORE", uid, "+FLAGS", "(\\Seen)")

        yield unseen(), mark_seen
    finally:
        with suppress(OSError, imaplib.IMAP4.error):
            client.logout()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
