from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired

from newsletters import labels
from newsletters.subscriptions.forms import MultiCheckboxField
from newsletters.webhooks.services import EVENT_TYPES


class WebhookForm(FlaskForm):
    # Length and content are checked by the service (one set of rules for every caller).
    url = StringField(
        _l("The endpoint's URL"),
        validators=[DataRequired(message=_l("Give the endpoint's URL."))],
        render_kw={"inputmode": "url", "spellcheck": "false", "autocomplete": "off"},
    )
    events = MultiCheckboxField(
        _l("Events"),
        choices=[SelectChoice(name, labels.WEBHOOK_EVENT[name]) for name in EVENT_TYPES],
        validate_choice=False,
    )
