"""The report pages: one edition's send, one newsletter's readers, and their charts."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, abort, render_template, stream_with_context
from flask_babel import format_date, format_datetime
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions.forms import STATUS_LABELS
from newsletters.extensions import db
from newsletters.reports import charts
from newsletters.reports.editions import edition_report, recipient_outcomes
from newsletters.reports.newsletters import newsletter_report
from newsletters.spreadsheet import csv_lines, for_excel
from newsletters.staff.access import admin_required, editor_required
from newsletters.staff.models import StaffRole
from newsletters.subscriptions.forms import ButtonForm
from newsletters.timeutil import utcnow

bp = Blueprint("reports", __name__, url_prefix="/staff")

# The picture's own policy: its styles are inside it, nothing else is loaded or run.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _svg(data: bytes) -> Response:
    response = Response(data, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CSP
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _source_labels() -> dict[str, str]:
    return {
        "one_click": _("One click in the mail program"),
        "unsubscribe_link": _("Unsubscribe link in the mail"),
        "preference_centre": _("Preference centre"),
        "bounce": _("Bounced (mail stopped)"),
        "erasure": _("Erased"),
        "other": _("Other (staff, import)"),
    }


def _edition_report_or_404(edition_id: int):
    report = edition_report(edition_id)
    if report is None:
        abort(404)
    return report


def _minute_label(at: datetime) -> str:
    return format_datetime(at, "HH:mm")


# --------------------------------------------------------------------------- an edition


@bp.get("/editions/<int:edition_id>/report")
@editor_required
def edition(edition_id: int):
    report = _edition_report_or_404(edition_id)
    return render_template(
        "reports/edition.html",
        report=report,
        status_labels=STATUS_LABELS,
        minute_label=_minute_label,
        form=ButtonForm(),
        can_download=current_user.role == StaffRole.ADMIN,
    )


@bp.get("/editions/<int:edition_id>/report/per-minute.svg")
@editor_required
def edition_chart(edition_id: int):
    report = _edition_report_or_404(edition_id)
    labels = [_minute_label(at) for at, _n in report.per_minute]
    title = (
        _("Messages sent per minute")
        if report.bucket_minutes == 1
        else _("Messages sent per %(n)d minutes", n=report.bucket_minutes)
    )
    return _svg(
        charts.bars(title, labels, {_("Messages sent"): [n for _at, n in report.per_minute]})
    )


@bp.post("/editions/<int:edition_id>/report.csv")
@admin_required
def edition_csv(edition_id: int):
    if not ButtonForm().validate():
        abort(400)
    report = _edition_report_or_404(edition_id)
    # Personal data leaves the system: audited before the first byte.
    events.announce(
        "edition.report_export",
        f"edition:{edition_id}",
        actor=events.Actor.of_request(),
        recipients=report.recipients,
    )
    db.session.commit()
    header = [
        _("Email"),
        _("Outcome"),
        _("Sent at (UTC)"),
        _("Attempts"),
        _("Possible duplicates"),
        _("Bounce"),
        _("Last error"),
    ]
    rows = (
        [
            o.email,
            o.status,
            o.sent_at.isoformat(timespec="seconds") if o.sent_at else "",
            o.attempts,
            o.possible_duplicates,
            o.bounce,
            o.error,
        ]
        for o in recipient_outcomes(edition_id)
    )
    stamp = utcnow().strftime("%Y-%m-%d")
    return Response(
        stream_with_context(for_excel(csv_lines(header, rows))),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="edition-{edition_id}-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


# --------------------------------------------------------------------------- a newsletter


def _newsletter_report_or_404(slug: str, *, readers: bool = True):
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        abort(404)
    return newsletter_report(newsletter, readers=readers)


def _week_label(week) -> str:
    return format_date(week.start, "d. MMM")


@bp.get("/newsletters/<slug>/report")
@editor_required
def newsletter(slug: str):
    report = _newsletter_report_or_404(slug)
    return render_template(
        "reports/newsletter.html",
        report=report,
        week_label=_week_label,
        source_labels=_source_labels(),
    )


@bp.get("/newsletters/<slug>/report/<any(readers, weekly, sources):chart>.svg")
@editor_required
def newsletter_chart(slug: str, chart: str):
    # Only the readers' line needs today's count of readers.
    report = _newsletter_report_or_404(slug, readers=chart == "readers")
    labels = [_week_label(w) for w in report.weeks]
    if chart == "readers":
        data = charts.line(
            _("Confirmed subscribers at the end of each week"),
            labels,
            {_("Subscribers"): [w.subscribers for w in report.weeks]},
        )
    elif chart == "weekly":
        data = charts.bars(
            _("Subscriptions and withdrawals per week"),
            labels,
            {
                _("New subscriptions"): [w.joined for w in report.weeks],
                _("Withdrawals"): [w.left for w in report.weeks],
            },
        )
    else:
        names = _source_labels()
        data = charts.horizontal_bars(
            _("Where the withdrawals came from"),
            {names[k]: v for k, v in report.sources.items()},
        )
    return _svg(data)
