"""Building and rendering mail that survives a strict SMTP server (PRODUCT.md invariant 8).

Bodies are quoted-printable, so the message is 7-bit with CRLF line ends and no line
over 78 octets however long the Danish text or the inlined HTML is. Flask-Mail 0.10's
own Message sends UTF-8 bodies unencoded (8bit), where lines over 998 octets are
rejected, so messages are built with the standard library's email package instead.
"""

from __future__ import annotations

import email.policy
import re
import secrets
from dataclasses import dataclass
from email import quoprimime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import css_inline
from flask import current_app, render_template
from flask_babel import force_locale
from markupsafe import escape

# Bodies are encoded with the standard 76-octet QP lines of this policy.
SMTP_POLICY = email.policy.SMTP
# Headers are written with this one: folding at 78 would turn a long token-bearing
# List-Unsubscribe URL (no whitespace to fold at) into an RFC 2047 encoded-word, which
# mail clients cannot use. RFC 5322's hard limit is 998 octets.
HEADER_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def render_mail(template: str, *, locale: str, **context) -> RenderedMail:
    """Render templates/email/<template>.{txt,html} in the subscriber's locale.

    The subject is the first line of the text template's output, prefixed `Subject:`.
    Callers pass no subscriber: a mail must not print what a stranger may have typed
    (a name given on the public form), which could pass for KL's own words.
    """
    context.setdefault("config", current_app.config)
    with force_locale(locale):
        text = render_template(f"email/{template}.txt", locale=locale, **context)
        html = render_template(f"email/{template}.html", locale=locale, **context)
    first, _, body = text.lstrip().partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"email/{template}.txt must start with a 'Subject:' line")
    subject = " ".join(first.removeprefix("Subject:").split())
    return RenderedMail(subject=subject, text=body.strip() + "\n", html=inline_css(html))


_inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """Move <style> rules onto the elements (Outlook ignores most <style> blocks).

    The <style> block is kept for clients that honour media queries (phones, dark mode).
    """
    return _inliner.inline(html)


def envelope_sender() -> str:
    cfg = current_app.config
    return cfg["MAIL_ENVELOPE_FROM"] or parseaddr(cfg["MAIL_DEFAULT_SENDER"])[1]


def list_id_for(name: str | None = None, slug: str | None = None) -> str:
    """The List-Id header's value (RFC 2919): a newsletter's name and slug under the mail
    domain, or the house's own for mail that belongs to no newsletter. Every message of
    a newsletter (editions, tests, welcome letters, confirmations) carries the same one,
    so a reader's filter catches them all."""
    domain = current_app.config["MAIL_DOMAIN"]
    if slug is None:
        return f"KL Nyhedsbreve <{domain}>"
    return f"{name or slug} <{slug}.{domain}>"


def build_message(
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    sender: str | None = None,
    list_id: str | None = None,
    unsubscribe_url: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """The complete message as 7-bit bytes with CRLF line ends, ready for SMTP DATA."""
    cfg = current_app.config
    domain = cfg["MAIL_DOMAIN"]
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender or cfg["MAIL_DEFAULT_SENDER"]
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    # An explicit domain: make_msgid() would otherwise look up the FQDN (slow, and leaky).
    msg["Message-ID"] = make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["List-Id"] = list_id or list_id_for()
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes(policy=HEADER_POLICY)


# --------------------------------------------------------------------------- personal mail in bulk

# The stand-in for the recipient's address while a `PersonalTemplate` is built.
TO_MARK = "nlxpersonalxto@nlxpersonalxto.invalid"
_DATE_MARK = "NLxPERSONALxDATE"
_MESSAGE_ID_MARK = "NLxPERSONALxMESSAGExID"
# An address the To header writes as it is (no quoting, no folding; "=?" excluded, as
# the header reads an encoded-word even there).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_PLAIN_URL = re.compile(r"[\x21-\x7e]+")
# What markupsafe.escape changes.
_HTML_SPECIAL = re.compile("[&<>\"']")


def _qp_line(line: str) -> str:
    """One body line as `build_message` writes it: quoted-printable (line-local, so a
    line encodes the same alone as within the whole body), CRLF line ends."""
    encoded = quoprimime.body_encode(
        line.encode("utf-8").decode("latin-1") + "\n", SMTP_POLICY.max_line_length
    )
    return encoded.replace("\n", "\r\n")


# What quoprimime.body_encode writes for each octet before it breaks the lines.
_QP_OCTETS = [
    chr(octet)
    if chr(octet) in "\r\n" or not quoprimime.body_check(octet)
    else quoprimime.quote(chr(octet))
    for octet in range(256)
]
_QP_MAX = SMTP_POLICY.max_line_length


def _qp_escaped(text: str) -> str:
    """`text`'s octets as quoted-printable writes them, lines not yet broken."""
    if _PLAIN_URL.fullmatch(text):
        return text.replace("=", "=3D")
    return text.encode("utf-8").decode("latin-1").translate(_QP_OCTETS)


def _soft_lines(line: str, start: int = 0, done: int | None = None) -> tuple[list[str], int]:
    """quoprimime.body_encode's breaking of one escaped line into lines of at most
    76 octets (soft breaks "=", never inside an "=XX"), from `start`: (the lines, where
    the last one starts). With `done`, only the lines that end by `done - 2`, whatever
    follows: the decisions look two octets ahead of a line's end, and the line must be
    that much longer for there to be another line after it."""
    out = []
    length = len(line) if done is None else done
    laststart = length - 1 - _QP_MAX
    while start <= laststart:
        stop = start + _QP_MAX - 1
        if line[stop - 2] == "=":
            out.append(line[start : stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            out.append(line[start:stop])
            start = stop - 1
        else:
            out.append(line[start:stop] + "=")
            start = stop
    if done is not None:
        return out, start
    # The line's end, where trailing whitespace is quoted (it would be stripped in transit).
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            end = quoprimime.quote(line[-1])
        elif room == 2:
            end = line[-1] + "=\r\n"
        else:
            end = "=\r\n" + quoprimime.quote(line[-1])
        out.append(line[start:-1] + end)
    else:
        out.append(line[start:])
    return out, start


class _PersonalLine:
    """A body line that carries marks, quoted-printable encoded per recipient as
    `_qp_line` encodes it: its octets escaped once, and the lines before the first mark
    broken once (the breaking runs left to right and looks only two octets ahead)."""

    def __init__(self, source: str, marks: tuple[str, ...]) -> None:
        self.source = source
        parts = re.split("(" + "|".join(re.escape(m) for m in marks) + ")", source)
        self.statics = [_qp_escaped(part) for part in parts[0::2]]
        self.marks = parts[1::2]
        first = self.statics[0]
        self.head, self.resume = _soft_lines(first, done=len(first))
        self.head_text = "".join(line + "\r\n" for line in self.head)

    def encode(self, values: dict[str, str]) -> str:
        pieces = [self.statics[0][self.resume :]]
        for mark, static in zip(self.marks, self.statics[1:], strict=True):
            value = _qp_escaped(values[mark])
            if "\r" in value or "\n" in value:
                # A line break in a value: the line is two lines; the whole way.
                return _qp_line(_fill(self.source, values))
            pieces += [value, static]
        lines, _ = _soft_lines("".join(pieces))
        return self.head_text + "\r\n".join(lines) + "\r\n"


def _header_line(name: str, value: str) -> str:
    return HEADER_POLICY.fold_binary(name, HEADER_POLICY.header_factory(name, value)).decode(
        "ascii"
    )


class PersonalTemplate:
    """A mail rendered once, with stand-ins (`marks`) where each recipient's links go,
    from which each recipient's message is assembled: the bytes `build_message` makes
    for them (but the Date, Message-ID and MIME boundary), at a fraction of the cost.

    The template is `build_message`'s own output for the stand-ins, cut at the lines
    that carry them; per recipient only those lines are written again (quoted-printable
    is line-local) and the personal headers (To, Date, Message-ID, List-Unsubscribe).
    The marks must be letters only (escaping, CSS inlining and quoted-printable leave
    them as they are) and stand alone in the rendered text and HTML.
    """

    def __init__(
        self,
        mail: RenderedMail,
        *,
        marks: tuple[str, ...],
        list_id: str | None = None,
        unsubscribe_mark: str | None = None,
    ) -> None:
        self.subject = mail.subject
        self.marks = marks
        self.unsubscribe_mark = unsubscribe_mark
        self.domain = current_app.config["MAIL_DOMAIN"]
        raw = build_message(
            to=TO_MARK,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            list_id=list_id,
            unsubscribe_url=unsubscribe_mark,
        ).decode("ascii")
        head, sep, body = raw.partition("\r\n\r\n")
        found = re.search(r'boundary="([^"]+)"', head)
        if found is None:  # pragma: no cover - build_message always writes two parts
            raise ValueError("no MIME boundary")
        self.boundary = found.group(1)
        lines = head.split("\r\n")
        raw_date = raw_message_id = ""
        for i, line in enumerate(lines):
            if line.startswith("Date: "):
                lines[i], raw_date = _DATE_MARK, line.removeprefix("Date: ")
            elif line.startswith("Message-ID: "):
                lines[i], raw_message_id = _MESSAGE_ID_MARK, line.removeprefix("Message-ID: ")
        head = "\r\n".join(lines)
        # (kind, value): "s" static text, "h" a personal header, "t"/"x" a personal line
        # of the text / HTML part.
        pieces: list[tuple[str, Any]] = []
        rest = head + sep
        for mark, header in (
            (f"To: {TO_MARK}\r\n", "To"),
            (_DATE_MARK + "\r\n", "Date"),
            (_MESSAGE_ID_MARK + "\r\n", "Message-ID"),
            (f"List-Unsubscribe: <{unsubscribe_mark}>\r\n", "List-Unsubscribe"),
        ):
            if header == "List-Unsubscribe" and unsubscribe_mark is None:
                continue
            before, found, rest = rest.partition(mark)
            if not found:
                raise ValueError(f"no {header} header where expected")
            pieces += [("s", before), ("h", header)]
        for kind, source in (("t", mail.text), ("x", mail.html)):
            encoded = "".join(_qp_line(line) for line in _lines(source))
            # The body encoded line by line: it must be found as it is in the message.
            start = body.find(encoded)
            if start < 0 or not encoded:
                raise ValueError("the body is not where quoted-printable puts it")
            rest += body[:start]
            body = body[start + len(encoded) :]
            static: list[str] = []
            for line in _lines(source):
                if any(m in line for m in marks):
                    pieces += [("s", rest + "".join(static)), (kind, _PersonalLine(line, marks))]
                    rest, static = "", []
                else:
                    static.append(_qp_line(line))
            rest += "".join(static)
        pieces.append(("s", rest + body))
        self._pieces = [(k, v) for k, v in pieces if k != "s" or v]
        # The stand-ins filled in must give the very message the template was cut from,
        # and the personal headers must be written as the header classes write them.
        date, message_id = raw_date, raw_message_id
        if (
            self.message(to=TO_MARK, values={m: m for m in marks}, date=date, message_id=message_id)
            != raw
            or _header_line("Date", date) != f"Date: {date}\r\n"
            or _header_line("Message-ID", message_id) != f"Message-ID: {message_id}\r\n"
        ):
            raise ValueError("the template does not give back the message it was cut from")

    def message(
        self,
        *,
        to: str,
        values: dict[str, str],
        date: str | None = None,
        message_id: str | None = None,
        boundary: str | None = None,
    ) -> str:
        """One recipient's message, as `build_message` writes it: `values` maps each mark
        to that recipient's link, `to` is their (ASCII) address. `boundary`: the MIME
        boundary instead of the template's (`new_boundary`; the bodies are
        quoted-printable, where "=" is always escaped, so it cannot occur in them)."""
        escaped = {m: str(escape(v)) if _HTML_SPECIAL.search(v) else v for m, v in values.items()}
        out = []
        for kind, value in self._pieces:
            if kind == "s":
                out.append(value)
            elif kind == "t":
                out.append(value.encode(values))
            elif kind == "x":
                out.append(value.encode(escaped))
            elif value == "To":
                if len(to) < 900 and "=?" not in to and _PLAIN_ADDRESS.fullmatch(to):
                    out.append(f"To: {to}\r\n")
                else:
                    out.append(_header_line("To", to))
            elif value == "Date":
                out.append(f"Date: {date or formatdate(usegmt=True)}\r\n")
            elif value == "Message-ID":
                out.append(f"Message-ID: {message_id or make_msgid(domain=self.domain)}\r\n")
            else:
                url = values[self.unsubscribe_mark]
                if len(url) < 900 and _PLAIN_URL.fullmatch(url):
                    out.append(f"List-Unsubscribe: <{url}>\r\n")
                else:
                    out.append(_header_line("List-Unsubscribe", f"<{url}>"))
        if boundary is not None:
            return "".join(out).replace(self.boundary, boundary)
        return "".join(out)


def new_boundary() -> str:
    """A MIME boundary of the form the email package writes."""
    return "=" * 15 + f"{secrets.randbelow(10**19):019d}" + "=="


def _fill(line: str, values: dict[str, str]) -> str:
    for mark, value in values.items():
        line = line.replace(mark, value)
    return line


def _lines(source: str) -> list[str]:
    """The lines as `set_content` splits them (bytes.splitlines: CR, LF, CRLF only)."""
    return [line.decode("utf-8") for line in source.encode("utf-8").splitlines()]
