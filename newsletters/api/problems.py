"""How the API says no: RFC 9457 problem details, `application/problem+json`.

Every refusal of the API, whether a view raises `Problem`, a request is refused before it
reaches a view (401, 403, 404, 405, 413, 415, 429) or something fails (503, and the 500
that must never happen), is answered here, so the format is the same everywhere.
"""

from __future__ import annotations

import json
import math
import time
from http import HTTPStatus
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from newsletters.errors import answer_under

PROBLEM_TYPE = "application/problem+json"
PREFIX = "/api/v1"


class Problem(Exception):
    """An API refusal: status, a short title, what went wrong, and the fields at fault."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    status: int,
    detail: str = "",
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_TYPE)
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


# What the API says for a refusal that did not come from one of its views.
_DETAILS = {
    401: "Send a valid API token: Authorization: Bearer <token>.",
    404: "There is no such resource.",
    405: "This resource does not take that method.",
    413: "The request body is too large.",
    415: "Send the body as JSON (Content-Type: application/json).",
    429: "Too many requests with this token; wait as Retry-After says.",
    503: "The database is busy; try again shortly.",
    500: "Something went wrong on our side; nothing was changed.",
}


def _retry_after() -> str:
    from newsletters.extensions import limiter

    current = limiter.current_limit
    if current is None:
        return "60"
    return str(max(1, math.ceil(current.reset_at - time.time())))


def _render(status: int, error: Exception, headers: dict[str, str]) -> Response:
    if isinstance(error, Problem):
        return problem_response(
            error.status, error.detail, errors=error.errors, headers=error.headers
        )
    headers = dict(headers)
    if status == 429:
        headers["Retry-After"] = _retry_after()
    if status == 405 and isinstance(error, HTTPException):
        allowed = error.get_headers()
        headers.update({k: v for k, v in allowed if k == "Allow"})
    if status not in _DETAILS and status >= 500:
        status = 500
    detail = _DETAILS.get(status, "")
    if status == 400 and getattr(error, "kind", "") == "nul":
        detail = "A NUL character is not allowed anywhere in a request."
    return problem_response(status, detail, headers=headers)


def init_app(app: Flask) -> None:
    answer_under(app, PREFIX, _render)
    app.register_error_handler(Problem, lambda error: _render(error.status, error, {}))
