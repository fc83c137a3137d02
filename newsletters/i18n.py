"""Locale selection: Danish first, English second.

`?lang=en` (links in mails carry the subscriber's language) wins, then the `lang`
preference cookie, then Danish. The browser's Accept-Language is deliberately not used:
KL's readers read Danish even on English-language machines.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_babel import get_locale

LANG_COOKIE = "lang"


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    try:
        asked = request.args.get("lang") or request.cookies.get(LANG_COOKIE)
    except RuntimeError:  # outside a request (CLI, worker)
        asked = None
    return asked if asked in languages else current_app.config["BABEL_DEFAULT_LOCALE"]


def current_locale() -> str:
    return str(get_locale() or current_app.config["BABEL_DEFAULT_LOCALE"])


def init_app(app: Flask) -> None:
    @app.after_request
    def _remember_language(response: Response) -> Response:
        # Remembering the reader's choice of language is a display preference, not a
        # change of state on the server.
        asked = request.args.get("lang")
        if asked in app.config["LANGUAGES"] and request.cookies.get(LANG_COOKIE) != asked:
            response.set_cookie(
                LANG_COOKIE,
                asked,
                max_age=365 * 86400,
                secure=app.config["SESSION_COOKIE_SECURE"],
                httponly=True,
                samesite="Lax",
            )
        return response

    @app.context_processor
    def _locale_context() -> dict:
        return {"current_locale": current_locale(), "languages": app.config["LANGUAGES"]}
