"""Public forms. Field names are a contract (PRODUCT.md): other sites copy the subscribe form."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.names import MAX_NAME_LENGTH, name_field_check
from newsletters.subscriptions.municipalities import MUNICIPALITIES, is_municipality


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _valid_email(form: FlaskForm, field: StringField) -> None:
    try:
        normalise_email(field.data or "")
    except InvalidAddress as exc:
        raise ValidationError(
            _l("Enter a valid email address, for example navn@kommune.dk.")
        ) from exc


_MUNICIPALITY_CHOICES = [("", _l("Choose a municipality (optional)"))] + [
    (m, m) for m in MUNICIPALITIES
]


def _municipality_choices() -> list[tuple[str, str]]:
    return _MUNICIPALITY_CHOICES


def _known_municipality(form: FlaskForm, field: SelectField) -> None:
    # A set lookup: WTForms' own choice check re-normalises all 99 choices on every POST.
    if field.data and not is_municipality(field.data):
        raise ValidationError(_l("Choose a municipality from the list."))


class EmailForm(FlaskForm):
    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter your email address.")),
            Length(max=320, message=_l("The email address is too long.")),
            _valid_email,
        ],
        render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
    )


class SubscribeForm(EmailForm):
    name = StringField(
        _l("Name (optional)"),
        validators=[Optional(), name_field_check],
        render_kw={"autocomplete": "name", "maxlength": MAX_NAME_LENGTH},
    )
    municipality = SelectField(
        _l("Municipality (optional)"),
        choices=[],
        validate_choice=False,
        validators=[_known_municipality],
    )
    newsletters = MultiCheckboxField(
        _l("Newsletters"),
        choices=[],
        validators=[DataRequired(message=_l("Choose at least one newsletter."))],
    )
    # Honeypot: hidden from people (CSS and aria-hidden), filled in by bots.
    website = StringField(_l("Leave this field empty"))

    def __init__(self, *args, newsletter_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.municipality.choices = _municipality_choices()
        self.newsletters.choices = newsletter_choices


class PreferencesForm(FlaskForm):
    newsletters = MultiCheckboxField(_l("Your newsletters"), choices=[])
    name = StringField(
        _l("Name"),
        validators=[Optional(), name_field_check],
        render_kw={"autocomplete": "name", "maxlength": MAX_NAME_LENGTH},
    )
    municipality = SelectField(
        _l("Municipality"), choices=[], validate_choice=False, validators=[_known_municipality]
    )

    def __init__(self, *args, newsletter_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.municipality.choices = _municipality_choices()
        self.newsletters.choices = newsletter_choices


class ButtonForm(FlaskForm):
    """A form that is only a button (and its CSRF token)."""


class DeleteForm(FlaskForm):
    understood = BooleanField(
        _l("I understand that my subscriptions and all data about me will be deleted."),
        validators=[DataRequired(message=_l("Tick the box to confirm the deletion."))],
    )
    never_again = BooleanField(
        _l(
            "Never send me mail from KL's newsletters again. (KL then keeps only a one-way "
            "code made from my address, never the address itself.)"
        )
    )
