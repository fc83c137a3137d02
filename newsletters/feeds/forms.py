"""Staff forms for feeds: attach a feed, the digest's settings, pick feed items."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.feeds.models import MAX_URL_LENGTH, SkipReason
from newsletters.feeds.opml import MAX_BYTES as MAX_OPML_BYTES
from newsletters.feeds.services import BadFeedURL, clean_feed_url
from newsletters.labels import labels_of
from newsletters.subscriptions.forms import MultiCheckboxField

MODE_LABELS = labels_of(DigestMode, "digest_mode")
CADENCE_LABELS = labels_of(DigestCadence, "digest_cadence")

# What staff are told when a feed's address is refused (the form and `flask feeds add`).
REFUSED_ADDRESS_MESSAGE = _l(
    "This address leads to an internal network (such as localhost, a private or a "
    "reserved address). Feeds can only be fetched from the public internet."
)

SKIP_REASON_LABELS = {
    SkipReason.MISSED: _l(
        "No worker ran in the catch-up window (it was stopped, or started later)."
    ),
    SkipReason.FEEDS_NOT_FETCHED: _l(
        "Feeds that were due for it were still not fetched when the catch-up window closed."
    ),
}


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class FeedForm(FlaskForm):
    url = StringField(
        _l("Address of the feed (RSS or Atom)"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Enter the address of the feed.")),
            Length(max=MAX_URL_LENGTH, message=_l("The address is too long.")),
        ],
        render_kw={"inputmode": "url", "spellcheck": "false", "autocomplete": "off"},
    )
    title = StringField(
        _l("Name (optional)"),
        filters=[_strip],
        validators=[Optional(), Length(max=300, message=_l("The name is too long."))],
    )
    # "discover": find the feeds the web page at `url` announces, to choose from.
    action = StringField(default="add")

    def validate_url(self, field) -> None:
        try:
            clean_feed_url(field.data or "")
        except BadFeedURL as error:
            raise ValidationError(
                _l("Enter an address that starts with https:// or http://.")
            ) from error


class DigestSettingsForm(FlaskForm):
    mode = SelectField(
        _l("The digest"),
        choices=[SelectChoice(m.value, label) for m, label in MODE_LABELS.items()],
    )
    cadence = SelectField(
        _l("How often"),
        choices=[SelectChoice(c.value, label) for c, label in CADENCE_LABELS.items()],
    )
    hour = IntegerField(
        _l("Hour (Danish time, 0-23)"),
        invalid_value_message=_l("Enter a whole number from 0 to 23."),
        validators=[InputRequired(message=_l("Enter a whole number from 0 to 23."))],
    )

    sections = BooleanField(_l("Group the items by feed, under each feed's title"))

    def validate_hour(self, field) -> None:
        # Not NumberRange: that would add a second message to "Enter a whole number".
        if field.data is not None and not 0 <= field.data <= 23:
            raise ValidationError(_l("Enter a whole number from 0 to 23."))


class OpmlForm(FlaskForm):
    file = FileField(
        _l("OPML file"),
        validators=[
            FileRequired(message=_l("Choose the OPML file to import.")),
            FileSize(MAX_OPML_BYTES, message=_l("The file is larger than 1 MB.")),
        ],
    )


class PositionForm(FlaskForm):
    position = IntegerField(
        _l("Place in the digest"),
        invalid_value_message=_l("Enter a whole number from 0 to 9999."),
        validators=[InputRequired(message=_l("Enter a whole number from 0 to 9999."))],
    )

    def validate_position(self, field) -> None:
        if field.data is not None and not 0 <= field.data <= 9999:
            raise ValidationError(_l("Enter a whole number from 0 to 9999."))


# A text area of words: one a line or comma-separated; the service checks each word.
_WORDS_LIMIT = Length(max=20_000, message=_l("There are too many words."))


class FilterForm(FlaskForm):
    include = TextAreaField(
        _l("Only items with one of these words"),
        validators=[Optional(), _WORDS_LIMIT],
    )
    exclude = TextAreaField(
        _l("No items with any of these words"),
        validators=[Optional(), _WORDS_LIMIT],
    )
    categories = TextAreaField(
        _l("Only items in one of these categories"),
        validators=[Optional(), _WORDS_LIMIT],
    )
    # "preview": show what the filter would do; "save": save it.
    action = StringField(default="save")


class PickItemsForm(FlaskForm):
    items = MultiCheckboxField(_l("Feed items"), coerce=int, choices=[])

    def validate_items(self, field) -> None:
        if not field.data:
            raise ValidationError(_l("Choose at least one item."))
