"""Staff sign-in by OpenID Connect: the relying party's side of the authorisation code
flow with PKCE (RFC 7636), state and nonce, against one configured provider.

Authlib does the protocol's parts (the S256 code challenge, the ID token's claims rules:
issuer, audience, expiry, nonce, at_hash) and joserfc the signatures; the three HTTP calls
(discovery, keys, token) go through httpx with a deadline and a size limit. The
provider's metadata and keys are fetched once and kept for METADATA_MAX_AGE seconds; an
ID token signed with a key we do not know makes us fetch the keys again (the provider
rotated them), at most once per KEYS_REFETCH_SECONDS, so forged tokens cannot make us
hammer the provider.

No request, no session, no database here: `begin` returns the URL to send the browser to
and the flow's secrets (the caller keeps them in the signed session cookie), `finish`
turns the callback's parameters and those secrets into an `Identity` or raises SsoError
with a reason code.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from newsletters.names import InvalidName, clean_name
from newsletters.staff.models import StaffRole
from newsletters.timeutil import utcnow

if TYPE_CHECKING:
    import httpx
    from joserfc.jwk import KeySet

# httpx, Authlib and joserfc are imported where a sign-in uses them, not with this module:
# every process imports it (the staff pages' access checks), and they would add a tenth
# of a second to the start of each one (the worker, every CLI command).

SCOPES = "openid email profile"
METADATA_MAX_AGE = 3600.0
KEYS_REFETCH_SECONDS = 60.0
# A sign-in started longer ago than this is refused (the person starts again).
FLOW_MAX_AGE_SECONDS = 600
# Documents larger than this are not read: a provider answers in a few kilobytes.
MAX_DOCUMENT_BYTES = 512 * 1024
# Leeway for the ID token's times (clocks of two machines).
LEEWAY_SECONDS = 120
# What of a claim we look at: values of the roles claim, and their length.
MAX_ROLE_VALUES = 500
MAX_ROLE_LENGTH = 256


class SettingsError(ValueError):
    """The OIDC_* settings do not make a working sign-in."""


class SsoError(Exception):
    """A sign-in that did not succeed; `reason` is the code in the audit log and picks
    the page the person sees."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Settings:
    issuer: str
    client_id: str
    client_secret: str
    roles_claim: str
    admin_roles: frozenset[str]
    editor_roles: frozenset[str]
    provider_name: str
    timeout: float


@dataclass(frozen=True)
class Identity:
    """The person the provider vouched for, with claims already made safe to store."""

    issuer: str
    subject: str
    email: str | None
    name: str
    # The role the roles claim gives (None: it names no configured value, or is absent).
    role: StaffRole | None


def string_list(value: Any) -> tuple[str, ...]:
    """A list setting: a list, or a comma-separated string (from the environment)."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list | tuple | set | frozenset):
        parts = [str(item) for item in value]
    else:
        raise SettingsError(f"expected a list or a comma-separated text, not {value!r}")
    return tuple(part.strip() for part in parts if part.strip())


def settings(config: Mapping[str, Any]) -> Settings | None:
    """The provider's settings, or None when OIDC sign-in is not configured."""
    issuer = str(config.get("OIDC_ISSUER") or "").strip()
    if not issuer:
        return None
    client_id = str(config.get("OIDC_CLIENT_ID") or "").strip()
    if not client_id:
        raise SettingsError("OIDC_ISSUER is set but OIDC_CLIENT_ID is not")
    return Settings(
        issuer=issuer.rstrip("/"),
        client_id=client_id,
        client_secret=str(config.get("OIDC_CLIENT_SECRET") or ""),
        roles_claim=str(config.get("OIDC_ROLES_CLAIM") or "roles").strip(),
        admin_roles=frozenset(string_list(config.get("OIDC_ADMIN_ROLES"))),
        editor_roles=frozenset(string_list(config.get("OIDC_EDITOR_ROLES"))),
        provider_name=str(config.get("OIDC_PROVIDER_NAME") or "").strip(),
        timeout=float(config.get("OIDC_TIMEOUT_SECONDS") or 10),
    )


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse settings that would let nobody in (or that are not settings at all)."""
    configured = settings(config)
    string_list(config.get("OIDC_ADMIN_ROLES"))
    string_list(config.get("OIDC_EDITOR_ROLES"))
    if configured is None and not config.get("LOCAL_LOGIN_ENABLED", True):
        raise SettingsError(
            "LOCAL_LOGIN_ENABLED is false and OIDC_ISSUER is not set: nobody could log in"
        )


# --------------------------------------------------------------------------- the provider

_lock = threading.Lock()
# issuer -> (fetched at, metadata); jwks_uri -> (fetched at, key set as JSON)
_metadata: dict[str, tuple[float, dict[str, Any]]] = {}
_keys: dict[str, tuple[float, dict[str, Any]]] = {}


def forget_provider() -> None:
    """Drop the cached metadata and keys (tests; an operator changing the issuer)."""
    with _lock:
        _metadata.clear()
        _keys.clear()


def _read_json(response: httpx.Response) -> Any:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise SsoError("provider_error", f"{response.url} sent more than we read")
    try:
        return json.loads(bytes(body))
    except ValueError as exc:
        raise SsoError("provider_error", f"{response.url} sent no JSON") from exc


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=False) as response:
            if response.status_code != 200:
                raise SsoError("provider_unavailable", f"{url} answered {response.status_code}")
            document = _read_json(response)
    except httpx.HTTPError as exc:
        raise SsoError("provider_unavailable", f"{url}: {exc}") from exc
    if not isinstance(document, dict):
        raise SsoError("provider_error", f"{url} sent no JSON object")
    return document


def metadata(s: Settings) -> dict[str, Any]:
    """The provider's discovery document (cached), checked to name the configured issuer."""
    now = time.monotonic()
    with _lock:
        cached = _metadata.get(s.issuer)
    if cached is not None and now - cached[0] < METADATA_MAX_AGE:
        return cached[1]
    document = _get_json(f"{s.issuer}/.well-known/openid-configuration", s.timeout)
    if str(document.get("issuer", "")).rstrip("/") != s.issuer:
        raise SsoError("provider_error", f"the discovery document names {document.get('issuer')!r}")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(key), str):
            raise SsoError("provider_error", f"the discovery document has no {key}")
    with _lock:
        _metadata[s.issuer] = (now, document)
    return document


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def sign_in_origins(s: Settings) -> list[str]:
    """Where the SSO button's POST may be redirected (the login page's CSP form-action):
    the issuer's origin and, once known, its authorisation endpoint's. No network here:
    the login page must open also when the provider is down."""
    origins = [_origin(s.issuer)]
    with _lock:
        cached = _metadata.get(s.issuer)
    if cached is not None:
        origins.append(_origin(str(cached[1].get("authorization_endpoint", ""))))
    return sorted({o for o in origins if o})


def _key_set(s: Settings, meta: dict[str, Any], *, refresh: bool = False) -> KeySet:
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    uri = meta["jwks_uri"]
    now = time.monotonic()
    with _lock:
        cached = _keys.get(uri)
    if cached is not None:
        age = now - cached[0]
        if age < (KEYS_REFETCH_SECONDS if refresh else METADATA_MAX_AGE):
            return KeySet.import_key_set(cached[1])
    document = _get_json(uri, s.timeout)
    try:
        keys = KeySet.import_key_set(document)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoError("provider_error", "the provider's keys cannot be read") from exc
    with _lock:
        _keys[uri] = (now, document)
    return keys


# --------------------------------------------------------------------------- the flow


def begin(s: Settings, redirect_uri: str) -> tuple[str, dict[str, Any]]:
    """(URL of the provider's sign-in, the flow's secrets to keep until the callback)."""
    from authlib.common.urls import add_params_to_uri
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    meta = metadata(s)
    flow = {
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "verifier": secrets.token_urlsafe(64),
        "started": int(utcnow().timestamp()),
    }
    url = add_params_to_uri(
        meta["authorization_endpoint"],
        [
            ("response_type", "code"),
            ("client_id", s.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", SCOPES),
            ("state", flow["state"]),
            ("nonce", flow["nonce"]),
            ("code_challenge", create_s256_code_challenge(flow["verifier"])),
            ("code_challenge_method", "S256"),
        ],
    )
    return url, flow


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a, b)


def finish(s: Settings, flow: Any, args: Mapping[str, str], redirect_uri: str) -> Identity:
    """Check the provider's answer against the flow it belongs to, redeem the code and
    check the ID token; the person it names."""
    # An error answer grants nothing, so it needs no state to be believed (some
    # providers leave the state out of it); the flow is used up all the same.
    error = args.get("error")
    if error:
        reason = "denied" if error in ("access_denied", "consent_required") else "provider_error"
        raise SsoError(reason, str(error)[:100])
    if not isinstance(flow, dict) or not _same(args.get("state"), flow.get("state")):
        raise SsoError("bad_state")
    started = flow.get("started")
    if not isinstance(started, int) or utcnow().timestamp() - started > FLOW_MAX_AGE_SECONDS:
        raise SsoError("expired")
    code = args.get("code") or ""
    if not code or len(code) > 4096:
        raise SsoError("bad_response", "no code")
    meta = metadata(s)
    token = _redeem(s, meta, code, redirect_uri, str(flow.get("verifier", "")))
    claims = _check_id_token(s, meta, token, nonce=str(flow.get("nonce", "")))
    return _identity(s, claims)


def _redeem(
    s: Settings, meta: dict[str, Any], code: str, redirect_uri: str, verifier: str
) -> dict[str, Any]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": s.client_id,
    }
    import httpx

    try:
        with httpx.stream(
            "POST",
            meta["token_endpoint"],
            data=data,
            auth=(s.client_id, s.client_secret),
            headers={"Accept": "application/json"},
            timeout=s.timeout,
            follow_redirects=False,
        ) as response:
            answer = _read_json(response)
            status = response.status_code
    except httpx.HTTPError as exc:
        raise SsoError("provider_unavailable", f"token endpoint: {exc}") from exc
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise SsoError("token_refused", f"{status} {str(error)[:100]}")
    return answer


def _check_id_token(
    s: Settings, meta: dict[str, Any], token: dict[str, Any], *, nonce: str
) -> dict[str, Any]:
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import InvalidKeyIdError, JoseError
    from joserfc.jws import JWSRegistry

    id_token = token.get("id_token")
    if not isinstance(id_token, str) or len(id_token) > MAX_DOCUMENT_BYTES:
        raise SsoError("bad_token", "no ID token")
    offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
    # Never "none", and no HMAC: the signature must be the provider's key, not a secret
    # that we hold too.
    algorithms = [a for a in offered if isinstance(a, str) and a != "none" and a[:2] != "HS"]
    registry = JWSRegistry(algorithms=algorithms or ["RS256"])
    try:
        try:
            decoded = jwt.decode(id_token, _key_set(s, meta), registry=registry)
        except InvalidKeyIdError:
            decoded = jwt.decode(id_token, _key_set(s, meta, refresh=True), registry=registry)
        access_token = token.get("access_token")
        params: dict[str, Any] = {"nonce": nonce, "client_id": s.client_id}
        if isinstance(access_token, str):
            params["access_token"] = access_token
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": str(meta["issuer"])},
                "aud": {"essential": True, "value": s.client_id},
                "nonce": {"essential": True},
            },
            params,
        )
        claims.validate(leeway=LEEWAY_SECONDS)
    except SsoError:
        raise
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoError("bad_token", f"{type(exc).__name__}: {exc}"[:200]) from exc
    return dict(claims)


def _clean_text(value: Any, limit: int) -> str | None:
    """A claim that is one short line of text, or None."""
    if not isinstance(value, str) or not value or len(value) > limit:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        return None
    return value


def role_of(s: Settings, values: Any) -> StaffRole | None:
    """The role the claim's values give: administrator before editor, None for neither."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return None
    seen = {v for v in values[:MAX_ROLE_VALUES] if isinstance(v, str) and len(v) <= MAX_ROLE_LENGTH}
    if seen & s.admin_roles:
        return StaffRole.ADMIN
    if seen & s.editor_roles:
        return StaffRole.EDITOR
    return None


def _identity(s: Settings, claims: dict[str, Any]) -> Identity:
    subject = _clean_text(claims.get("sub"), 255)
    if subject is None:
        raise SsoError("bad_claims", "the ID token's sub is not a short line of text")
    email = None
    # An address the provider says it has not verified names nobody.
    if claims.get("email_verified") is not False:
        for key in ("email", "preferred_username", "upn"):
            candidate = _clean_text(claims.get(key), 320)
            if candidate and "@" in candidate:
                email = candidate
                break
    try:
        name = clean_name(_clean_text(claims.get("name"), 200) or "")
    except InvalidName:
        name = ""
    return Identity(
        issuer=s.issuer,
        subject=subject,
        email=email,
        name=name,
        role=role_of(s, claims.get(s.roles_claim)),
    )
