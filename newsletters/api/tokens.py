"""API tokens: made, listed, revoked and checked here, and nowhere else.

A token is shown once, when it is made (`nlt_` and 256 random bits); only its SHA-256 is
stored. Every creation, the first use of a new token and every revocation is announced
(`newsletters.events`) and so written to the audit log in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from newsletters import events
from newsletters.api.models import ApiToken
from newsletters.extensions import db
from newsletters.timeutil import utcnow

SCOPES = (
    "subscriptions:write",
    "subscribers:read",
    "subscribers:write",
    "editions:read",
    "editions:write",
    "editions:send",
    "webhooks:manage",
)
PREFIX = "nlt_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,35}$")
# A token is the prefix and 43 URL-safe characters; anything else is not looked up.
TOKEN_PATTERN = re.compile(r"^nlt_[A-Za-z0-9_-]{43}$")
# `last_used_at` is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRefused(ValueError):
    """A token cannot be made or revoked as asked (bad name or scope, name taken, unknown)."""


@dataclass(frozen=True)
class Caller:
    """A checked token, as a request carries it: plain values, no database row."""

    id: int
    name: str
    scopes: frozenset[str]

    def actor(self, ip: str | None) -> events.Actor:
        return events.Actor(ip=ip, via=f"api:{self.name}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def parse_scopes(value: str | Iterable[str]) -> list[str]:
    """Scopes from 'a,b' (or a list), each one of SCOPES, in SCOPES' order; at least one."""
    items = value.split(",") if isinstance(value, str) else list(value)
    wanted = {item.strip() for item in items if item.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise TokenRefused(
            f"unknown scope(s): {', '.join(s[:40] for s in unknown)} (known: {', '.join(SCOPES)})"
        )
    if not wanted:
        raise TokenRefused("name at least one scope")
    return [s for s in SCOPES if s in wanted]


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise TokenRefused(
            "a token's name is 1 to 36 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def create_token(
    name: str, scopes: str | Iterable[str], *, actor: events.Actor, created_by: str = ""
) -> tuple[ApiToken, str]:
    """Make a token; returns the row and the token itself (shown once, never stored)."""
    name = _check_name(name)
    scope_list = parse_scopes(scopes)
    if db.session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        db.session.rollback()
        raise TokenRefused(f"there is already a token named {name!r} (names stay taken)")
    plain = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        token_hash=hash_token(plain),
        scopes=",".join(scope_list),
        created_by=created_by[:320],
    )
    db.session.add(token)
    db.session.flush()
    events.announce(
        "api_token.create", f"api_token:{token.id}", actor=actor, name=name, scopes=scope_list
    )
    db.session.commit()
    return token, plain


def list_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke(name: str, *, actor: events.Actor) -> ApiToken:
    """Revoke a token for good (it answers 401 from now on). Revoking twice is refused."""
    token = db.session.scalar(
        select(ApiToken).where(ApiToken.name == (name or "").strip()[:100]).with_for_update()
    )
    if token is None:
        db.session.rollback()
        raise TokenRefused(f"there is no token named {name[:100]!r}")
    if token.revoked_at is not None:
        db.session.rollback()
        raise TokenRefused(f"the token {token.name!r} was revoked already")
    token.revoked_at = utcnow()
    events.announce("api_token.revoke", f"api_token:{token.id}", actor=actor, name=token.name)
    db.session.commit()
    return token


def authenticate(plain: str, *, ip: str | None = None) -> Caller | None:
    """The caller a bearer token names, or None (unknown, malformed or revoked).

    Notes the use: the first use of a new token is audited; later uses move
    `last_used_at` at most once a minute.
    """
    if not TOKEN_PATTERN.match(plain or ""):
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plain)))
    if token is None or token.revoked_at is not None:
        db.session.rollback()
        return None
    caller = Caller(id=token.id, name=token.name, scopes=frozenset(token.scope_list))
    now = utcnow()
    first_use = token.last_used_at is None
    if first_use or token.last_used_at < now - LAST_USED_RESOLUTION:
        # Conditional, so two first requests at once audit the first use once.
        moved = db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token.id, ApiToken.last_used_at.is_(token.last_used_at))
            .values(last_used_at=now)
            if first_use
            else update(ApiToken)
            .where(ApiToken.id == token.id, ApiToken.last_used_at == token.last_used_at)
            .values(last_used_at=now)
        ).rowcount
        if first_use and moved:
            events.announce(
                "api_token.first_use",
                f"api_token:{token.id}",
                actor=caller.actor(ip),
                name=token.name,
            )
    db.session.commit()
    return caller


def may_use_newsletter(caller: Caller, newsletter_slug: str) -> bool:
    """Whether this token may act on this newsletter: the one place where a token's
    access to a newsletter is checked (rights per newsletter will land here). Today every
    token may use every newsletter its scopes cover."""
    return True
