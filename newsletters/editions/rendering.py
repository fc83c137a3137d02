"""Rendering an edition: sanitised Markdown, the mail layout, and fast personal messages.

An edition is rendered once (templates, CSS inlining, quoted-printable encoding); each
recipient's message is then assembled from the pre-encoded static lines and the few
personal lines (their links), which are encoded on the spot. Quoted-printable is
line-local, so encoding line by line gives exactly what encoding the whole body would,
and every line stays within 76 octets: the message survives a strict SMTP server
(PRODUCT.md invariant 8) at bulk speed.
"""

from __future__ import annotations

import binascii
import html
import re
import secrets
from dataclasses import dataclass
from email.utils import formatdate

import markdown
import nh3
from flask import current_app, render_template
from flask_babel import force_locale

from newsletters.editions import engagement
from newsletters.editions.models import Edition
from newsletters.mailing.compose import HEADER_POLICY, envelope_sender, inline_css, list_id_for
from newsletters.urls import public_url

ALLOWED_TAGS = {
    "p", "br", "strong", "b", "em", "i", "a", "ul", "ol", "li", "h2", "h3", "h4",
    "blockquote", "hr", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"scope"}}

# Stand-ins for the personal values while the edition is rendered once. Letters only,
# so escaping, CSS inlining and quoted-printable leave them as they are.
MANAGE_MARK = "NLxPERSONALxMANAGExURL"
UNSUBSCRIBE_MARK = "NLxPERSONALxUNSUBSCRIBExURL"
_MARKS = (MANAGE_MARK, UNSUBSCRIBE_MARK)


def markdown_to_html(source: str) -> str:
    """Editor Markdown as safe HTML: no scripts, no event handlers, no javascript: links."""
    html = markdown.markdown(source or "", extensions=["sane_lists"], output_format="html")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


_LINK = re.compile(r"(?<!\\)\[([^\]]+)\]\(([^)\s]+)\)")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|])")
# HTML that an editor wrote inside the Markdown (allowed there, and kept in the HTML part):
# in the text part a link is spelled out, a block ends its line, other tags go.
_HTML_LINK = re.compile(
    r"(?<!\\)<a\s[^<>]*?href\s*=\s*[\"']([^\"'<>]+)[\"'][^<>]*>(.*?)</a\s*>", re.I | re.S
)
_HTML_BREAK = re.compile(r"(?<!\\)(?:</(?:p|div|h[1-6]|li|tr|blockquote)\s*>|<br\s*/?>)", re.I)
_HTML_TAG = re.compile(r"(?<!\\)</?[a-zA-Z][^<>]*>")


def markdown_to_text(source: str) -> str:
    """Editor Markdown as readable plain text: links spelled out, emphasis marks dropped."""
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", source or "")
    if "<" in text or "&" in text:
        text = _HTML_LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
        text = _HTML_BREAK.sub("\n\n", text)
        text = html.unescape(_HTML_TAG.sub("", text))
        text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*\\])[*_](\S.*?\S|\S)[*_](?![\w*])", r"\1", text)
    # A backslash-escaped character is that character (feed text in digests is escaped).
    text = _ESCAPED.sub(r"\1", text)
    return text.strip()


def web_version_url(edition: Edition, locale: str = "da") -> str:
    """The public web version, in the reader's language (?lang= for all but the default)."""
    if locale == current_app.config["BABEL_DEFAULT_LOCALE"]:
        return public_url("editions.web_version", edition_id=edition.id)
    return public_url("editions.web_version", edition_id=edition.id, lang=locale)


@dataclass(frozen=True)
class RenderedEdition:
    subject: str
    text: str
    html: str


def render_edition(
    edition: Edition,
    *,
    manage_url: str,
    unsubscribe_url: str,
    locale: str = "da",
    counted: bool = False,
) -> RenderedEdition:
    """The edition's text and HTML parts, as a subscriber gets them (preview uses this).

    `counted`: the HTML's links pass through the counting redirect and it carries the open
    picture (a send of a newsletter that counts; editions/engagement.py).
    """
    subject = edition.subject_for(locale)
    context = {
        "edition": edition,
        "subject": subject,
        "newsletter": edition.newsletter,
        "body_html": markdown_to_html(edition.body_markdown),
        "body_text": markdown_to_text(edition.body_markdown),
        "items": [
            {
                "heading": item.heading,
                "html": markdown_to_html(item.text_markdown),
                "text": markdown_to_text(item.text_markdown),
                "link": item.link,
            }
            for item in edition.items
        ],
        "manage_url": manage_url,
        "unsubscribe_url": unsubscribe_url,
        "web_url": web_version_url(edition, locale),
        "config": current_app.config,
        "locale": locale,
    }
    with force_locale(locale):
        text = render_template("email/edition.txt", **context)
        html = render_template("email/edition.html", **context)
    if counted:
        html = engagement.counted_html(
            edition, html, keep={context["web_url"], manage_url, unsubscribe_url}
        )
    return RenderedEdition(subject=subject, text=text.strip() + "\n", html=inline_css(html))


def _qp_line(line: str) -> bytes:
    """One line of text as quoted-printable, soft breaks included, without its line end.

    Dot-stuffed for SMTP's DATA (RFC 5321, 4.5.2): every physical line that starts with
    a dot gets another, so a whole message is ready to send as it is (`data_ready`).
    """
    encoded = binascii.b2a_qp(line.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return _dot_stuffed(encoded.replace(b"=\n", b"=\r\n"))


def _dot_stuffed(lines: bytes) -> bytes:
    if lines.startswith(b"."):
        lines = b"." + lines
    return lines.replace(b"\r\n.", b"\r\n..")


@dataclass
class _Part:
    """A body part as pre-encoded static chunks and personal line templates, in order."""

    pieces: list[bytes | str]

    @classmethod
    def encode(cls, body: str) -> _Part:
        pieces: list[bytes | str] = []
        static: list[bytes] = []
        for line in body.replace("\r\n", "\n").split("\n"):
            if any(mark in line for mark in _MARKS):
                if static:
                    pieces.append(b"\r\n".join(static) + b"\r\n")
                    static = []
                pieces.append(line)
            else:
                static.append(_qp_line(line))
        if static:
            pieces.append(b"\r\n".join(static))
        return cls(pieces)

    def personalise(self, manage_url: str, unsubscribe_url: str) -> bytes:
        out = []
        for piece in self.pieces:
            if isinstance(piece, bytes):
                out.append(piece)
            else:
                line = piece.replace(MANAGE_MARK, manage_url).replace(
                    UNSUBSCRIBE_MARK, unsubscribe_url
                )
                out.append(_qp_line(line) + b"\r\n")
        return b"".join(out)


@dataclass
class EditionTemplate:
    """Everything of an edition's message that is the same for every recipient."""

    edition_id: int
    newsletter_id: int
    subject: str
    static_headers: bytes
    boundary: bytes
    text: _Part
    html: _Part
    envelope_from: str
    domain: str

    def message(
        self,
        *,
        to: str,
        delivery_id: int,
        manage_url: str,
        unsubscribe_url: str,
        date: str | None = None,
    ) -> bytes:
        """One recipient's complete message: RFC 5322, CRLF, 7-bit, and ready for SMTP's
        DATA as it is (lines that start with a dot are dot-stuffed: `data_ready`)."""
        b = self.boundary
        head = (
            f"To: {to}\r\n"
            f"Date: {date or formatdate(usegmt=True)}\r\n"
            # Stable per delivery: a copy sent again after a crash has the same id, so
            # mail systems that de-duplicate by Message-ID can drop it.
            f"Message-ID: <e{self.edition_id}.d{delivery_id}@{self.domain}>\r\n"
            f"List-Unsubscribe: <{unsubscribe_url}>\r\n"
            f"X-Newsletters-Delivery: {self.edition_id}.{delivery_id}\r\n"
        ).encode("ascii")
        return b"".join(
            (
                head,
                self.static_headers,
                b"\r\n--",
                b,
                b'\r\nContent-Type: text/plain; charset="utf-8"\r\n'
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                self.text.personalise(manage_url, unsubscribe_url),
                b"\r\n--",
                b,
                b'\r\nContent-Type: text/html; charset="utf-8"\r\n'
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                self.html.personalise(manage_url, unsubscribe_url),
                b"\r\n--",
                b,
                b"--\r\n",
            )
        )


def edition_template(edition: Edition, locale: str = "da") -> EditionTemplate:
    """Render the edition once per language, with stand-ins where each recipient's links
    go: its frame (headings, links, footer) is in the reader's language."""
    rendered = render_edition(
        edition,
        manage_url=MANAGE_MARK,
        unsubscribe_url=UNSUBSCRIBE_MARK,
        locale=locale,
        counted=engagement.counting(edition),
    )
    cfg = current_app.config
    domain = cfg["MAIL_DOMAIN"]
    newsletter = edition.newsletter
    # QP output never contains "==", so this boundary cannot occur in the body.
    boundary = f"=={secrets.token_hex(12)}=="
    headers = [
        ("From", cfg["MAIL_DEFAULT_SENDER"]),
        ("Subject", rendered.subject),
        ("List-Id", list_id_for(newsletter.name, newsletter.slug)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Auto-Submitted", "auto-generated"),
        ("Precedence", "bulk"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    # Header objects (not plain strings), so non-ASCII values get RFC 2047 encoded-words.
    static = b"".join(
        HEADER_POLICY.fold_binary(name, HEADER_POLICY.header_factory(name, value))
        for name, value in headers
    )
    return EditionTemplate(
        edition_id=edition.id,
        newsletter_id=edition.newsletter_id,
        subject=rendered.subject,
        static_headers=static,
        boundary=boundary.encode("ascii"),
        text=_Part.encode(rendered.text),
        html=_Part.encode(rendered.html),
        envelope_from=envelope_sender(),
        domain=domain,
    )
