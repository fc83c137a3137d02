"""TOTP secrets encrypted at rest: a copy of the database (a backup, a dump handed to a
developer) must not be enough to make a person's codes.

Fernet (AES-128-CBC with HMAC-SHA256, `cryptography`) under a key derived with HKDF-SHA256
from TWOFA_ENCRYPTION_KEY, or from SECRET_KEY when that is not set (the same pattern as
SUPPRESSION_HASH_KEY): the key is never the SECRET_KEY itself, and a key for another
purpose derived from it tells nothing about this one. Set TWOFA_ENCRYPTION_KEY explicitly
to be able to rotate SECRET_KEY without everyone having to set up their app again.

Rotating the key: the new one becomes TWOFA_ENCRYPTION_KEY and the old one goes into
TWOFA_ENCRYPTION_KEY_FALLBACKS. Secrets are then read under any of them and sealed under
the new one; `flask staff reseal-2fa` seals every stored secret under the new key, after
which the old one can be dropped. Secrets sealed before TWOFA_ENCRYPTION_KEY was first
set (under SECRET_KEY) stay readable the same way, SECRET_KEY and SECRET_KEY_FALLBACKS
being tried last.

Migration 0026 encrypts the secrets stored before this module, with the same derivation
(kept there as a copy, as a migration must not change when this code does).
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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


def key_materials(config) -> tuple[str, ...]:
    """The key materials in the order they are tried: the current one (it seals), then
    TWOFA_ENCRYPTION_KEY_FALLBACKS, then SECRET_KEY and SECRET_KEY_FALLBACKS."""
    current = str(config.get("TWOFA_ENCRYPTION_KEY") or config["SECRET_KEY"])
    fallbacks = config.get("TWOFA_ENCRYPTION_KEY_FALLBACKS") or ()
    if isinstance(fallbacks, str):
        fallbacks = (fallbacks,)
    materials = [
        current,
        *(str(m) for m in fallbacks),
        str(config["SECRET_KEY"]),
        *(str(m) for m in config.get("SECRET_KEY_FALLBACKS") or ()),
    ]
    return tuple(dict.fromkeys(materials))  # each once, in order


@functools.lru_cache(maxsize=8)
def _multi(materials: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(m) for m in materials])


def _cipher() -> MultiFernet:
    return _multi(key_materials(current_app.config))


def seal(secret: str) -> str:
    """The secret as it is stored: a Fernet token (ASCII, about 140 characters), under the
    current key."""
    return _cipher().encrypt(secret.encode("ascii")).decode("ascii")


def unseal(stored: str) -> str:
    """The secret of a stored token (under the current key or a fallback);
    SecretUnreadable when it cannot be decrypted."""
    try:
        return _cipher().decrypt(stored.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError) as error:
        raise SecretUnreadable("the stored TOTP secret cannot be decrypted") from error


def sealed_with_current_key(stored: str) -> bool:
    try:
        _fernet(key_materials(current_app.config)[0]).decrypt(stored.encode("ascii"))
    except (InvalidToken, UnicodeError, ValueError):
        return False
    return True


def reseal(stored: str) -> str:
    """The same secret sealed under the current key; SecretUnreadable if no key reads it."""
    try:
        return _cipher().rotate(stored.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError) as error:
        raise SecretUnreadable("the stored TOTP secret cannot be decrypted") from error
