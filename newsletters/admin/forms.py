"""Forms of the administrators' pages."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import BooleanField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

# An import of 10 000 rows is well under a megabyte; anything near this is a mistake.
MAX_IMPORT_BYTES = 10 * 1024 * 1024


class ImportForm(FlaskForm):
    file = FileField(
        _l("CSV file"),
        validators=[
            FileRequired(message=_l("Choose the CSV file to import.")),
            FileSize(MAX_IMPORT_BYTES, message=_l("The file is larger than 10 MB.")),
        ],
    )
    newsletter = SelectField(_l("Newsletter"), validators=[DataRequired()])
    mode = RadioField(
        _l("How the people in the file join"),
        choices=[],
        default="invite",
        validators=[DataRequired(message=_l("Choose how the people in the file join."))],
    )
    basis = TextAreaField(
        _l("Basis for the enrolment"),
        validators=[Length(max=2000, message=_l("The basis is longer than 2000 characters."))],
    )
    welcome = BooleanField(_l("Send each enrolled person the welcome mail"))
    dry_run = BooleanField(_l("Dry run: show what would change, change nothing"), default=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Set here, as the other forms do: WTForms warns about tuples given to the field.
        self.mode.choices = [
            ("invite", _l("Invite: each new address gets a mail asking them to confirm")),
            ("enrol", _l("Enrol on a recorded basis: subscribed at once, no confirmation")),
        ]

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self.mode.data == "enrol" and not (self.basis.data or "").strip():
            self.basis.errors.append(_l("State the basis for the enrolment."))
            ok = False
        if self.mode.data != "enrol" and self.welcome.data:
            self.welcome.errors.append(
                _l("The welcome mail is for enrolments; invitations get the confirmation mail.")
            )
            ok = False
        return ok


class EraseForm(FlaskForm):
    understood = BooleanField(
        _l("I understand that this person and all data about them will be deleted."),
        validators=[DataRequired(message=_l("Tick the box to confirm the deletion."))],
    )
    never_again = BooleanField(
        _l("The person asked never to be mailed again (keep only a one-way code of the address)")
    )


class WelcomeLetterForm(FlaskForm):
    subject = StringField(
        _l("Subject"),
        validators=[
            DataRequired(message=_l("Enter a subject.")),
            Length(max=300, message=_l("The subject is longer than 300 characters.")),
        ],
    )
    body = TextAreaField(
        _l("Text"),
        validators=[
            DataRequired(message=_l("Write the text of the letter.")),
            Length(max=20000, message=_l("The text is longer than 20 000 characters.")),
        ],
    )


class SuppressForm(FlaskForm):
    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter the address that must not be mailed.")),
            Length(max=320, message=_l("The email address is too long.")),
        ],
        render_kw={"inputmode": "email", "spellcheck": "false", "autocomplete": "off"},
    )
    note = StringField(
        _l("Why (for your colleagues)"),
        validators=[Length(max=500, message=_l("The note is longer than 500 characters."))],
    )
