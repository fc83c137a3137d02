"""TOTP secrets encrypted at rest: a copy of the database (a backup, a dump handed to a
developer) must not be enough to make a person's codes.

Fernet (AES-128-CBC with HMAC-SHA256, `cryptography`) under a key derived with HKDF-SHA256
from TWOFA_ENCRYPTION_KEY, or from SECRET_KEY when that is not set (the same pattern as
SUPPRESSION_HASH_KEY): the key is never the SECRET_KEY itself, and a key for another
purpose derived from it tells nothing about this one. Set TWOFA_ENCRYPTION_KEY explicitly
to be able to rotate SECRET_KEY without everyone having to set up their app again.

Migration 0026 encrypts the secrets stored before this module, with the same derivation
(kept there as a copy, as a migration must not change when this code does).
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

# The HKDF "info": binds the derived key to this one use.
PURPOSE = b"newsletters.staff.totp-secret.v1"


class SecretUnreadable(ValueError):
    """A stored TOTP secret cannot be decrypted: the key changed (SECRET_KEY rotated
    without TWOFA_ENCRYPTION_KEY set), or the value was altered."""


@functools.lru_cache(maxsize=8)
def _fernet(key_material: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        key_material.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _cipher() -> Fernet:
    cfg = current_app.config
    return _fernet(str(cfg.get("TWOFA_ENCRYPTION_KEY") or cfg["SECRET_KEY"]))


def seal(secret: str) -> str:
    """The secret as it is stored: a Fernet token (ASCII, about 140 characters)."""
    return _cipher().encrypt(secret.encode("ascii")).decode("ascii")


def unseal(stored: str) -> str:
    """The secret of a stored token; SecretUnreadable when it cannot be decrypted."""
    try:
        return _cipher().decrypt(stored.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError) as error:
        raise SecretUnreadable("the stored TOTP secret cannot be decrypted") from error
