"""Validating and normalising email addresses (no network look-ups)."""

from __future__ import annotations

import functools

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """Not a usable email address; the message is for the log, views show their own."""


@functools.lru_cache(maxsize=4096)
def normalise_email(raw: str) -> str:
    """The canonical form we store: validated, IDNA-normalised domain, lower-cased.

    Local parts are case-sensitive in theory and never in practice; lower-casing makes
    `Borgmester@Kommune.dk` and `borgmester@kommune.dk` one subscriber.
    """
    candidate = (raw or "").strip()
    if not candidate or len(candidate) > 320:
        raise InvalidAddress("empty or too long")
    try:
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    return result.normalized.lower()


def ascii_address(address: str) -> str:
    """The address as SMTP without SMTPUTF8 needs it: an IDN domain in its IDNA (xn--) form.

    We store `borgmester@ærø.dk` as people write it; the envelope and the To header get
    `borgmester@xn--r-3fa9c.dk`. Local parts are ASCII already (validation refuses others).
    """
    if address.isascii():
        return address
    return (
        validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
        or address
    )
