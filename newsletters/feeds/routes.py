"""The staff pages of feeds: a newsletter's feeds and their health, the digest's
settings (administrators), making a digest now and picking feed items into an edition
(editors). Thin views over `services` and `digests`; GET shows, POST acts."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import editing
from newsletters.editions.states import EditionError, NotEditable
from newsletters.feeds import digests, services
from newsletters.feeds.forms import (
    CADENCE_LABELS,
    MODE_LABELS,
    REFUSED_ADDRESS_MESSAGE,
    SKIP_REASON_LABELS,
    DigestSettingsForm,
    FeedForm,
    PickItemsForm,
)
from newsletters.feeds.services import FeedError
from newsletters.staff.access import admin_required, editor_required, require_newsletter
from newsletters.timeutil import utcnow

bp = Blueprint("feeds", __name__, url_prefix="/staff")

# How far back the picker of an edition looks.
PICK_DAYS = 14


@bp.app_context_processor
def _feeds_context() -> dict:
    # App-wide: the editions' pages show a newsletter's digest settings too.
    return {"mode_labels": MODE_LABELS, "cadence_labels": CADENCE_LABELS}


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
    status: int = 200,
):
    if settings_form is None:
        settings_form = DigestSettingsForm(
            formdata=None,
            data={
                "mode": newsletter.digest_mode.value,
                "cadence": newsletter.digest_cadence.value,
                "hour": newsletter.digest_hour,
            },
        )
    now = utcnow()
    next_slot = digests.next_slot(newsletter, now)
    return render_template(
        "feeds/feeds.html",
        newsletter=newsletter,
        health=services.feed_health(newsletter.id),
        feed_form=feed_form or FeedForm(formdata=None),
        settings_form=settings_form,
        next_slot=next_slot,
        slot_open=next_slot is not None and next_slot.at <= now,
        awaited=digests.feeds_awaited(newsletter.id, next_slot) if next_slot else 0,
        skipped=digests.skipped_slots(newsletter.id),
        skip_reasons=SKIP_REASON_LABELS,
        catch_up_minutes=int(digests.catch_up_window().total_seconds() // 60),
    ), status


@bp.get("/newsletters/<slug>/feeds")
@admin_required
def feeds(slug: str):
    return _feeds_page(_newsletter_or_404(slug))


@bp.post("/newsletters/<slug>/feeds")
@admin_required
def add_feed(slug: str):
    newsletter = _newsletter_or_404(slug)
    form = FeedForm()
    if not form.validate():
        return _feeds_page(newsletter, feed_form=form, status=422)
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
        by_staff_id=current_user.id,
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
    [outcome] = services.fetch_feeds([feed.id], actor=events.Actor.of_request())
    if outcome.disabled:
        flash(_("The publisher has removed the feed (410 Gone); it has been disabled."), "error")
    elif outcome.error:
        flash(_("The feed could not be fetched: %(error)s", error=outcome.error), "error")
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
        by_staff_id=current_user.id,
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
    url = services.remove_feed(
        feed_id, by_staff_id=current_user.id, actor=events.Actor.of_request()
    )
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


# --------------------------------------------------------------------------- picker


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
    edition = editing.get_edition(edition_id)
    if edition is None:
        abort(404)
    require_newsletter(edition.newsletter.slug)
    if not edition.editable:
        return redirect(url_for("editor.edit", edition_id=edition.id))
    return _pick_page(edition, _pick_form(False))


@bp.post("/editions/<int:edition_id>/feed-items")
@editor_required
def add_picked_items(edition_id: int):
    edition = editing.get_edition(edition_id)
    if edition is None:
        abort(404)
    require_newsletter(edition.newsletter.slug)
    form = _pick_form()
    if not form.validate():
        return _pick_page(edition, form, 422)
    # In the order of the list on the page (newest first), whatever order the browser sent.
    chosen = set(form.items.data)
    ordered = [item.id for item in form.feed_items if item.id in chosen]
    try:
        added = services.pick_items_into_edition(
            edition.id, ordered, by_staff_id=current_user.id, actor=events.Actor.of_request()
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
