"""The administrators' form for API tokens."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Regexp

from newsletters.api.tokens import NAME_PATTERN, SCOPES
from newsletters.subscriptions.forms import MultiCheckboxField

SCOPE_LABELS = {
    "subscriptions:write": _l("Ask for subscriptions (double opt-in), as the public form does"),
    "subscribers:read": _l("Read subscribers and their consent history"),
    "subscribers:write": _l("Enrol subscribers on a stated basis, and erase subscribers"),
    "editions:read": _l("Read editions and their progress"),
    "editions:write": _l("Create draft editions"),
    "editions:send": _l("Send, pause, resume and cancel editions"),
    "webhooks:manage": _l("Manage webhooks"),
}


class TokenForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(message=_l("Give the token a name, e.g. the system that uses it.")),
            Length(max=36, message=_l("The name is longer than 36 characters.")),
            Regexp(
                NAME_PATTERN.pattern,
                message=_l("Use letters, digits, '.', '_' or '-' only (no spaces)."),
            ),
        ],
        render_kw={"maxlength": 36, "spellcheck": "false", "autocomplete": "off"},
    )
    scopes = MultiCheckboxField(
        _l("What the token may do"),
        choices=[],
        validators=[DataRequired(message=_l("Choose at least one thing the token may do."))],
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scopes.choices = [(s, f"{s}: {SCOPE_LABELS[s]}") for s in SCOPES]
