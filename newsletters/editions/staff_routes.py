"""The editors' pages: a newsletter's editions, compose, preview, test, send, progress.

Thin views over `editing` (drafts, tests) and `lifecycle` (starting and controlling a
send); the services announce each change for the audit log. GET shows, POST acts;
every POST carries the CSRF token.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_decimal, format_number
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import editing, lifecycle, segments, states
from newsletters.editions.editing import BadTestAddresses
from newsletters.editions.forms import (
    EMPTY_ITEM_ROWS,
    MAX_ITEM_ROWS,
    STATUS_LABELS,
    EditionForm,
    ScheduleForm,
    SegmentForm,
    TestSendForm,
)
from newsletters.editions.models import Edition, EditionStatus
from newsletters.editions.states import Action, EditionError, NotEditable
from newsletters.extensions import limiter
from newsletters.inputs import page_number
from newsletters.staff.access import editor_required, require_newsletter

bp = Blueprint("editor", __name__, url_prefix="/staff")

# The mail's own HTML, shown as it is: no scripts may run, whatever it contains.
PREVIEW_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@bp.context_processor
def _editor_context() -> dict:
    return {
        "status_labels": STATUS_LABELS,
        "EditionStatus": EditionStatus,
        "IN_PROGRESS": states.IN_PROGRESS,
        # Which buttons an edition gets: what its state allows (`can(edition, "pause")`).
        "can": lambda edition, action: states.allowed(edition.status, Action(action)),
    }


def _edition_or_404(edition_id: int) -> Edition:
    edition = editing.get_edition(edition_id)
    if edition is None:
        abort(404)
    require_newsletter(edition.newsletter.slug)
    return edition


def _conflict(edition: Edition, message: str):
    """The Danish page for an action the edition's state does not allow (409)."""
    return render_template("editions/conflict.html", edition=edition, message=message), 409


def _not_editable(edition: Edition):
    return _conflict(
        edition,
        _(
            "This edition can no longer be changed: it is %(status)s. Only drafts and "
            "scheduled editions can be edited.",
            status=STATUS_LABELS[edition.status].lower(),
        ),
    )


# --------------------------------------------------------------------------- lists


@bp.get("/newsletters/<slug>")
@editor_required
def newsletter(slug: str):
    require_newsletter(slug)
    page = page_number(request.args.get("page"))
    editions = editing.newsletter_editions(slug, page=page)
    if editions is None:
        abort(404)
    return render_template("editions/newsletter.html", editions=editions)


# --------------------------------------------------------------------------- compose


def _compose(form: EditionForm, newsletter, edition: Edition | None, status: int = 200):
    return render_template(
        "editions/compose.html",
        form=form,
        newsletter=newsletter,
        edition=edition,
        # Kept for any edition that has them (the CLI sets a meeting date for any newsletter).
        with_items=editing.has_items(newsletter.slug)
        or bool(edition and (edition.items or edition.meeting_date)),
    ), status


def _after_save(edition: Edition, form: EditionForm):
    flash(_("The edition has been saved."), "success")
    if request.form.get("action") == "more-items":
        # Back to the form with the items and more empty rows than before. (Enter in a
        # field of a board edition presses this, the form's first button: also a save.)
        extra = min(form.empty_rows() + EMPTY_ITEM_ROWS, MAX_ITEM_ROWS)
        return redirect(url_for(".edit", edition_id=edition.id, rows=extra), code=303)
    return redirect(url_for(".edition", edition_id=edition.id), code=303)


@bp.route("/newsletters/<slug>/editions/new", methods=["GET", "POST"])
@editor_required
def new_edition(slug: str):
    require_newsletter(slug)
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        abort(404)
    form = EditionForm()
    if request.method == "GET":
        form.add_empty_rows()
        return _compose(form, newsletter, None)
    if not form.validate():
        return _compose(form, newsletter, None, 422)
    try:
        edition = editing.create_draft(
            newsletter_slug=newsletter.slug,
            subject=form.subject.data,
            preheader=form.preheader.data or "",
            body_markdown=form.body.data or "",
            meeting_date=form.meeting_date.data,
            items=form.item_inputs(),
            created_by=current_user.email,
            actor=events.Actor.of_request(),
        )
    except EditionError:
        # The form checks what the service checks; this is a last line of defence.
        form.subject.errors.append(_("The edition could not be saved. Check the fields."))
        return _compose(form, newsletter, None, 422)
    return _after_save(edition, form)


@bp.route("/editions/<int:edition_id>/edit", methods=["GET", "POST"])
@editor_required
def edit(edition_id: int):
    edition = _edition_or_404(edition_id)
    if not edition.editable:
        return _not_editable(edition)
    if request.method == "GET":
        rows = request.args.get("rows", EMPTY_ITEM_ROWS, type=int)
        form = EditionForm(data=EditionForm.data_for(edition, rows if rows else EMPTY_ITEM_ROWS))
        return _compose(form, edition.newsletter, edition)
    form = EditionForm()
    if not form.validate():
        return _compose(form, edition.newsletter, edition, 422)
    try:
        editing.update_draft(
            edition.id,
            subject=form.subject.data,
            preheader=form.preheader.data or "",
            body_markdown=form.body.data or "",
            meeting_date=form.meeting_date.data,
            items=form.item_inputs(),
            actor=events.Actor.of_request(),
        )
    except NotEditable:
        # Started (or scheduled and started by the worker) while the form was open.
        return _not_editable(_edition_or_404(edition_id))
    except EditionError:
        form.subject.errors.append(_("The edition could not be saved. Check the fields."))
        return _compose(form, edition.newsletter, edition, 422)
    return _after_save(edition, form)


# --------------------------------------------------------------------------- the edition


def _edition_page(edition: Edition, test_form: TestSendForm | None = None, status: int = 200):
    progress = None
    if edition.status not in states.OPEN:
        progress = lifecycle.progress(edition.id)
    return render_template(
        "editions/edition.html",
        edition=edition,
        progress=progress,
        published=edition.status in states.PUBLISHED,
        test_form=test_form or TestSendForm(formdata=None),
    ), status


@bp.get("/editions/<int:edition_id>")
@editor_required
def edition(edition_id: int):
    return _edition_page(_edition_or_404(edition_id))


@bp.get("/editions/<int:edition_id>/preview")
@editor_required
def preview(edition_id: int):
    edition = _edition_or_404(edition_id)
    return render_template(
        "editions/preview.html", edition=edition, rendered=editing.preview(edition.id)
    )


@bp.get("/editions/<int:edition_id>/preview.html")
@editor_required
def preview_html(edition_id: int):
    edition = _edition_or_404(edition_id)
    response = Response(editing.preview(edition.id).html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response


# --------------------------------------------------------------------------- test send


def _test_send_limit() -> str:
    return current_app.config["RATELIMIT_TEST_SEND"]


def _test_send_key() -> str:
    """Each editor has their own allowance, wherever they post from."""
    if current_user.is_authenticated:
        return f"test-send:{current_user.id}"
    return f"test-send:ip:{request.remote_addr}"


def _test_was_sent(response) -> bool:
    return response.status_code == 303


@bp.post("/editions/<int:edition_id>/test")
@editor_required
@limiter.limit(_test_send_limit, key_func=_test_send_key, deduct_when=_test_was_sent)
def test_send(edition_id: int):
    edition = _edition_or_404(edition_id)
    form = TestSendForm()
    if form.validate():
        try:
            addresses = editing.send_test(
                edition.id,
                editor_email=current_user.email,
                extra_addresses=form.addresses.data,
                actor=events.Actor.of_request(),
            )
        except BadTestAddresses as error:
            if error.too_many:
                form.addresses.errors.append(
                    _(
                        "Enter at most %(count)d addresses besides your own.",
                        count=editing.MAX_TEST_ADDRESSES,
                    )
                )
            else:
                form.addresses.errors.append(
                    _(
                        "These are not valid email addresses: %(addresses)s. Nothing was sent.",
                        addresses=", ".join(error.invalid),
                    )
                )
        else:
            flash(
                _(
                    "The test is on its way to %(addresses)s.",
                    addresses=", ".join(addresses),
                ),
                "success",
            )
            return redirect(url_for(".edition", edition_id=edition.id), code=303)
    return _edition_page(edition, form, 422)


# --------------------------------------------------------------------------- sending


def _send_page(
    edition: Edition,
    schedule_form: ScheduleForm | None = None,
    segment_form: SegmentForm | None = None,
    status: int = 200,
):
    """The send page; its count is for the segment in `segment_form` once that form has
    been read (Count recipients), else for the one stored on the edition."""
    if segment_form is None:
        segment_form = SegmentForm(formdata=None, data={"segment": edition.segment or ""})
        segment_form.canonical = edition.segment
    counted = not segment_form.segment.errors
    segment = segment_form.canonical if counted else None
    return render_template(
        "editions/send.html",
        edition=edition,
        recipients=lifecycle.recipients_count(edition.id, segment) if counted else None,
        segment=segment,
        segment_form=segment_form,
        schedule_form=schedule_form or ScheduleForm(formdata=None),
        region_names=", ".join(segments.REGIONS),
    ), status


def _segment_of_request() -> tuple[SegmentForm | None, lifecycle.SegmentText]:
    """The segment a send or schedule POST asks for: (the form, its canonical spelling);
    (None, STORED) when the POST has no such field (a script: the stored one stays).
    A form with errors comes back for the page (422)."""
    if "segment" not in request.form:
        return None, lifecycle.STORED
    form = SegmentForm()
    form.validate()
    return form, form.canonical


def _cannot_send(edition: Edition):
    if edition.status in states.PUBLISHED:
        # A second press of the button, or another editor was first: show the send.
        flash(_("This edition has already been sent or is being sent."), "info")
        return redirect(url_for(".progress", edition_id=edition.id), code=303)
    return _conflict(
        edition,
        _(
            "This edition cannot be sent: it is %(status)s.",
            status=STATUS_LABELS[edition.status].lower(),
        ),
    )


@bp.get("/editions/<int:edition_id>/send")
@editor_required
def confirm_send(edition_id: int):
    edition = _edition_or_404(edition_id)
    if not edition.editable:
        return _cannot_send(edition)
    return _send_page(edition)


@bp.post("/editions/<int:edition_id>/send/count")
@editor_required
def count_recipients(edition_id: int):
    """The send page again, counted for the segment typed (nothing changes)."""
    edition = _edition_or_404(edition_id)
    if not edition.editable:
        return _cannot_send(edition)
    form = SegmentForm()
    valid = form.validate()
    return _send_page(edition, ScheduleForm(), form, 200 if valid else 422)


def _started(edition: Edition, recipients: int, segment: str | None):
    if segment:
        flash(
            _(
                "The send has started: %(count)s recipient(s) matching %(segment)s.",
                count=format_number(recipients),
                segment=segment,
            ),
            "success",
        )
    else:
        flash(
            _("The send has started: %(count)s recipient(s).", count=format_number(recipients)),
            "success",
        )
    return redirect(url_for(".progress", edition_id=edition.id), code=303)


@bp.post("/editions/<int:edition_id>/send")
@editor_required
def send(edition_id: int):
    edition = _edition_or_404(edition_id)
    form, segment = _segment_of_request()
    if form is not None and form.errors:
        if not edition.editable:
            return _cannot_send(edition)
        return _send_page(edition, ScheduleForm(), form, 422)
    try:
        recipients = lifecycle.start_send(
            edition.id, segment=segment, actor=events.Actor.of_request()
        )
    except EditionError:
        return _cannot_send(_edition_or_404(edition_id))
    return _started(edition, recipients, _edition_or_404(edition_id).segment)


@bp.post("/editions/<int:edition_id>/schedule")
@editor_required
def schedule(edition_id: int):
    edition = _edition_or_404(edition_id)
    if not edition.editable:
        return _cannot_send(edition)
    form = ScheduleForm()
    segment_form, segment = _segment_of_request()
    valid = form.validate()
    if not valid or (segment_form is not None and segment_form.errors):
        return _send_page(edition, form, segment_form, 422)
    try:
        lifecycle.schedule(
            edition.id, form.when_utc(), segment=segment, actor=events.Actor.of_request()
        )
    except EditionError:
        return _cannot_send(_edition_or_404(edition_id))
    flash(_("The edition has been scheduled."), "success")
    return redirect(url_for(".edition", edition_id=edition.id), code=303)


@bp.post("/editions/<int:edition_id>/unschedule")
@editor_required
def unschedule(edition_id: int):
    edition = _edition_or_404(edition_id)
    try:
        lifecycle.unschedule(edition.id, actor=events.Actor.of_request())
    except EditionError:
        return _conflict(
            _edition_or_404(edition_id),
            _(
                "This edition is not scheduled: it is %(status)s.",
                status=STATUS_LABELS[edition.status].lower(),
            ),
        )
    flash(_("The edition is no longer scheduled; it is a draft again."), "success")
    return redirect(url_for(".edition", edition_id=edition.id), code=303)


# --------------------------------------------------------------------------- progress


def _progress_data(edition: Edition) -> dict:
    p = lifecycle.progress(edition.id)
    skipped = p.counts.get("skipped", 0)
    numbers = {
        "recipients": p.recipients,
        "sent": p.sent,
        "failed": p.failed,
        "skipped": skipped,
        "remaining": p.remaining,
        "possible_duplicates": p.possible_duplicates,
        "done": p.recipients - p.remaining,
    }
    return {
        "status": p.status,
        "status_label": str(STATUS_LABELS[EditionStatus(p.status)]),
        **numbers,
        "rate_per_second": round(p.rate_per_second, 1),
        "paused_reason": p.paused_reason,
        # As the page shows them (Danish thousands separators and decimal comma).
        "display": {
            **{name: format_number(value) for name, value in numbers.items()},
            "rate_per_second": format_decimal(p.rate_per_second, format="#,##0.0"),
            "status": str(STATUS_LABELS[EditionStatus(p.status)]),
            "paused_reason": p.paused_reason or "",
        },
    }


@bp.get("/editions/<int:edition_id>/progress")
@editor_required
def progress(edition_id: int):
    edition = _edition_or_404(edition_id)
    if edition.status in states.OPEN:
        return redirect(url_for(".edition", edition_id=edition.id))
    return render_template("editions/progress.html", edition=edition, data=_progress_data(edition))


@bp.get("/editions/<int:edition_id>/progress.json")
@editor_required
def progress_json(edition_id: int):
    return jsonify(_progress_data(_edition_or_404(edition_id)))


def _control(edition_id: int, action, done: str, failed: str):
    edition = _edition_or_404(edition_id)
    try:
        action(edition.id, actor=events.Actor.of_request())
    except EditionError:
        # Usually a race: the send finished, paused itself or another editor acted.
        edition = _edition_or_404(edition_id)
        flash(
            failed % {"status": STATUS_LABELS[edition.status].lower()},
            "error",
        )
    else:
        flash(done, "success")
    return redirect(url_for(".progress", edition_id=edition_id), code=303)


@bp.post("/editions/<int:edition_id>/pause")
@editor_required
def pause(edition_id: int):
    return _control(
        edition_id,
        lifecycle.pause,
        _("The send is paused. No more messages go out until you resume it."),
        _("The send could not be paused: the edition is %(status)s."),
    )


@bp.post("/editions/<int:edition_id>/resume")
@editor_required
def resume(edition_id: int):
    return _control(
        edition_id,
        lifecycle.resume,
        _("The send has been resumed."),
        _("The send could not be resumed: the edition is %(status)s."),
    )


@bp.route("/editions/<int:edition_id>/cancel", methods=["GET", "POST"])
@editor_required
def cancel(edition_id: int):
    edition = _edition_or_404(edition_id)
    if request.method == "GET":
        if not states.allowed(edition.status, Action.CANCEL):
            return _conflict(
                edition,
                _(
                    "This edition cannot be cancelled: it is %(status)s.",
                    status=STATUS_LABELS[edition.status].lower(),
                ),
            )
        return render_template(
            "editions/cancel.html", edition=edition, data=_progress_data(edition)
        )
    return _control(
        edition_id,
        lifecycle.cancel,
        _("The send has been cancelled. Messages not yet sent will not be sent."),
        _("The send could not be cancelled: the edition is %(status)s."),
    )
