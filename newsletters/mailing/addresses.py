"""Validating and normalising email addresses (no network look-ups)."""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """Not a usable email address; the message is for the log, views show their own."""


# An unquoted ASCII local part (RFC 5322 dot-atom), which email-validator accepts as it
# is: such an address needs only its domain checked, and domains repeat (an import of
# 100 000 rows has a few hundred), so that check is cached.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@functools.lru_cache(maxsize=4096)
def normalise_email(raw: str) -> str:
    """The canonical form we store: validated, IDNA-normalised domain, lower-cased.

    Local parts are case-sensitive in theory and never in practice; lower-casing makes
    `Borgmester@Kommune.dk` and `borgmester@kommune.dk` one subscriber.
    """
    candidate = (raw or "").strip()
    if not candidate or len(candidate) > 320:
        raise InvalidAddress("empty or too long")
    local, at, domain = candidate.rpartition("@")
    if at and len(local) <= 64 and _DOT_ATOM.fullmatch(local):
        address = f"{local}@{_normalise_domain(domain)}".lower()
        # email-validator's limit for the whole address (RFC 3696 errata, 5321).
        if len(address.encode("utf-8")) <= 254:
            return address
    return _validated(candidate)


@functools.lru_cache(maxsize=4096)
def _normalise_domain(domain: str) -> str:
    """A domain as email-validator normalises it (IDNA, lower case); raises InvalidAddress."""
    return _validated(f"x@{domain}").partition("@")[2]


def _validated(candidate: str) -> str:
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
