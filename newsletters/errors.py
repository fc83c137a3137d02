"""Error pages in the reader's language, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from newsletters import busy
from newsletters.extensions import db

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return render_template("errors/error.html", code=400, kind="csrf"), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
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
            return (
                render_template("errors/error.html", code=503, kind="busy"),
                503,
                {"Retry-After": str(busy.RETRY_AFTER_SECONDS)},
            )
        log.exception("unhandled error")
        return (
            render_template("errors/error.html", code=500, kind="http"),
            InternalServerError.code,
        )
