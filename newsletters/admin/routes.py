"""The administrators' pages: subscribers (search, history, data export, erasure),
import and export, the suppression list and the audit log.

Administrators only: these pages show and change personal data, which editors do not
need. GET shows, POST acts (downloads that are audited are POSTs too).
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_template,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events, labels
from newsletters.admin import services, welcome
from newsletters.admin.forms import EraseForm, ImportForm, SuppressForm, WelcomeLetterForm
from newsletters.audit import services as audit
from newsletters.audit.web import actor
from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import BOARD_NEWSLETTER, newsletter_by_slug
from newsletters.extensions import db, limiter
from newsletters.inputs import clamp_day, larger_body, page_number
from newsletters.mailing.addresses import InvalidAddress
from newsletters.spreadsheet import for_excel
from newsletters.staff.access import admin_required
from newsletters.subscriptions import erasure, export, suppression
from newsletters.subscriptions.consent import RequestContext
from newsletters.subscriptions.forms import ButtonForm
from newsletters.subscriptions.importing import (
    ImportProgress,
    ImportRefused,
    Reason,
    announce_export,
    export_confirmed,
    import_steps,
)

bp = Blueprint("admin", __name__, url_prefix="/staff")


def _status_labels() -> dict[str, str]:
    return {code: str(text) for code, text in labels.SUBSCRIPTION_STATUS.items()}


def _reason_labels() -> dict[str, str]:
    return {code: str(text) for code, text in labels.SUPPRESSION_REASON.items()}


@bp.context_processor
def _admin_context() -> dict:
    return {
        "subscription_status_labels": _status_labels(),
        "reason_labels": _reason_labels(),
    }


def _newsletters() -> list[Newsletter]:
    return list(db.session.scalars(db.select(Newsletter).order_by(Newsletter.position)))


def _ctx(method: str) -> RequestContext:
    return RequestContext(
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        locale="da",
        method=method,
    )


# --------------------------------------------------------------------------- subscribers


@bp.get("/subscribers")
@admin_required
def subscribers():
    args = request.args
    status = args.get("status", "")
    if status and status not in _status_labels():
        status = ""
    filters = services.SubscriberFilter(
        query=args.get("q", "").strip()[:320],
        newsletter=args.get("newsletter", ""),
        status=status,
        municipality=args.get("municipality", ""),
        role=args.get("role", ""),
    )
    after = args.get("after") or None
    page = services.search(
        filters, after=after, per_page=int(current_app.config["STAFF_PAGE_SIZE"])
    )
    municipalities, roles = services.filter_choices()
    query = {k: v for k, v in args.items() if k != "after" and v}
    return render_template(
        "admin/subscribers.html",
        page=page,
        filters=filters,
        newsletters=_newsletters(),
        municipalities=municipalities,
        roles=roles,
        next_url=url_for(".subscribers", **query, after=page.next_after)
        if page.next_after
        else None,
        first_url=url_for(".subscribers", **query) if after else None,
    )


def _history_or_404(subscriber_id: int) -> services.History:
    history = services.history(subscriber_id)
    if history is None:
        abort(404)
    return history


@bp.get("/subscribers/<int:subscriber_id>")
@admin_required
def subscriber(subscriber_id: int):
    return render_template(
        "admin/subscriber.html",
        history=_history_or_404(subscriber_id),
    )


@bp.post("/subscribers/<int:subscriber_id>/data.json")
@admin_required
def subscriber_export(subscriber_id: int):
    if not ButtonForm().validate():
        abort(400)
    _history_or_404(subscriber_id)
    data = export.export_data(subscriber_id, actor=events.Actor.of_request())
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="subscriber-{subscriber_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/subscribers/<int:subscriber_id>/erase", methods=["GET", "POST"])
@admin_required
def subscriber_erase(subscriber_id: int):
    history = _history_or_404(subscriber_id)
    form = EraseForm()
    if request.method == "POST":
        if form.validate():
            staff_id, ip = actor()
            erasure.erase(
                subscriber_id,
                never_again=bool(form.never_again.data),
                by_staff_id=staff_id,
                ip=ip,
            )
            flash(_("The subscriber and all data about them have been deleted."), "success")
            return redirect(url_for(".subscribers"), code=303)
        return render_template("admin/erase.html", history=history, form=form), 422
    return render_template("admin/erase.html", history=history, form=form)


# --------------------------------------------------------------------------- import, export


def _import_form() -> ImportForm:
    form = ImportForm()
    form.newsletter.choices = [(n.slug, n.name) for n in _newsletters()]
    return form


@bp.route("/subscribers/import", methods=["GET", "POST"])
@larger_body("IMPORT_MAX_CONTENT_LENGTH")
@admin_required
def subscribers_import():
    form = _import_form()
    if request.method == "GET":
        form.newsletter.data = request.args.get("newsletter") or BOARD_NEWSLETTER
        return render_template("admin/import.html", form=form, report=None, problems=None)
    if not form.validate():
        return render_template("admin/import.html", form=form, report=None, problems=None), 422
    upload = form.file.data
    enrol = form.mode.data == "enrol"
    staff_id, _ip = actor()
    steps = import_steps(
        upload.stream,
        newsletter_slug=form.newsletter.data,
        basis=form.basis.data.strip() if enrol else None,
        welcome=bool(form.welcome.data) and enrol,
        dry_run=bool(form.dry_run.data),
        ctx=_ctx("import_basis" if enrol else "import_invite"),
        actor_id=staff_id,
        file_name=upload.filename or "",
    )
    try:
        # The whole file is checked here, before anything is written or sent: a bad
        # file is refused whole with a 422, as before.
        _done, total = next(steps)
    except ImportRefused as refused:
        problems = [
            (line, reason.localized() if isinstance(reason, Reason) else reason)
            for line, reason in refused.problems
        ]
        return render_template("admin/import.html", form=form, report=None, problems=problems), 422
    # The writing is streamed: the page shows each chunk as it is done, so a large file
    # shows its progress (no job, no polling: it works with any worker setting). The
    # page is rendered after this request's session has ended (stream_with_context):
    # the signed-in account's columns are loaded again now, for the page's header.
    db.session.refresh(current_user._get_current_object())
    return Response(
        stream_with_context(
            stream_template(
                "admin/import_running.html",
                form=form,
                progress=ImportProgress(steps),
                total=total,
                dry_run=bool(form.dry_run.data),
                newsletter=form.newsletter.data,
            )
        ),
        mimetype="text/html",
        # A proxy in front (nginx buffers responses by default) must pass each line on
        # as it comes, or the progress shows only at the end.
        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"},
    )


@bp.get("/subscribers/export")
@admin_required
def subscribers_export_page():
    return render_template("admin/export.html", newsletters=_newsletters())


@bp.post("/subscribers/export")
@admin_required
def subscribers_export():
    if not ButtonForm().validate():
        abort(400)
    slug = request.form.get("newsletter", "")
    if newsletter_by_slug(slug) is None:
        abort(404)
    announce_export(slug, actor=events.Actor.of_request())
    stamp = datetime.now().strftime("%Y-%m-%d")
    return Response(
        stream_with_context(for_excel(export_confirmed(slug))),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{slug}-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


# --------------------------------------------------------------------------- suppressions


@bp.route("/suppressions", methods=["GET", "POST"])
@admin_required
def suppressions():
    form = SuppressForm()
    if request.method == "POST":
        if form.validate():
            staff_id, ip = actor()
            try:
                suppression.add_manual(
                    form.email.data, note=form.note.data or "", by_staff_id=staff_id, ip=ip
                )
            except InvalidAddress:
                form.email.errors.append(
                    _("Enter a valid email address, for example navn@kommune.dk.")
                )
            else:
                flash(
                    _("The address is on the suppression list: no more mail goes to it."), "success"
                )
                return redirect(url_for(".suppressions"), code=303)
        return _suppressions_page(form, 422)
    return _suppressions_page(SuppressForm(formdata=None))


def _suppressions_page(form: SuppressForm, status: int = 200):
    reason = request.args.get("reason", "")
    if reason not in _reason_labels():
        reason = ""
    page = suppression.search(
        query=request.args.get("q", "")[:320],
        reason=reason,
        page=page_number(request.args.get("page")),
        per_page=int(current_app.config["STAFF_PAGE_SIZE"]),
    )
    return render_template(
        "admin/suppressions.html",
        page=page,
        query=request.args.get("q", ""),
        reason=reason,
        form=form,
        page_url=lambda n: url_for(
            ".suppressions", q=request.args.get("q", ""), reason=reason, page=n
        ),
    ), status


@bp.post("/suppressions/<int:suppression_id>/lift")
@admin_required
def suppression_lift(suppression_id: int):
    if not ButtonForm().validate():
        abort(400)
    staff_id, ip = actor()
    try:
        suppression.lift(suppression_id, by_staff_id=staff_id, ip=ip)
    except suppression.SuppressionNotFound:
        flash(_("That entry is no longer on the list."), "info")
    else:
        flash(_("The entry has been lifted: mail may go to the address again."), "success")
    return redirect(url_for(".suppressions"), code=303)


# --------------------------------------------------------------------------- audit log


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        day = clamp_day(datetime.strptime(value, "%Y-%m-%d").date())
        return datetime.combine(day, time.min)
    except ValueError:
        return None


@bp.get("/audit")
@admin_required
def audit_log():
    args = request.args
    since = _day(args.get("from"))
    until = _day(args.get("to"))
    # The dates an administrator types are Danish days, not UTC ones.
    zone = ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])
    page = audit.search(
        action=args.get("action", ""),
        actor=args.get("actor", "")[:320],
        target=args.get("target", "")[:200],
        since=since.replace(tzinfo=zone) if since else None,
        until=(until + timedelta(days=1)).replace(tzinfo=zone) if until else None,
        page=page_number(args.get("page")),
        per_page=int(current_app.config["STAFF_PAGE_SIZE"]),
    )
    query = {k: v for k, v in args.items() if k != "page" and v}
    return render_template(
        "admin/audit.html",
        page=page,
        args=args,
        details_of=audit.details_of,
        page_url=lambda n: url_for(".audit_log", **query, page=n),
    )


# --------------------------------------------------------------------------- welcome letter


def _welcome_page(slug: str, form: WelcomeLetterForm | None = None, status: int = 200):
    try:
        current = welcome.state(slug)
    except welcome.WelcomeLetterError:
        abort(404)
    if form is None:
        form = WelcomeLetterForm(
            formdata=None, data={"subject": current.subject, "body": current.body_markdown}
        )
    return render_template("admin/welcome_letter.html", state=current, form=form), status


@bp.route("/newsletters/<slug>/welcome-letter", methods=["GET", "POST"])
@admin_required
def welcome_letter(slug: str):
    if request.method == "GET":
        return _welcome_page(slug)
    form = WelcomeLetterForm()
    if not form.validate():
        return _welcome_page(slug, form, 422)
    staff_id, ip = actor()
    try:
        welcome.save(
            slug,
            subject=form.subject.data,
            body_markdown=form.body.data,
            by_staff_id=staff_id,
            ip=ip,
        )
    except welcome.WelcomeLetterError:
        abort(404)
    flash(_("The welcome letter has been saved."), "success")
    return redirect(url_for(".welcome_letter", slug=slug), code=303)


def _welcome_limit() -> str:
    return current_app.config["RATELIMIT_WELCOME_LETTER"]


def _welcome_key() -> str:
    """Each administrator has their own allowance, wherever they post from."""
    who = current_user.id if current_user.is_authenticated else request.remote_addr
    return f"welcome-letter:{who}"


def _welcome_was_sent(response) -> bool:
    return response.status_code == 303


@bp.post("/newsletters/<slug>/welcome-letter/send")
@admin_required
@limiter.limit(_welcome_limit, key_func=_welcome_key, deduct_when=_welcome_was_sent)
def welcome_letter_send(slug: str):
    if not ButtonForm().validate():
        abort(400)
    staff_id, ip = actor()
    try:
        count = welcome.send(slug, by_staff_id=staff_id, ip=ip)
    except welcome.WelcomeLetterError:
        if newsletter_by_slug(slug) is None:
            abort(404)
        flash(_("Save the letter before you send it."), "error")
        return redirect(url_for(".welcome_letter", slug=slug), code=303)
    flash(
        _("The welcome letter is on its way to %(count)s person(s).", count=count),
        "success",
    )
    return redirect(url_for(".welcome_letter", slug=slug), code=303)
