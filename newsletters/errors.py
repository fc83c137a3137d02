"""Error pages in the reader's language, never a stack trace.

A part of the site that answers in another format (the REST API's problem details)
registers its own renderer for its path prefix with `answer_under`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from newsletters import busy
from newsletters.extensions import db

log = logging.getLogger(__name__)

# render(status, error, headers) -> response
Renderer = Callable[[int, Exception, dict[str, str]], Any]


def answer_under(app: Flask, prefix: str, render: Renderer) -> None:
    """Answer errors of requests under `prefix` with `render` instead of an HTML page."""
    app.extensions.setdefault("errors.renderers", []).append((prefix.rstrip("/"), render))


def _renderer() -> Renderer | None:
    path = request.path
    for prefix, render in current_app.extensions.get("errors.renderers", ()):
        if path == prefix or path.startswith(prefix + "/"):
            return render
    return None


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        if render := _renderer():
            return render(400, error, {})
        return render_template("errors/error.html", code=400, kind="csrf"), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        if render := _renderer():
            return render(error.code, error, {})
        kind = getattr(error, "kind", "http")
        return render_template("errors/error.html", code=error.code, kind=kind), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return _http_error(error)
        db.session.rollback()
        if busy.is_busy(error):
            # Not a fault: another transaction held the lock for too long. Nothing was
            # saved; the client may simply try again.
            # The driver's message only: the statement's parameters hold personal data.
            log.warning("database busy, answered 503: %s", getattr(error, "orig", error))
            if render := _renderer():
                return render(503, error, {"Retry-After": str(busy.RETRY_AFTER_SECONDS)})
            return (
                render_template("errors/error.html", code=503, kind="busy"),
                503,
                {"Retry-After": str(busy.RETRY_AFTER_SECONDS)},
            )
        log.exception("unhandled error")
        if render := _renderer():
            return render(500, error, {})
        return (
            render_template("errors/error.html", code=500, kind="http"),
            InternalServerError.code,
        )
