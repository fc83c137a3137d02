"""Staff forms for editions: compose (with a board meeting's items), test send, schedule.

The compose form works without JavaScript: it shows the items plus a few empty rows,
empty rows are ignored, and an item is removed with a checkbox and moved with its
position number.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    FieldList,
    FormField,
    IntegerField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from newsletters.editions import segments
from newsletters.editions.drafts import ItemInput
from newsletters.editions.editing import MAX_SUBJECT_LENGTH, MAX_TEST_ADDRESSES, is_http_link
from newsletters.editions.models import EditionStatus
from newsletters.labels import labels_of
from newsletters.timeutil import utcnow

STATUS_LABELS = labels_of(EditionStatus, "edition_status")

# Empty item rows shown below the items, and added by "Add more items".
EMPTY_ITEM_ROWS = 3
MAX_ITEM_ROWS = 100


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class ItemForm(FlaskForm):
    """One row of the items list; a subform, so without a CSRF token of its own."""

    class Meta:
        csrf = False

    heading = StringField(
        _l("Heading"),
        filters=[_strip],
        validators=[Length(max=MAX_SUBJECT_LENGTH, message=_l("The heading is too long."))],
    )
    text = TextAreaField(_l("Text"))
    link = StringField(
        _l("Link (optional)"),
        filters=[_strip],
        validators=[Optional(), Length(max=1000, message=_l("The link is too long."))],
        render_kw={"inputmode": "url", "spellcheck": "false"},
    )
    position = IntegerField(
        _l("Position"),
        invalid_value_message=_l("Enter a whole number."),
        validators=[Optional()],
    )
    remove = BooleanField(_l("Remove this item"))

    def validate_heading(self, field) -> None:
        if not field.data and not self.is_empty() and not self.remove.data:
            raise ValidationError(_l("Give the item a heading, or empty the row."))

    def validate_position(self, field) -> None:
        # Not NumberRange: that would add a second message to "Enter a whole number."
        if field.data is not None and not 1 <= field.data <= 1000:
            raise ValidationError(_l("Enter a whole number from 1 to 1000."))

    def validate_link(self, field) -> None:
        if field.data and not is_http_link(field.data):
            raise ValidationError(_l("Enter a link that starts with https:// or http://."))

    def is_empty(self) -> bool:
        return not (self.heading.data or (self.text.data or "").strip() or self.link.data)


class EditionForm(FlaskForm):
    subject = StringField(
        _l("Subject"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Enter a subject.")),
            Length(
                max=MAX_SUBJECT_LENGTH,
                message=_l("Enter a subject of at most 300 characters."),
            ),
        ],
    )
    preheader = StringField(
        _l("Preheader"),
        filters=[_strip],
        validators=[Optional(), Length(max=300, message=_l("The preheader is too long."))],
    )
    body = TextAreaField(_l("Text"))
    meeting_date = DateField(
        _l("Date of the board meeting"),
        invalid_value_message=_l("Enter a date, for example 2026-03-12."),
        validators=[Optional()],
    )
    items = FieldList(FormField(ItemForm), max_entries=MAX_ITEM_ROWS)

    def add_empty_rows(self, count: int = EMPTY_ITEM_ROWS) -> None:
        for _ in range(max(0, min(count, MAX_ITEM_ROWS - len(self.items.entries)))):
            self.items.append_entry()

    def item_inputs(self) -> list[ItemInput]:
        """The rows to keep, in the order of their position numbers (rows without one
        stay where they are, after those with one)."""
        rows = [entry.form for entry in self.items]
        kept = [row for row in rows if not row.remove.data and not row.is_empty()]
        kept.sort(key=lambda row: (row.position.data is None, row.position.data or 0))
        return [
            ItemInput(
                heading=row.heading.data or "",
                text_markdown=row.text.data or "",
                link=row.link.data or "",
            )
            for row in kept
        ]

    def empty_rows(self) -> int:
        return sum(1 for entry in self.items if entry.form.is_empty())

    def error_list(self) -> list[tuple[str, str]]:
        """(field id, message) for the error summary, items' fields included."""
        found = []
        for field in self:
            if isinstance(field, FieldList):
                for entry in field:
                    for subfield in entry.form:
                        found.extend((subfield.id, str(e)) for e in subfield.errors)
            else:
                found.extend((field.id, str(e)) for e in field.errors)
        return found

    @staticmethod
    def data_for(edition, extra_rows: int = EMPTY_ITEM_ROWS) -> dict:
        """The form's values for an existing edition, with empty item rows below."""
        items = [
            {"heading": i.heading, "text": i.text_markdown, "link": i.link, "position": n}
            for n, i in enumerate(edition.items, start=1)
        ]
        items += [{} for _ in range(max(0, min(extra_rows, MAX_ITEM_ROWS - len(items))))]
        return {
            "subject": edition.subject,
            "preheader": edition.preheader,
            "body": edition.body_markdown,
            "meeting_date": edition.meeting_date,
            "items": items,
        }


class TestSendForm(FlaskForm):
    addresses = TextAreaField(
        _l("Also send the test to (optional)"),
        validators=[Length(max=2000, message=_l("The list of addresses is too long."))],
        render_kw={"spellcheck": "false", "rows": 3},
    )
    max_addresses = MAX_TEST_ADDRESSES


def local_timezone() -> ZoneInfo:
    """The time zone editors think in (and the staff pages show times in)."""
    return ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def local_to_utc(local: datetime) -> datetime:
    """A wall-clock time in Copenhagen as an aware UTC datetime."""
    return local.replace(tzinfo=local_timezone()).astimezone(UTC)


class SegmentForm(FlaskForm):
    """Who gets a send: everyone confirmed (empty) or a segment (editions/segments.py)."""

    segment = StringField(
        _l("Send only to"),
        filters=[_strip],
        render_kw={"spellcheck": "false", "autocomplete": "off"},
    )
    canonical: str | None = None

    def validate_segment(self, field) -> None:
        try:
            self.canonical = segments.canonical(field.data)
        except segments.SegmentError as error:
            raise ValidationError(str(error)) from error


class ScheduleForm(FlaskForm):
    scheduled_at = DateTimeLocalField(
        _l("Date and time (Danish time)"),
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        invalid_value_message=_l("Enter a date and a time, for example 2026-03-12 09:30."),
        validators=[InputRequired(message=_l("Enter a date and a time."))],
    )

    def validate_scheduled_at(self, field) -> None:
        if field.data is None:
            return
        when = local_to_utc(field.data)
        # A time skipped when the clocks go forward (02:30 on the last Sunday of March).
        if when.astimezone(local_timezone()).replace(tzinfo=None) != field.data:
            raise ValidationError(_l("That time does not exist in Denmark (summer time)."))
        if when <= utcnow():
            raise ValidationError(_l("Choose a time in the future."))

    def when_utc(self) -> datetime:
        return local_to_utc(self.scheduled_at.data)
