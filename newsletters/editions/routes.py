"""The public web version of an edition ("read in your browser")."""

from __future__ import annotations

from flask import Blueprint, Response, abort

from newsletters.editions import states
from newsletters.editions.models import Edition
from newsletters.editions.rendering import render_edition
from newsletters.extensions import db
from newsletters.i18n import current_locale
from newsletters.urls import public_url

bp = Blueprint("editions", __name__)


@bp.get("/editions/<int:edition_id>")
def web_version(edition_id: int):
    edition = db.session.get(Edition, edition_id)
    if edition is None or edition.status not in states.PUBLISHED:
        abort(404)
    # Not personal: the links lead to the pages where a reader asks for their own link.
    # PUBLIC_BASE_URL, never the request's Host: the page is kept by shared caches.
    manage = public_url("subscriptions.manage_request")
    rendered = render_edition(
        edition, manage_url=manage, unsubscribe_url=manage, locale=current_locale()
    )
    response = Response(rendered.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    # The language comes from ?lang= or the reader's language cookie.
    response.vary.add("Cookie")
    return response
