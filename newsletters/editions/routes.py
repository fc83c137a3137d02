"""The public web version of an edition ("read in your browser") and the public archive."""

from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request

from newsletters.editions import archive, engagement, states
from newsletters.editions.models import Edition
from newsletters.editions.rendering import render_edition
from newsletters.extensions import db
from newsletters.i18n import current_locale
from newsletters.inputs import page_number
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


@bp.get("/newsletters/<slug>/archive")
def archive_page(slug: str):
    newsletter = archive.public_archive(slug)
    if newsletter is None:
        abort(404)
    page = archive.archive_page(
        newsletter, page_number(request.args.get("page")), locale=current_locale()
    )
    response = Response(render_template("editions/archive.html", archive=page))
    response.headers["Cache-Control"] = "public, max-age=300"
    response.vary.add("Cookie")
    return response


@bp.get("/newsletters/<slug>/archive.atom")
def archive_feed(slug: str):
    newsletter = archive.public_archive(slug)
    if newsletter is None:
        abort(404)
    entries = archive.feed_entries(newsletter)
    body = render_template(
        "editions/archive.atom.xml",
        newsletter=newsletter,
        entries=[(e, public_url("editions.web_version", edition_id=e.id)) for e in entries],
        feed_url=public_url("editions.archive_feed", slug=slug),
        archive_url=public_url("editions.archive_page", slug=slug),
        updated=entries[0].sent_at if entries else newsletter.created_at,
    )
    response = Response(body, mimetype="application/atom+xml")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/l/<int:link_id>")
def counted_link(link_id: int):
    """A link of an edition whose newsletter counts clicks: counted, then on to the
    address the edition contains (and only that: the id names it)."""
    url = engagement.click(link_id)
    if url is None:
        abort(404)
    response = redirect(url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/o/<int:edition_id>.gif")
def open_pixel(edition_id: int):
    """The picture that counts an edition's opens (a total, nothing per person)."""
    engagement.opened(edition_id)
    response = Response(engagement.PIXEL, mimetype="image/gif")
    response.headers["Cache-Control"] = "no-store, private"
    return response
