"""Signed, purpose-bound links (itsdangerous). One salt per purpose, one max age each.

A subscriber link names its person by their random `link_key` ({"k": ...}), never by
the row id: an id is countable (it tells how many subscribers there are) and, once its
row is gone, could name someone else. Every payload also carries the subscriber's
`token_version`; bumping it revokes every outstanding link of that subscriber.

Links made before migration 0008 carry the id instead ({"s": N}); see
`SubscriberLink.legacy_id` for when they are still honoured.

Timestamps come from the app's clock (timeutil.utcnow), so tests move link ages with it.

SECRET_KEY can be rotated without breaking the links in mail already sent: the old key
goes into SECRET_KEY_FALLBACKS (Flask's own setting, which its session cookie honours
too). Links are then read under any of the keys and signed under SECRET_KEY.
"""

from __future__ import annotations

import enum
import functools
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes
from itsdangerous.signer import HMACAlgorithm

from newsletters.timeutil import utcnow


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    LOGIN = "login"
    # One-click subscribe to one newsletter, offered in the welcome letter to enrolled
    # subscribers: the link came to their own address, so pressing the button on its
    # page is the confirmation.
    JOIN = "join"
    # The long-lived cookie of a browser that has logged in to staff accounts before
    # (staff/throttle.py): such a browser is never held up by others' failed attempts.
    STAFF_DEVICE = "staff-device"


def _max_age(purpose: Purpose) -> int | None:
    cfg = current_app.config
    if purpose is Purpose.CONFIRM:
        return int(cfg["CONFIRM_MAX_AGE_DAYS"] * 86400)
    if purpose is Purpose.MANAGE:
        return int(cfg["MANAGE_MAX_AGE_DAYS"] * 86400)
    if purpose is Purpose.LOGIN:
        return 3600
    if purpose is Purpose.JOIN:
        return int(cfg["JOIN_MAX_AGE_DAYS"] * 86400)
    if purpose is Purpose.STAFF_DEVICE:
        return int(cfg["STAFF_DEVICE_MAX_AGE_DAYS"] * 86400)
    # Unsubscribing grants no access and must work from any old mail (RFC 8058).
    return None


class TokenError(Exception):
    """The link cannot be used. `expired` links still carry their (verified) payload."""

    def __init__(
        self,
        reason: str,
        payload: dict[str, Any] | None = None,
        signed_at: datetime | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid" or "expired"
        self.payload = payload
        self.signed_at = signed_at

    @property
    def expired(self) -> bool:
        return self.reason == "expired"


def secret_keys() -> tuple[str, ...]:
    """SECRET_KEY_FALLBACKS, then SECRET_KEY: itsdangerous' order (it signs with the last
    and tries them all, newest first), as Flask's session cookie uses them."""
    cfg = current_app.config
    return (*(cfg.get("SECRET_KEY_FALLBACKS") or ()), cfg["SECRET_KEY"])


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    return _cached_serializer(secret_keys(), purpose)


def _now() -> int:
    return int(utcnow().timestamp())


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer on the app's clock (signing and age checks)."""

    def get_timestamp(self) -> int:
        return _now()


@functools.lru_cache(maxsize=32)
def _cached_serializer(keys: tuple[str, ...], purpose: Purpose) -> URLSafeTimedSerializer:
    # Built once per set of keys and purpose: a bulk send signs two links per message.
    return URLSafeTimedSerializer(
        list(keys), salt=f"newsletters.{purpose.value}", signer=_ClockSigner
    )


def sign(purpose: Purpose, payload: dict[str, Any]) -> str:
    """A URL-safe signed token for this purpose."""
    return _serializer(purpose).dumps(payload)


class BulkSigner:
    """Signs tokens of one purpose fast enough for a send to 100 000 people.

    The tokens are exactly those `sign` makes and `verify` reads: the same compact JSON,
    timestamp and HMAC under the same derived key. itsdangerous derives that key and
    tries zlib on every call; here the keyed HMAC state is made once and copied per
    token, and the payload is never compressed (a subscriber link's JSON is far too
    short for zlib to win, and `verify` reads either form). A bulk send signs two links
    per message; this takes ~10 us per link instead of ~85.
    """

    def __init__(self, purpose: Purpose) -> None:
        signer = _serializer(purpose).make_signer()
        if not isinstance(signer.algorithm, HMACAlgorithm):  # pragma: no cover
            raise TypeError("BulkSigner only knows HMAC signatures")
        self._sep = signer.sep
        self._hmac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._timestamp = 0
        self._timestamp_b64 = b""

    def sign(self, payload: dict[str, Any]) -> str:
        return self.sign_encoded(encode_payload(payload))

    def sign_encoded(self, encoded: bytes) -> str:
        """`sign` for a payload already encoded (`encode_payload`,
        `SubscriberLink.encoded`): a mail signs one person's payload for several purposes."""
        now = _now()
        if now != self._timestamp:
            self._timestamp, self._timestamp_b64 = now, base64_encode(int_to_bytes(now))
        value = b"".join((encoded, self._sep, self._timestamp_b64))
        mac = self._hmac.copy()
        mac.update(value)
        return (value + self._sep + base64_encode(mac.digest())).decode("ascii")


def encode_payload(payload: dict[str, Any]) -> bytes:
    """A payload as `sign` puts it in a token (compact JSON, URL-safe base64, never
    compressed: `verify` reads either form)."""
    return base64_encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def verify(purpose: Purpose, token: str) -> dict[str, Any]:
    """The payload of a valid, unexpired token of this purpose; raises TokenError otherwise."""
    return verify_timed(purpose, token)[0]


def verify_timed(purpose: Purpose, token: str) -> tuple[dict[str, Any], datetime]:
    """Like `verify`, with the time the token was signed (whole seconds, rounded down)."""
    serializer = _serializer(purpose)
    try:
        payload, signed_at = serializer.loads(
            token, max_age=_max_age(purpose), return_timestamp=True
        )
    except SignatureExpired as exc:
        # The signature was good, so the payload is ours: callers may offer a new link.
        payload = serializer.load_payload(exc.payload) if exc.payload is not None else None
        raise TokenError(
            "expired", payload if isinstance(payload, dict) else None, exc.date_signed
        ) from exc
    except BadSignature as exc:
        raise TokenError("invalid") from exc
    if not isinstance(payload, dict):
        raise TokenError("invalid")
    return payload, signed_at.astimezone(UTC)


# secrets.token_urlsafe(16): 22 characters of the URL-safe base64 alphabet, 128 bits.
LINK_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True)
class SubscriberLink:
    """Whose link it is (their random link key), which version of their links, and for
    which newsletters."""

    link_key: str | None
    token_version: int
    newsletter_ids: tuple[int, ...] = ()
    # The edition whose mail carried the link (an unsubscribe link in a send), so a
    # withdrawal counts on that edition's report. Optional: links without it still work.
    edition_id: int | None = None
    # Links signed before migration 0008 named the subscriber by row id. Such a link is
    # honoured only for the row that already existed when it was signed (its created_at
    # is not after the signature): a row created later took over a freed id and belongs
    # to someone else. Nothing signs this form any more.
    legacy_id: int | None = None

    def payload(self) -> dict[str, Any]:
        if self.link_key is None:
            raise ValueError("new links carry the subscriber's link key")
        data: dict[str, Any] = {"k": self.link_key, "v": self.token_version}
        if self.newsletter_ids:
            data["n"] = list(self.newsletter_ids)
        if self.edition_id is not None:
            data["e"] = self.edition_id
        return data

    def encoded(self) -> bytes:
        """`encode_payload(self.payload())`, the JSON written directly when every value
        is plainly what it should be (a bulk send encodes one or two per person)."""
        key, ids, edition_id = self.link_key, self.newsletter_ids, self.edition_id
        if (
            key is None
            or not LINK_KEY_PATTERN.fullmatch(key)
            or type(self.token_version) is not int
            or (edition_id is not None and type(edition_id) is not int)
            or any(type(n) is not int for n in ids)
        ):
            return encode_payload(self.payload())
        # What json.dumps writes for these: the key needs no escaping, ints as they are.
        text = f'{{"k":"{key}","v":{self.token_version}'
        if ids:
            text += f',"n":[{",".join(map(str, ids))}]'
        if edition_id is not None:
            text += f',"e":{edition_id}'
        return base64_encode((text + "}").encode("ascii"))

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SubscriberLink:
        try:
            key = payload.get("k")
            legacy_id = None
            if key is None:
                legacy_id = int(payload["s"])
                if not 0 < legacy_id < 2**31:
                    raise ValueError("not a row id")
            elif not isinstance(key, str) or not LINK_KEY_PATTERN.fullmatch(key):
                raise ValueError("not a link key")
            edition_id = payload.get("e")
            if edition_id is not None and (
                type(edition_id) is not int or not 0 < edition_id < 2**31
            ):
                raise ValueError("not an edition id")
            return cls(
                link_key=key,
                token_version=int(payload["v"]),
                newsletter_ids=tuple(int(n) for n in payload.get("n", ())),
                edition_id=edition_id,
                legacy_id=legacy_id,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TokenError("invalid") from exc
