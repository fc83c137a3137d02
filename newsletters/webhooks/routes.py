"""The administrators' page of outgoing webhooks: endpoints and their state, add,
remove, enable again, and the latest deliveries. GET shows, POST acts."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from newsletters import events
from newsletters.staff.access import admin_required
from newsletters.subscriptions.forms import ButtonForm
from newsletters.webhooks import services
from newsletters.webhooks.forms import WebhookForm

bp = Blueprint("webhooks", __name__, url_prefix="/staff/webhooks")


def _page(form: WebhookForm, status: int = 200, secret: str | None = None, added=None):
    response = render_template(
        "webhooks/index.html",
        endpoints=services.list_endpoints(),
        deliveries=services.recent_deliveries(50),
        form=form,
        secret=secret,
        added=added,
    )
    return response, status


@bp.get("/")
@admin_required
def index():
    return _page(WebhookForm(formdata=None))


@bp.post("/")
@admin_required
def add():
    form = WebhookForm()
    if not form.validate():
        return _page(form, 422)
    try:
        endpoint, secret = services.add_endpoint(
            form.url.data or "", form.events.data or [], actor=events.Actor.of_request()
        )
    except services.WebhookError as error:
        target = form.events if error.field == "events" else form.url
        target.errors = [*target.errors, str(error)]
        return _page(form, 422)
    # The secret is shown on this answer only (never stored in a flash or a redirect).
    return _page(WebhookForm(formdata=None), secret=secret, added=endpoint)


@bp.post("/<int:endpoint_id>/remove")
@admin_required
def remove(endpoint_id: int):
    if not ButtonForm().validate():
        abort(400)
    if services.remove_endpoint(endpoint_id, actor=events.Actor.of_request()):
        flash(_("The webhook has been removed: its waiting events are not sent."), "success")
    else:
        flash(_("That webhook no longer exists."), "info")
    return redirect(url_for(".index"), code=303)


@bp.post("/<int:endpoint_id>/enable")
@admin_required
def enable(endpoint_id: int):
    if not ButtonForm().validate():
        abort(400)
    if services.enable_endpoint(endpoint_id, actor=events.Actor.of_request()):
        flash(_("The webhook is enabled again: its waiting events are sent now."), "success")
    else:
        flash(_("That webhook no longer exists."), "info")
    return redirect(url_for(".index"), code=303)
