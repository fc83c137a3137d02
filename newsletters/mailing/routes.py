"""The dev-only mailbox: every message the embedded default captured, readable in the
browser as the reader would get it (only with DEV_MAILBOX, never with a MAIL_SERVER)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, render_template

from newsletters.extensions import db
from newsletters.mailing import mailbox
from newsletters.mailing.models import CapturedMail

bp = Blueprint("mailing", __name__, url_prefix="/dev/mail")

# Headers a reader's mail client acts on, shown first on a message's page.
KEY_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Message-ID",
)


@bp.before_request
def _only_in_development() -> None:
    if not current_app.config["DEV_MAILBOX"]:
        abort(404)


def _mail_or_404(mail_id: int) -> CapturedMail:
    if mail_id > 2**63 - 1:  # beyond any id; the database would refuse the number
        abort(404)
    return db.get_or_404(CapturedMail, mail_id)


@bp.get("/")
def inbox():
    mails = db.session.scalars(
        db.select(CapturedMail).order_by(CapturedMail.id.desc()).limit(200)
    ).all()
    rows = [(mail, mailbox.parse(mail).message) for mail in mails]
    return render_template("mailing/inbox.html", rows=rows)


@bp.get("/<int:mail_id>")
def show(mail_id: int):
    mail = _mail_or_404(mail_id)
    parts = mailbox.parse(mail)
    message = parts.message
    key = [(name, str(message[name])) for name in KEY_HEADERS if message[name] is not None]
    other = [(n, str(v)) for n, v in message.items() if n not in KEY_HEADERS]
    unsubscribe = str(message.get("List-Unsubscribe", "")).strip().strip("<>")
    one_click = None
    if unsubscribe and message.get("List-Unsubscribe-Post"):
        # What the reader's mail provider does on "Unsubscribe": POST to the URL (RFC
        # 8058). Posted to this host, so it works wherever the laptop serves the app.
        url = urlsplit(unsubscribe)
        one_click = url.path + (f"?{url.query}" if url.query else "")
    return render_template(
        "mailing/message.html",
        mail=mail,
        subject=str(message.get("Subject", "")),
        text=parts.text,
        key_headers=key,
        other_headers=other,
        one_click=one_click,
    )


@bp.get("/<int:mail_id>.html")
def show_html(mail_id: int):
    mail = _mail_or_404(mail_id)
    response = Response(mailbox.parse(mail).html, mimetype="text/html")
    # The mail's own HTML: no scripts may run, whatever it contains.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'none'"
    )
    return response


@bp.get("/<int:mail_id>.eml")
def show_raw(mail_id: int):
    mail = _mail_or_404(mail_id)
    return Response(mail.raw, mimetype="message/rfc822")
