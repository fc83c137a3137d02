"""Staff forms: login, new account, invitation, newsletter settings."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange, Optional

from newsletters.labels import labels_of
from newsletters.names import name_field_check
from newsletters.staff.models import StaffRole
from newsletters.staff.services import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from newsletters.subscriptions.forms import MultiCheckboxField

ROLE_LABELS = labels_of(StaffRole, "staff_role")


class LoginForm(FlaskForm):
    # No address check here: every failed login gets the same answer (see the view).
    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter your email address.")),
            Length(max=320, message=_l("The email address is too long.")),
        ],
        render_kw={"autocomplete": "username", "inputmode": "email", "spellcheck": "false"},
    )
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(message=_l("Enter your password.")),
            Length(max=PASSWORD_MAX_LENGTH, message=_l("The password is too long.")),
        ],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class NewStaffForm(FlaskForm):
    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter the email address.")),
            Length(max=320, message=_l("The email address is too long.")),
        ],
        render_kw={"autocomplete": "off", "inputmode": "email", "spellcheck": "false"},
    )
    name = StringField(
        _l("Name"),
        validators=[Optional(), name_field_check],
        render_kw={"autocomplete": "off"},
    )
    role = SelectField(
        _l("Role"), choices=[], validators=[InputRequired(message=_l("Choose a role."))]
    )
    password = PasswordField(
        _l("Initial password"),
        validators=[
            DataRequired(message=_l("Enter a password.")),
            Length(
                min=PASSWORD_MIN_LENGTH,
                max=PASSWORD_MAX_LENGTH,
                message=_l("The password must be at least %(min)d characters long."),
            ),
        ],
        render_kw={"autocomplete": "new-password"},
    )
    password_again = PasswordField(
        _l("Repeat the password"),
        validators=[
            DataRequired(message=_l("Repeat the password.")),
            EqualTo("password", message=_l("The two passwords are not the same.")),
        ],
        render_kw={"autocomplete": "new-password"},
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Set here, as the subscription forms do: WTForms warns about tuples given to the field.
        self.role.choices = [(role.value, label) for role, label in ROLE_LABELS.items()]


class InviteForm(FlaskForm):
    """An address an administrator lets in by single sign-on, with its role."""

    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter the email address.")),
            Length(max=320, message=_l("The email address is too long.")),
        ],
        render_kw={"autocomplete": "off", "inputmode": "email", "spellcheck": "false"},
    )
    role = SelectField(
        _l("Role"), choices=[], validators=[InputRequired(message=_l("Choose a role."))]
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = [(role.value, label) for role, label in ROLE_LABELS.items()]


class NewsletterSettingsForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(message=_l("Enter the newsletter's name.")),
            Length(max=200, message=_l("The name is too long.")),
        ],
    )
    description_da = TextAreaField(
        _l("Description in Danish"),
        validators=[DataRequired(message=_l("Enter the Danish description."))],
    )
    description_en = TextAreaField(_l("Description in English"), validators=[Optional()])
    cadence_da = StringField(
        _l("How often, in Danish"),
        validators=[
            DataRequired(message=_l("Enter how often it is sent, in Danish.")),
            Length(max=200, message=_l("The text is too long.")),
        ],
    )
    cadence_en = StringField(
        _l("How often, in English"),
        validators=[Optional(), Length(max=200, message=_l("The text is too long."))],
    )
    is_public = BooleanField(_l("Offered on the public subscribe form"))
    archive_public = BooleanField(_l("Sent editions on a public archive page"))
    engagement_counting = BooleanField(_l("Count opens and clicks (totals only)"))
    position = IntegerField(
        _l("Position"),
        validators=[
            InputRequired(message=_l("Enter a whole number.")),
            NumberRange(min=0, max=10000, message=_l("Enter a whole number from 0 to 10000.")),
        ],
    )


class NewsletterRightsForm(FlaskForm):
    """Which newsletters an editor may work on; none ticked = every newsletter."""

    newsletters = MultiCheckboxField(_l("Newsletters"), choices=[], validate_choice=True)

    def __init__(self, *args, choices: list[tuple[str, str]] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.newsletters.choices = list(choices)
