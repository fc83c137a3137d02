"""Making API tokens and calling the API as a client would."""

from __future__ import annotations

from flask import Flask

from newsletters import events
from newsletters.api import tokens
from newsletters.extensions import db

ALL_SCOPES = ",".join(tokens.SCOPES)


def make_token(app: Flask, name: str = "site", scopes: str = ALL_SCOPES) -> str:
    with app.app_context():
        _, plain = tokens.create_token(name, scopes, actor=events.CLI)
        db.session.remove()
        return plain


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
