"""Forms of the second factor: the code at login, setting up, turning off."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Optional

from newsletters.staff.twofactor.services import MAX_CODE_INPUT

_CODE_ATTRS = {
    "autocomplete": "one-time-code",
    "autocapitalize": "off",
    "spellcheck": "false",
}
_TOO_LONG = _l("That is not a code: it is too long.")


class CodeForm(FlaskForm):
    """The second step of a login: a code from the app, or a recovery code."""

    code = StringField(
        _l("Code"),
        description=_l(
            "The 6 digits your authenticator app shows now, or one of your recovery codes."
        ),
        validators=[
            DataRequired(message=_l("Enter the code.")),
            Length(max=MAX_CODE_INPUT, message=_TOO_LONG),
        ],
        render_kw=_CODE_ATTRS,
    )


class SetupForm(FlaskForm):
    """Setting up (or again) an authenticator app: a code from the new set-up and, when
    the account has one already, a code from the current one."""

    code = StringField(
        _l("Code from the app"),
        description=_l("The 6 digits the app shows for KL Nyhedsbreve after you scanned the code."),
        validators=[
            DataRequired(message=_l("Enter the code the app shows.")),
            Length(max=MAX_CODE_INPUT, message=_TOO_LONG),
        ],
        render_kw={**_CODE_ATTRS, "inputmode": "numeric"},
    )
    current_code = StringField(
        _l("Code from your current set-up"),
        description=_l(
            "A code from the app you use now (before you scan the new one), or a recovery code."
        ),
        validators=[Optional(), Length(max=MAX_CODE_INPUT, message=_TOO_LONG)],
        render_kw=_CODE_ATTRS,
    )


class CurrentCodeForm(FlaskForm):
    """A change that a current code confirms (new recovery codes, turning off)."""

    current_code = StringField(
        _l("Code"),
        description=_l("A code from your authenticator app, or a recovery code."),
        validators=[
            DataRequired(message=_l("Enter a code from your authenticator app.")),
            Length(max=MAX_CODE_INPUT, message=_TOO_LONG),
        ],
        render_kw=_CODE_ATTRS,
    )
