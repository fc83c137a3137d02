"""People's names as they are typed: one line of plain text, no links.

The one check for every place a name comes in: the subscribe form, the preference
centre, the staff pages, the CSV import (and the API). A name is shown on staff pages
and exported to spreadsheets; it must never be able to carry a message of its own
("VIGTIGT: log ind på https://...") or break a line.
"""

from __future__ import annotations

import re
import unicodedata

# The longest name accepted (characters, after trimming).
MAX_NAME_LENGTH = 100


def N_(text: str) -> str:  # noqa: N802 - marks a message for extraction; callers translate
    return text


class InvalidName(ValueError):
    """A name that cannot be accepted; `message` is an English message id to translate."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params


# Dots as IDNA reads them (a browser or mail client turns these into links too).
_DOTS = "\u002e\u3002\uff0e\uff61"
# A link, or anything a mail client or a reader would take for an address on the web:
# a scheme, "www", or labels joined by dots ending in a top-level-domain-like word
# ("kl-login.evil.example", "evil.dk"), or an e-mail address.
_LINK = re.compile(
    r"[a-z][a-z0-9+.\-]*:/"  # http://, https:/, ftp://
    r"|\b(?:javascript|data|mailto|file|tel|sms|callto|ms-\w+)\s*:"
    r"|www[" + _DOTS + r"]"
    r"|[\w\-][" + _DOTS + r"][\w\-]*[^\W\d_]{2,}\b"
    r"|@",
    re.IGNORECASE,
)
# Unicode categories that are no part of a name: control (Cc), format (Cf: bidi
# overrides, zero-width characters), surrogates, private use, unassigned, and the
# line and paragraph separators.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
# Word characters (letters, digits, _), the ordinary space and a name's punctuation.
_PLAIN = re.compile(r"[\w .,'()&/-]*")


def clean_name(value: str | None) -> str:
    """The name to store: trimmed, NFC, spaces collapsed; "" for none.

    Raises InvalidName for a line break, a control or invisible character, a link or
    anything that looks like a web or mail address, or more than MAX_NAME_LENGTH
    characters.
    """
    if not value:
        return ""
    if "\r" in value or "\n" in value or "\u2028" in value or "\u2029" in value:
        raise InvalidName(N_("The name must be on one line."))
    text = unicodedata.normalize("NFC", value)
    # Letters, digits and the usual punctuation of a name are in no refused category:
    # only a name with anything else is looked at character by character.
    if not _PLAIN.fullmatch(text) and any(
        unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in text
    ):
        raise InvalidName(N_("The name contains a character that is not allowed."))
    # Any run of spaces (also no-break and other widths) is one ordinary space.
    text = " ".join(text.split())
    # The length first: the link pattern takes time that grows with the square of the
    # length, so it only ever sees a name of a name's length (a 500 KB form field would
    # keep a worker busy for hours).
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidName(
            N_("The name is too long (at most %(max)d characters)."), max=MAX_NAME_LENGTH
        )
    if _LINK.search(unicodedata.normalize("NFKC", text)):
        raise InvalidName(N_("The name must not contain links, web addresses or email addresses."))
    return text


def name_field_check(form, field) -> None:
    """WTForms validator: `clean_name`, its refusal as the field's error in the reader's
    language; the field's data becomes the cleaned name."""
    from flask_babel import gettext
    from wtforms.validators import ValidationError

    try:
        field.data = clean_name(field.data)
    except InvalidName as exc:
        raise ValidationError(gettext(exc.message, **exc.params)) from exc
