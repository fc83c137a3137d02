"""The dev-only mailbox: captured mail, readable in the browser (embedded default only)."""

from __future__ import annotations

import email
import email.policy

from flask import Blueprint, Response, abort, current_app, render_template

from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage

bp = Blueprint("mailing", __name__, url_prefix="/dev/mail")


@bp.before_request
def _only_in_development() -> None:
    if not current_app.config["DEV_MAILBOX"]:
        abort(404)


def _parts(message: OutboxMessage) -> tuple[str, str]:
    parsed = email.message_from_string(message.raw, policy=email.policy.default)
    text = html = ""
    for part in parsed.walk():
        if part.get_content_type() == "text/plain" and not text:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and not html:
            html = part.get_content()
    return text, html


@bp.get("/")
def inbox():
    messages = db.session.scalars(
        db.select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(200)
    )
    return render_template("mailing/inbox.html", messages=list(messages))


@bp.get("/<int:message_id>")
def show(message_id: int):
    message = db.get_or_404(OutboxMessage, message_id)
    text, _ = _parts(message)
    headers = email.message_from_string(message.raw, policy=email.policy.default)
    return render_template(
        "mailing/message.html", message=message, text=text, headers=list(headers.items())
    )


@bp.get("/<int:message_id>.html")
def show_html(message_id: int):
    message = db.get_or_404(OutboxMessage, message_id)
    _, html = _parts(message)
    response = Response(html, mimetype="text/html")
    # The mail's own HTML: no scripts may run, whatever it contains.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'none'"
    )
    return response


@bp.get("/<int:message_id>.eml")
def show_raw(message_id: int):
    message = db.get_or_404(OutboxMessage, message_id)
    return Response(message.raw, mimetype="message/rfc822")
