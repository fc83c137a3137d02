"""The administrators' page of API tokens: make one (shown once), see them, revoke one."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.api import tokens
from newsletters.api.forms import TokenForm
from newsletters.staff.access import admin_required
from newsletters.subscriptions.forms import ButtonForm

bp = Blueprint("api_staff", __name__, url_prefix="/staff/api-tokens")


def _page(form: TokenForm, *, status: int = 200, new_token: str | None = None):
    return (
        render_template(
            "api/tokens.html", form=form, tokens=tokens.list_tokens(), new_token=new_token
        ),
        status,
    )


@bp.get("/")
@admin_required
def index():
    return _page(TokenForm(formdata=None))


@bp.post("/")
@admin_required
def create():
    form = TokenForm()
    if not form.validate():
        return _page(form, status=422)
    try:
        _token, plain = tokens.create_token(
            form.name.data,
            form.scopes.data,
            actor=events.Actor.of_request(),
            created_by=current_user.email,
        )
    except tokens.TokenRefused:
        form.name.errors.append(_("There is already a token with that name; names stay taken."))
        return _page(form, status=422)
    # Shown in this answer only (never flashed: the session cookie would carry it).
    return _page(TokenForm(formdata=None), new_token=plain)


@bp.post("/<int:token_id>/revoke")
@admin_required
def revoke(token_id: int):
    if not ButtonForm().validate():
        abort(400)
    token = next((t for t in tokens.list_tokens() if t.id == token_id), None)
    if token is None:
        abort(404)
    try:
        tokens.revoke(token.name, actor=events.Actor.of_request())
    except tokens.TokenRefused:
        flash(_("That token was revoked already."), "info")
    else:
        flash(_("The token is revoked: it no longer opens the API."), "success")
    return redirect(url_for(".index"), code=303)
