"""Building and rendering mail that survives a strict SMTP server (PRODUCT.md invariant 8).

Bodies are quoted-printable, so the message is 7-bit with CRLF line ends and no line
over 78 octets however long the Danish text or the inlined HTML is. Flask-Mail 0.10's
own Message sends UTF-8 bodies unencoded (8bit), where lines over 998 octets are
rejected, so messages are built with the standard library's email package instead.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import css_inline
from flask import current_app, render_template
from flask_babel import force_locale

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
