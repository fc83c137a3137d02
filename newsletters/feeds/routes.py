"""The staff pages of feeds: a newsletter's feeds and their health, the next digest's
preview (and a draft made of it), the feeds' filters and places (editors, who steer
what goes in); adding, removing and fetching feeds, OPML and the digest's settings
(administrators). Thin views over `services` and `digests`; GET shows, POST acts."""

from __future__ import annotations

import logging
import unicodedata

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import editing
from newsletters.editions.states import EditionError, NotEditable
from newsletters.feeds import digests, services
from newsletters.feeds.fetching import MAX_REDIRECTS, FetchErrorKind
from newsletters.feeds.filters import MAX_WORD_CHARS, MAX_WORDS
from newsletters.feeds.forms import (
    CADENCE_LABELS,
    MODE_LABELS,
    REFUSED_ADDRESS_MESSAGE,
    SKIP_REASON_LABELS,
    DigestSettingsForm,
    FeedForm,
    FilterForm,
    OpmlForm,
    PickItemsForm,
    PositionForm,
)
from newsletters.feeds.opml import MAX_BYTES as MAX_OPML_BYTES
from newsletters.feeds.opml import OpmlError
from newsletters.feeds.opml import Problem as OpmlProblem
from newsletters.feeds.services import FeedError
from newsletters.staff.access import admin_required, editor_required, require_newsletter
from newsletters.timeutil import utcnow

log = logging.getLogger(__name__)

bp = Blueprint("feeds", __name__, url_prefix="/staff")

# How far back the picker of an edition looks.
PICK_DAYS = 14


@bp.app_context_processor
def _feeds_context() -> dict:
    # App-wide: the editions' pages show a newsletter's digest settings too.
    return {
        "mode_labels": MODE_LABELS,
        "cadence_labels": CADENCE_LABELS,
        "feed_last_error": feed_last_error,
    }


def _size(limit: float) -> str:
    """A byte count as editors read it (5 MB, 500 KB), in the reader's number format."""
    for unit, size in (("MB", 1_000_000), ("KB", 1_000)):
        if limit >= size:
            return f"{format_decimal(limit / size, format='#,##0.#')} {unit}"
    return _("%(count)s bytes", count=format_decimal(limit, format="#,##0"))


def fetch_error_text(kind: FetchErrorKind | str | None, params: dict | None = None) -> str:
    """Why a fetch brought no feed, in the reader's language: one sentence per kind
    (the English detail is for the log and the CLI)."""
    p = params or {}
    if kind == FetchErrorKind.UNREACHABLE:
        return _(
            "The server could not be reached, or did not answer in full within %(seconds)s "
            "seconds.",
            seconds=format_decimal(p.get("seconds", 0), format="#,##0.#"),
        )
    if kind == FetchErrorKind.HTTP_STATUS and p.get("status"):
        status = int(p["status"])
        if status in (404, 410):
            return _("There is nothing at the address (HTTP status %(status)s).", status=status)
        if status in (401, 403):
            return _(
                "The server does not give access to the address (HTTP status %(status)s).",
                status=status,
            )
        if status in (429, 503):
            return _(
                "The server is busy and asks to be tried again later (HTTP status %(status)s).",
                status=status,
            )
        if status >= 500:
            return _("The server has an error (HTTP status %(status)s).", status=status)
        return _("The server answered with HTTP status %(status)s.", status=status)
    if kind == FetchErrorKind.TOO_LARGE and p.get("limit"):
        return _(
            "The document at the address is too large: more than %(size)s.", size=_size(p["limit"])
        )
    if kind == FetchErrorKind.TOO_MANY_REDIRECTS:
        return _("The address redirects more than %(count)s times.", count=p.get("count", ""))
    if kind == FetchErrorKind.GONE:
        return _("The publisher has removed the feed (HTTP status 410).")
    if kind == FetchErrorKind.NOT_A_FEED:
        return _("The address does not lead to an RSS or Atom feed that can be read.")
    return _("An unexpected error occurred while fetching.")


def feed_last_error(feed) -> str:
    """Why the feed's last fetch failed, in the reader's language: its stored kind, with
    the status it got and today's limits (`last_error`, in English, is the CLI's)."""
    settings = services.fetch_settings()
    return fetch_error_text(
        feed.last_error_kind,
        {
            "status": feed.last_status,
            "seconds": settings.timeout,
            "limit": settings.max_bytes,
            "count": MAX_REDIRECTS,
        },
    )


def _newsletter_or_404(slug: str):
    require_newsletter(slug)
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        abort(404)
    return newsletter


def _feeds_page(
    newsletter,
    *,
    feed_form: FeedForm | None = None,
    settings_form: DigestSettingsForm | None = None,
    opml_form: OpmlForm | None = None,
    opml_errors: list[str] | None = None,
    discovered=None,
    status: int = 200,
):
    if settings_form is None:
        settings_form = DigestSettingsForm(
            formdata=None,
            data={
                "mode": newsletter.digest_mode.value,
                "cadence": newsletter.digest_cadence.value,
                "hour": newsletter.digest_hour,
                "sections": newsletter.digest_sections,
            },
        )
    now = utcnow()
    next_slot = digests.next_slot(newsletter, now)
    return render_template(
        "feeds/feeds.html",
        newsletter=newsletter,
        health=services.feed_health(newsletter.id),
        feed_form=feed_form or FeedForm(formdata=None),
        opml_form=opml_form or OpmlForm(formdata=None),
        opml_errors=opml_errors or [],
        discovered=discovered,
        settings_form=settings_form,
        next_slot=next_slot,
        slot_open=next_slot is not None and next_slot.at <= now,
        awaited=digests.feeds_awaited(newsletter.id, next_slot) if next_slot else 0,
        skipped=digests.skipped_slots(newsletter.id),
        skip_reasons=SKIP_REASON_LABELS,
        catch_up_minutes=int(digests.catch_up_window().total_seconds() // 60),
        preview=digests.preview_digest(newsletter) if newsletter.is_feed_based else None,
    ), status


@bp.get("/newsletters/<slug>/feeds")
@editor_required
def feeds(slug: str):
    return _feeds_page(_newsletter_or_404(slug))


@bp.post("/newsletters/<slug>/feeds")
@admin_required
def add_feed(slug: str):
    newsletter = _newsletter_or_404(slug)
    form = FeedForm()
    if not form.validate():
        return _feeds_page(newsletter, feed_form=form, status=422)
    if form.action.data == "discover":
        return _discover(newsletter, form)
    try:
        feed = services.add_feed(
            newsletter.slug,
            form.url.data,
            title=form.title.data or "",
            by=current_user.email,
            actor=events.Actor.of_request(),
        )
    except services.DuplicateFeed:
        form.url.errors.append(_("%(name)s already has this feed.", name=newsletter.name))
        return _feeds_page(newsletter, feed_form=form, status=422)
    except services.RefusedFeedAddress:
        form.url.errors.append(REFUSED_ADDRESS_MESSAGE)
        return _feeds_page(newsletter, feed_form=form, status=422)
    except FeedError:
        form.url.errors.append(_("Enter an address that starts with https:// or http://."))
        return _feeds_page(newsletter, feed_form=form, status=422)
    flash(
        _(
            "The feed %(url)s has been added and is being fetched now. Reload the page in a "
            "moment to see its items.",
            url=feed.url,
        ),
        "success",
    )
    return redirect(url_for(".feeds", slug=newsletter.slug), code=303)


def _discover(newsletter, form: FeedForm):
    """The feeds the page at the form's address announces, offered to choose from."""
    try:
        found = services.discover_feeds(form.url.data)
    except services.RefusedFeedAddress:
        form.url.errors.append(REFUSED_ADDRESS_MESSAGE)
        return _feeds_page(newsletter, feed_form=form, status=422)
    except FeedError:
        form.url.errors.append(_("Enter an address that starts with https:// or http://."))
        return _feeds_page(newsletter, feed_form=form, status=422)
    if found.error:
        form.url.errors.append(
            _(
                "The page could not be fetched. %(reason)s",
                reason=fetch_error_text(found.error_kind, found.error_params),
            )
        )
        log.info("discovery of %s: %s", form.url.data, found.error)
        return _feeds_page(newsletter, feed_form=form, status=422)
    if not found.candidates:
        form.url.errors.append(
            _("The page announces no feeds. Enter the address of the feed itself.")
        )
        return _feeds_page(newsletter, feed_form=form, status=422)
    return _feeds_page(newsletter, feed_form=form, discovered=found)


@bp.post("/newsletters/<slug>/digest-settings")
@admin_required
def digest_settings(slug: str):
    newsletter = _newsletter_or_404(slug)
    form = DigestSettingsForm()
    if not form.validate():
        return _feeds_page(newsletter, settings_form=form, status=422)
    services.update_digest_settings(
        newsletter.slug,
        mode=DigestMode(form.mode.data),
        cadence=DigestCadence(form.cadence.data),
        hour=form.hour.data,
        sections=bool(form.sections.data),
        actor=events.Actor.of_request(),
    )
    flash(_("The digest settings of %(name)s have been saved.", name=newsletter.name), "success")
    return redirect(url_for(".feeds", slug=newsletter.slug), code=303)


def _feed_or_404(feed_id: int):
    try:
        feed = services.get_feed(feed_id)
    except services.FeedNotFound:
        abort(404)
    require_newsletter(feed.newsletter.slug)
    return feed


def _back_to(feed) -> str:
    return url_for(".feeds", slug=feed.newsletter.slug)


@bp.post("/feeds/<int:feed_id>/fetch")
@admin_required
def fetch_feed(feed_id: int):
    feed = _feed_or_404(feed_id)
    back = _back_to(feed)
    outcomes = services.fetch_feeds([feed.id], actor=events.Actor.of_request())
    if not outcomes or outcomes[0].removed:
        # Removed by someone else since the page was shown (or during the fetch).
        flash(_("The feed no longer exists: it has been removed."), "error")
        return redirect(back, code=303)
    [outcome] = outcomes
    if outcome.disabled:
        flash(_("The publisher has removed the feed (410 Gone); it has been disabled."), "error")
    elif outcome.error:
        flash(
            _(
                "The feed could not be fetched. %(reason)s",
                reason=fetch_error_text(outcome.error_kind, outcome.error_params),
            ),
            "error",
        )
    elif outcome.status == 304:
        flash(_("The feed has not changed since it was last fetched."), "success")
    else:
        flash(
            _(
                "The feed has been fetched: %(new)s new and %(updated)s updated item(s).",
                new=outcome.new,
                updated=outcome.updated,
            ),
            "success",
        )
    return redirect(back, code=303)


# Items shown under a feed's filter.
FILTER_PREVIEW_ITEMS = 100


def _shown(text: str | None) -> str:
    """Words as they are shown again in the form: a control character (which HTML may
    not hold, and the filter refuses) as U+FFFD, so the editor sees where it was."""
    return "".join(
        "\ufffd" if unicodedata.category(c) == "Cc" and c not in "\t\r\n" else c for c in text or ""
    )


def _filter_page(feed, form: FilterForm, judge=None, *, preview: bool = False, status=200):
    for field in (form.include, form.exclude, form.categories):
        field.data = _shown(field.data)
    return render_template(
        "feeds/filter.html",
        feed=feed,
        newsletter=feed.newsletter,
        form=form,
        preview=preview,
        items=services.judged_items(feed, judge, limit=FILTER_PREVIEW_ITEMS),
    ), status


@bp.get("/feeds/<int:feed_id>/filter")
@editor_required
def feed_filter(feed_id: int):
    feed = _feed_or_404(feed_id)
    form = FilterForm(
        formdata=None,
        data={
            "include": feed.filter_include,
            "exclude": feed.filter_exclude,
            "categories": feed.filter_categories,
        },
    )
    return _filter_page(feed, form)


@bp.post("/feeds/<int:feed_id>/filter")
@editor_required
def save_feed_filter(feed_id: int):
    """Save the filter, or (action=preview) show what it would let through, unsaved."""
    feed = _feed_or_404(feed_id)
    form = FilterForm()
    if not form.validate():
        return _filter_page(feed, form, status=422)
    words = {
        "include": [form.include.data or ""],
        "exclude": [form.exclude.data or ""],
        "categories": [form.categories.data or ""],
    }
    try:
        if form.action.data == "preview":
            judge = services.candidate_filter(**words)
            return _filter_page(feed, form, judge, preview=True)
        outcome = services.set_filter(feed.id, **words, actor=events.Actor.of_request())
    except FeedError as error:
        # The service's message names the list ("exclude: ..."): the error goes there.
        field = getattr(form, str(error).split(":", 1)[0], None)
        field = field if field in (form.include, form.exclude, form.categories) else form.include
        field.errors = [
            _(
                "These words cannot be used: give at most %(words)s words of at most "
                "%(chars)s characters each, without control characters.",
                words=MAX_WORDS,
                chars=MAX_WORD_CHARS,
            )
        ]
        log.info("feed %s: filter refused: %s", feed.id, error)
        return _filter_page(feed, form, status=422)
    flash(
        _(
            "The filter has been saved: %(passing)s item(s) go into the digests, "
            "%(filtered)s are filtered out (and kept).",
            passing=outcome.passing,
            filtered=outcome.filtered_out,
        ),
        "success",
    )
    return redirect(url_for(".feed_filter", feed_id=feed.id), code=303)


@bp.post("/feeds/<int:feed_id>/position")
@editor_required
def feed_position(feed_id: int):
    """Where the feed's section comes in a digest with sections."""
    feed = _feed_or_404(feed_id)
    form = PositionForm()
    if not form.validate():
        errors = [e for errors in form.errors.values() for e in errors]
        flash(" ".join(str(e) for e in errors), "error")
        return redirect(_back_to(feed), code=303)
    services.set_positions({feed.id: form.position.data}, actor=events.Actor.of_request())
    flash(_("The feed %(url)s has been moved in the digest.", url=feed.url), "success")
    return redirect(_back_to(feed), code=303)


@bp.post("/feeds/<int:feed_id>/enable")
@admin_required
def enable_feed(feed_id: int):
    return _set_enabled(feed_id, True)


@bp.post("/feeds/<int:feed_id>/disable")
@admin_required
def disable_feed(feed_id: int):
    return _set_enabled(feed_id, False)


def _set_enabled(feed_id: int, enabled: bool):
    feed = services.set_enabled(
        _feed_or_404(feed_id).id,
        enabled,
        actor=events.Actor.of_request(),
    )
    if enabled:
        flash(_("The feed %(url)s is enabled and is fetched again.", url=feed.url), "success")
    else:
        flash(_("The feed %(url)s is disabled: it is no longer fetched.", url=feed.url), "success")
    return redirect(_back_to(feed), code=303)


@bp.post("/feeds/<int:feed_id>/remove")
@admin_required
def remove_feed(feed_id: int):
    feed = _feed_or_404(feed_id)
    back = _back_to(feed)
    feed_id = feed.id
    url = services.remove_feed(feed_id, actor=events.Actor.of_request())
    flash(
        _("The feed %(url)s has been removed. Editions already made keep its items.", url=url),
        "success",
    )
    return redirect(back, code=303)


@bp.post("/newsletters/<slug>/digest")
@editor_required
def make_digest(slug: str):
    newsletter = _newsletter_or_404(slug)
    try:
        [outcome] = digests.run_digests(
            newsletter.slug, created_by=current_user.email, actor=events.Actor.of_request()
        )
    except digests.DigestAlreadyBuilt:
        flash(_("Another digest was being made at the same moment. Try again."), "error")
        return redirect(url_for("editor.newsletter", slug=newsletter.slug), code=303)
    except digests.DigestError:
        flash(_("%(name)s has no feeds, or its digest is off.", name=newsletter.name), "error")
        return redirect(url_for("editor.newsletter", slug=newsletter.slug), code=303)
    if outcome.edition_id is None:
        flash(_("There are no new items since the last digest; no edition was made."), "info")
        return redirect(url_for("editor.newsletter", slug=newsletter.slug), code=303)
    if outcome.auto_send:
        flash(_("The digest has been made and is being sent."), "success")
        return redirect(url_for("editor.progress", edition_id=outcome.edition_id), code=303)
    flash(_("The digest has been made as a draft. Review it, then send it."), "success")
    return redirect(url_for("editor.edition", edition_id=outcome.edition_id), code=303)


@bp.get("/newsletters/<slug>/feeds.opml")
@admin_required
def export_opml(slug: str):
    newsletter = _newsletter_or_404(slug)
    response = Response(services.export_opml(newsletter.slug), mimetype="text/x-opml")
    response.headers["Content-Disposition"] = f'attachment; filename="{newsletter.slug}-feeds.opml"'
    return response


def opml_problem(problem: OpmlProblem) -> str:
    """Why an OPML file was refused, in the reader's language."""
    p = problem.params
    if problem.code == "too_large":
        return _("The file is larger than %(kb)s KB.", kb=p["kb"])
    if problem.code == "not_xml":
        return _(
            "The file is not well-formed XML (line %(line)s, column %(column)s).",
            line=p["line"],
            column=p["column"],
        )
    if problem.code == "doctype":
        return _(
            "The file has a DOCTYPE declaration. OPML needs none, and it is refused for "
            "security reasons."
        )
    if problem.code == "entity":
        return _("The file declares an entity, which is refused for security reasons.")
    if problem.code == "not_opml":
        return _("The file is not an OPML file: it begins with <%(name)s>.", name=p["name"])
    if problem.code == "too_deep":
        return _("The file's folders are nested more than %(depth)s levels deep.", depth=p["depth"])
    if problem.code == "too_many":
        return _("The file lists more than %(count)s feeds.", count=p["count"])
    if problem.code == "empty":
        return _("The file is empty.")
    if problem.code == "no_feeds":
        return _("The file lists no feeds (no outline with an xmlUrl).")
    if problem.code == "refused_address":
        return _(
            "Line %(line)s: %(url)s leads to an internal network; feeds can only be fetched "
            "from the public internet.",
            line=p["line"],
            url=p["url"],
        )
    if problem.code == "bad_url":
        return _(
            "Line %(line)s: %(url)s is not an address that starts with https:// or http:// "
            "(without spaces).",
            line=p["line"],
            url=p["url"],
        )
    if problem.code == "unknown_folder":
        return _(
            'Line %(line)s: the feed\'s folder "%(folder)s" names no newsletter.',
            line=p["line"],
            folder=p["folder"],
        )
    if problem.code == "stopped":
        return _("(Stopped after %(count)s errors.)", count=p["count"])
    # A reason this page does not know yet: said in the reader's language all the same
    # (the English text is in the log).
    log.warning("OPML problem without a text of its own: %s: %s", problem.code, problem.text)
    return _("The file cannot be imported.")


@bp.post("/newsletters/<slug>/feeds/opml")
@admin_required
def import_opml(slug: str):
    """Attach the feeds of an uploaded OPML file; a file with any bad feed is refused
    whole, its problems listed."""
    newsletter = _newsletter_or_404(slug)
    form = OpmlForm()
    if not form.validate():
        return _feeds_page(newsletter, opml_form=form, status=422)
    data = form.file.data.stream.read(MAX_OPML_BYTES + 1)
    try:
        outcome = services.import_opml(
            newsletter.slug, data, by=current_user.email, actor=events.Actor.of_request()
        )
    except OpmlError as error:
        form.file.errors = [_("The file was refused; no feed was added.")]
        problems = [opml_problem(problem) for problem in error.problems]
        log.info("OPML file refused for %s: %s", newsletter.slug, error)
        return _feeds_page(newsletter, opml_form=form, opml_errors=problems, status=422)
    flash(
        _(
            "%(added)s feed(s) added from the file; %(already)s were there already.",
            added=len(outcome.added),
            already=len(outcome.already),
        ),
        "success",
    )
    return redirect(url_for(".feeds", slug=newsletter.slug), code=303)


@bp.get("/newsletters/<slug>/digest/preview")
@editor_required
def digest_preview_html(slug: str):
    """The HTML part of the next digest, as the feeds page's preview shows it."""
    newsletter = _newsletter_or_404(slug)
    preview = digests.preview_digest(newsletter) if newsletter.is_feed_based else None
    if preview is None or preview.rendered is None:
        abort(404)
    response = Response(preview.rendered.html, mimetype="text/html")
    # As the web version: the mail's HTML, nothing active.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
        "form-action 'none'; frame-ancestors 'self'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/newsletters/<slug>/digest/draft")
@editor_required
def digest_to_draft(slug: str):
    """Make the next digest now as a draft to edit (never sent by itself): its items
    are then digested, and the next one starts after them."""
    newsletter = _newsletter_or_404(slug)
    if not newsletter.is_feed_based:
        flash(_("%(name)s has no feeds, or its digest is off.", name=newsletter.name), "error")
        return redirect(url_for(".feeds", slug=newsletter.slug), code=303)
    try:
        outcome = digests.build_digest(
            newsletter.id,
            created_by=current_user.email,
            actor=events.Actor.of_request(),
            as_draft=True,
        )
    except digests.DigestAlreadyBuilt:
        flash(_("Another digest was being made at the same moment. Try again."), "error")
        return redirect(url_for(".feeds", slug=newsletter.slug), code=303)
    if outcome.edition_id is None:
        flash(_("There are no new items since the last digest; no edition was made."), "info")
        return redirect(url_for(".feeds", slug=newsletter.slug), code=303)
    flash(_("The digest has been made as a draft. Review it, then send it."), "success")
    return redirect(url_for("editor.edition", edition_id=outcome.edition_id), code=303)


# --------------------------------------------------------------------------- picker


def _edition_or_404(edition_id: int):
    """The edition, once the staff member may work on its newsletter (else 403, audited)."""
    edition = editing.get_edition(edition_id)
    if edition is None:
        abort(404)
    require_newsletter(edition.newsletter.slug)
    return edition


def _pick_page(edition, form: PickItemsForm, status: int = 200):
    return render_template(
        "feeds/pick.html", edition=edition, form=form, days=PICK_DAYS, items=form.feed_items
    ), status


def _pick_form(formdata=None) -> PickItemsForm:
    kwargs = {} if formdata is not False else {"formdata": None}
    form = PickItemsForm(**kwargs)
    form.feed_items = services.recent_items(days=PICK_DAYS)
    form.items.choices = [(item.id, item.title or item.link) for item in form.feed_items]
    return form


@bp.get("/editions/<int:edition_id>/feed-items")
@editor_required
def pick_items(edition_id: int):
    edition = _edition_or_404(edition_id)
    if not edition.editable:
        return redirect(url_for("editor.edit", edition_id=edition.id))
    return _pick_page(edition, _pick_form(False))


@bp.post("/editions/<int:edition_id>/feed-items")
@editor_required
def add_picked_items(edition_id: int):
    edition = _edition_or_404(edition_id)
    form = _pick_form()
    if not form.validate():
        return _pick_page(edition, form, 422)
    # In the order of the list on the page (newest first), whatever order the browser sent.
    chosen = set(form.items.data)
    ordered = [item.id for item in form.feed_items if item.id in chosen]
    try:
        added = services.pick_items_into_edition(
            edition.id, ordered, actor=events.Actor.of_request()
        )
    except NotEditable:
        return redirect(url_for("editor.edit", edition_id=edition.id))
    except EditionError:
        abort(404)
    flash(
        _("%(count)s item(s) from the feeds have been added to the edition.", count=added),
        "success",
    )
    return redirect(url_for("editor.edit", edition_id=edition.id), code=303)
