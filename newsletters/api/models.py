from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from newsletters.extensions import db
from newsletters.timeutil import UTCDateTime, utcnow


class ApiToken(db.Model):
    """A bearer token of the REST API. The token itself is shown once, when it is made;
    only its SHA-256 is kept (a token is 256 random bits: no salt or slow hash needed)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Hex SHA-256 of the token; unique, so it is indexed for the lookup of every request.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Comma-separated, from tokens.SCOPES.
    scopes: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who made it: a staff member's address, or "cli".
    created_by: Mapped[str] = mapped_column(String(320), default="")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]

    @property
    def active(self) -> bool:
        return self.revoked_at is None
