"""Public pages: subscribe, confirm, manage, unsubscribe. GET shows, POST acts."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from newsletters.busy import retry_when_busy
from newsletters.catalog.services import public_newsletter_choices, public_newsletters
from newsletters.extensions import csrf, limiter
from newsletters.i18n import current_locale
from newsletters.subscriptions import erasure, export, intake, links, preferences
from newsletters.subscriptions.consent import RequestContext, consent_text
from newsletters.subscriptions.forms import (
    ButtonForm,
    DeleteForm,
    EmailForm,
    PreferencesForm,
    SubscribeForm,
)
from newsletters.subscriptions.models import SubscriptionStatus
from newsletters.tokens import TokenError

bp = Blueprint("subscriptions", __name__)


def _ctx(method: str = "web_form") -> RequestContext:
    return RequestContext(
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        locale=current_locale(),
        method=method,
    )


def _subscribe_limit() -> str:
    return current_app.config["RATELIMIT_SUBSCRIBE"]


def _link_limit() -> str:
    return current_app.config["RATELIMIT_LINK_REQUEST"]


def _link_error(error: TokenError, *, purpose: str, token: str | None = None):
    """A clear page for a tampered, expired or revoked link; expired ones offer a new link."""
    status = 410 if error.expired else 400
    return (
        render_template(
            "subscriptions/link_error.html",
            error=error,
            purpose=purpose,
            token=token if error.expired else None,
            form=ButtonForm(),
        ),
        status,
    )


def _newsletter_choices(newsletters) -> list[tuple[str, str]]:
    return [(n.slug, n.name) for n in newsletters]


# --------------------------------------------------------------------------- subscribe


@bp.get("/")
def index():
    newsletters = public_newsletters()
    form = SubscribeForm(newsletter_choices=_newsletter_choices(newsletters))
    if not form.newsletters.data:
        # A link like /?newsletters=momentum preselects a newsletter.
        form.newsletters.data = request.args.getlist("newsletters")
    return _render_index(form, newsletters)


def _render_index(form: SubscribeForm, newsletters, status: int = 200):
    return (
        render_template(
            "subscriptions/index.html",
            form=form,
            newsletters=newsletters,
            consent_text=consent_text(current_locale()),
        ),
        status,
    )


@bp.post("/")
@limiter.limit(_subscribe_limit, methods=["POST"])
@retry_when_busy
def subscribe():
    # The hot path under load: cached choices, one INSERT (see accept_subscribe_request).
    form = SubscribeForm(newsletter_choices=public_newsletter_choices())
    if not form.validate():
        return _render_index(form, public_newsletters(), status=422)
    if form.website.data:
        # A bot filled in the honeypot: answer as if all went well, do nothing.
        return redirect(url_for(".subscribed"), code=303)
    intake.accept_subscribe_request(
        email=form.email.data,
        slugs=form.newsletters.data,
        name=form.name.data or "",
        municipality=form.municipality.data or "",
        ctx=_ctx("web_form"),
    )
    return redirect(url_for(".subscribed"), code=303)


@bp.get("/subscribed")
def subscribed():
    return render_template("subscriptions/subscribed.html")


# --------------------------------------------------------------------------- confirm


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    try:
        offer = intake.inspect_confirm(token)
    except TokenError as error:
        return _link_error(error, purpose="confirm", token=token)
    return render_template("subscriptions/confirm.html", offer=offer, form=ButtonForm())


@bp.post("/confirm/<token>")
@retry_when_busy
def confirm(token: str):
    form = ButtonForm()
    if not form.validate():
        return redirect(url_for(".confirm_page", token=token), code=303)
    try:
        outcome = intake.confirm(token, ctx=_ctx())
    except TokenError as error:
        return _link_error(error, purpose="confirm", token=token)
    return render_template(
        "subscriptions/confirmed.html",
        outcome=outcome,
        # The person just proved they read the address's mail: the signed link, so
        # the preference centre opens without asking for a link by mail.
        manage_url=links.manage_url(outcome.subscriber),
    )


@bp.post("/confirm/<token>/resend")
@limiter.limit(_link_limit, methods=["POST"])
def confirm_resend(token: str):
    if not ButtonForm().validate():
        return redirect(url_for(".confirm_page", token=token), code=303)
    try:
        intake.resend_confirmation(token)
    except TokenError as error:
        return _link_error(error, purpose="confirm")
    return redirect(url_for(".link_sent"), code=303)


# --------------------------------------------------------------------------- join


@bp.get("/join/<token>")
def join_page(token: str):
    try:
        offer = intake.inspect_join(token)
    except TokenError as error:
        return _link_error(error, purpose="join")
    return render_template("subscriptions/join.html", offer=offer, form=ButtonForm())


@bp.post("/join/<token>")
@retry_when_busy
def join(token: str):
    if not ButtonForm().validate():
        return redirect(url_for(".join_page", token=token), code=303)
    try:
        offer = intake.join(token, ctx=_ctx("welcome-link"))
    except TokenError as error:
        return _link_error(error, purpose="join")
    return render_template("subscriptions/joined.html", offer=offer)


# --------------------------------------------------------------------------- manage


@bp.get("/link-sent")
def link_sent():
    # After POST-redirect-GET: reloading this page sends nothing again.
    return render_template("subscriptions/link_sent.html")


@bp.route("/manage", methods=["GET", "POST"])
@limiter.limit(_link_limit, methods=["POST"])
def manage_request():
    form = EmailForm()
    if request.method == "POST":
        if form.validate():
            preferences.request_manage_link(form.email.data, locale=current_locale())
            return redirect(url_for(".link_sent"), code=303)
        return render_template("subscriptions/manage_request.html", form=form), 422
    return render_template("subscriptions/manage_request.html", form=form)


def _manage_form(subscriber, newsletters, formdata=None) -> PreferencesForm:
    confirmed = [
        s.newsletter.slug
        for s in subscriber.subscriptions
        if s.status == SubscriptionStatus.CONFIRMED
    ]
    form = PreferencesForm(
        formdata=formdata,
        newsletter_choices=_newsletter_choices(newsletters),
        data={
            "newsletters": confirmed,
            "name": subscriber.name,
            "municipality": subscriber.municipality,
        },
    )
    return form


def _manageable_newsletters(subscriber):
    """Public newsletters plus any the subscriber has that the form no longer offers."""
    newsletters = public_newsletters()
    known = {n.id for n in newsletters}
    newsletters += [
        s.newsletter
        for s in subscriber.subscriptions
        if s.newsletter_id not in known and s.status == SubscriptionStatus.CONFIRMED
    ]
    return newsletters


@bp.get("/manage/<token>")
def manage(token: str):
    try:
        subscriber = preferences.subscriber_for_manage(token)
    except TokenError as error:
        return _link_error(error, purpose="manage", token=token)
    newsletters = _manageable_newsletters(subscriber)
    return render_template(
        "subscriptions/manage.html",
        subscriber=subscriber,
        newsletters=newsletters,
        form=_manage_form(subscriber, newsletters, formdata=None),
        button=ButtonForm(),
        token=token,
    )


@bp.post("/manage/<token>")
@retry_when_busy
def manage_save(token: str):
    try:
        subscriber = preferences.subscriber_for_manage(token)
    except TokenError as error:
        return _link_error(error, purpose="manage", token=token)
    newsletters = _manageable_newsletters(subscriber)
    form = _manage_form(subscriber, newsletters, formdata=request.form)
    if not form.validate():
        return (
            render_template(
                "subscriptions/manage.html",
                subscriber=subscriber,
                newsletters=newsletters,
                form=form,
                button=ButtonForm(),
                token=token,
            ),
            422,
        )
    preferences.update_preferences(
        subscriber.id,
        slugs=form.newsletters.data or [],
        name=form.name.data or "",
        municipality=form.municipality.data or "",
        ctx=_ctx("preference_centre"),
    )
    flash(_("Your choices have been saved."), "success")
    return redirect(url_for(".manage", token=token), code=303)


@bp.post("/manage/<token>/unsubscribe-all")
@retry_when_busy
def manage_unsubscribe_all(token: str):
    try:
        subscriber = preferences.subscriber_for_manage(token)
    except TokenError as error:
        return _link_error(error, purpose="manage", token=token)
    if not ButtonForm().validate():
        return redirect(url_for(".manage", token=token), code=303)
    outcome = preferences.unsubscribe_subscriber(
        subscriber.id, newsletter_ids=None, ctx=_ctx("preference_centre")
    )
    return render_template("subscriptions/unsubscribed.html", outcome=outcome, token=token)


@bp.get("/manage/<token>/data.json")
def manage_export(token: str):
    try:
        subscriber = preferences.subscriber_for_manage(token)
    except TokenError as error:
        return _link_error(error, purpose="manage", token=token)
    body = json.dumps(export.export_data(subscriber.id), ensure_ascii=False, indent=2)
    return Response(
        body,
        mimetype="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="mine-data-kl-nyhedsbreve.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/manage/<token>/delete", methods=["GET", "POST"])
@retry_when_busy
def manage_delete(token: str):
    try:
        subscriber = preferences.subscriber_for_manage(token)
    except TokenError as error:
        return _link_error(error, purpose="manage", token=token)
    form = DeleteForm()
    if request.method == "POST":
        if form.validate():
            erasure.erase(subscriber.id, never_again=bool(form.never_again.data))
            return render_template("subscriptions/deleted.html")
        return (
            render_template(
                "subscriptions/delete.html", form=form, token=token, subscriber=subscriber
            ),
            422,
        )
    return render_template(
        "subscriptions/delete.html", form=form, token=token, subscriber=subscriber
    )


@bp.post("/manage/<token>/resend")
@limiter.limit(_link_limit, methods=["POST"])
def manage_resend(token: str):
    if not ButtonForm().validate():
        return redirect(url_for(".manage_request"), code=303)
    try:
        preferences.resend_manage_link(token)
    except TokenError as error:
        return _link_error(error, purpose="manage")
    return redirect(url_for(".link_sent"), code=303)


# --------------------------------------------------------------------------- unsubscribe


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    try:
        subscriber, newsletters = preferences.inspect_unsubscribe(token)
    except TokenError as error:
        return _link_error(error, purpose="unsubscribe")
    return render_template(
        "subscriptions/unsubscribe.html",
        subscriber=subscriber,
        newsletters=newsletters,
        token=token,
    )


@bp.post("/unsubscribe/<token>")
@csrf.exempt
@retry_when_busy
def unsubscribe(token: str):
    """The button on the page and RFC 8058 one-click (List-Unsubscribe=One-Click).

    No CSRF token, no cookies, no redirect: mail providers POST here without a session,
    and the signed token is the authorisation. Urlencoded and multipart both work.
    """
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    try:
        outcome = preferences.unsubscribe(
            token, ctx=_ctx("one_click" if one_click else "unsubscribe_page")
        )
    except TokenError as error:
        return _link_error(error, purpose="unsubscribe")
    return render_template("subscriptions/unsubscribed.html", outcome=outcome, token=None)
