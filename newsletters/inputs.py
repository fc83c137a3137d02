"""What a request may bring: bounded ids in URLs, no NUL anywhere, bounded page numbers
and dates, and a body size limit answered before the body is read.

Every rule here holds for every route, so no view has to remember it: hostile input gets
a clear 4xx, never a 5xx from the database or the parser.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from flask import Flask, current_app, has_app_context, request
from flask.wrappers import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.routing import IntegerConverter
from werkzeug.wsgi import LimitedStream

# The largest id any table can hold (PostgreSQL's INTEGER; SQLite's are wider). A larger
# number in a URL names nothing: 404, not an overflow in the driver.
MAX_ID = 2**31 - 1
# Page numbers beyond this are the last page anyway (50 000 000 rows at 50 a page).
MAX_PAGE = 1_000_000
# Days a person may filter by: wider than any data, narrow enough for every date
# computation (a day added, a time zone applied) to stay within datetime's range.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)

F = TypeVar("F", bound=Callable[..., Any])


class NulCharacter(BadRequest):
    """A NUL character in the path, the query, a form field or the User-Agent."""

    kind = "nul"


class IdConverter(IntegerConverter):
    """`<int:...>` for ids: ASCII digits only, at most MAX_ID; anything else is a 404.

    Werkzeug's own converter accepts any length (and Unicode digits): 20 nines reach the
    database driver, which cannot bind them (SQLite: OverflowError; PostgreSQL: out of
    range), and 5000 digits exceed Python's int parsing limit.
    """

    regex = r"[0-9]{1,10}"

    def __init__(self, url_map, fixed_digits: int = 0, min=None, max=None) -> None:  # noqa: A002
        upper = MAX_ID if max is None else max
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=upper)


def page_number(value: str | None) -> int:
    """A `?page=` value as a page number from 1 to MAX_PAGE (1 when it is not a number)."""
    if not value or not (value.isascii() and value.isdigit()):
        return 1
    if len(value) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return min(max(1, int(value)), MAX_PAGE)


def clamp_day(day: date) -> date:
    """A date a person typed, kept within FIRST_DAY..LAST_DAY."""
    return min(max(day, FIRST_DAY), LAST_DAY)


def larger_body(setting: str) -> Callable[[F], F]:
    """Let one view accept bodies up to the config value `setting` instead of
    MAX_CONTENT_LENGTH (the import upload). Put it right under the route decorator."""

    def decorate(view: F) -> F:
        view.max_content_length_setting = setting  # type: ignore[attr-defined]
        return view

    return decorate


class BoundedFormParser(FormDataParser):
    """Werkzeug's form parser, with its multipart limits applied to urlencoded bodies
    too: Werkzeug reads those whole and splits them into as many fields as there are
    `&`, so a 10 MB body of `a&a&a...` would become five million fields."""

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        limit = self.max_form_memory_size
        data = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise RequestEntityTooLarge()
        if self.max_form_parts is not None and data.count(b"&") >= self.max_form_parts:
            raise RequestEntityTooLarge()
        items = parse_qsl(data.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
        return stream, self.cls(items), self.cls()


class AppRequest(Request):
    """Flask's request, with the body limit of the view the URL matched.

    The limit is known as soon as the URL is matched, before any hook (CSRF included)
    reads the body: Werkzeug then refuses a declared Content-Length above it, and cuts
    off a chunked body when it passes it.
    """

    @property
    def max_content_length(self) -> int | None:  # type: ignore[override]
        if self._max_content_length is not None:
            return self._max_content_length
        if not has_app_context():
            return super().max_content_length
        return body_limit(self)

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    form_data_parser_class = BoundedFormParser

    def _load_form_data(self) -> None:
        super()._load_form_data()
        # A streamed (chunked) body is read up to the limit and no further; one that
        # reached it was cut short, and half a form must not be acted on.
        stream = self.stream
        if (
            self.content_length is None
            and isinstance(stream, LimitedStream)
            and self.max_content_length is not None
            and stream.is_exhausted
        ):
            raise RequestEntityTooLarge()
        # A multipart part whose name the parser could not read (a line break in it)
        # comes back under the key None, which no form field has and which hooks that
        # look at every key (CSRF's) cannot take: such a body is malformed.
        if None in self.form or None in self.files:
            raise BadRequest("a form part without a readable name")


def body_limit(req: Request) -> int | None:
    """MAX_CONTENT_LENGTH, or the larger setting of the matched view (`larger_body`)."""
    config = current_app.config
    view = current_app.view_functions.get(req.endpoint or "")
    setting = getattr(view, "max_content_length_setting", None)
    return config.get(setting) if setting else config.get("MAX_CONTENT_LENGTH")


def _has_nul(values) -> bool:
    # A multipart part whose name the parser could not read has the key None.
    return any(
        "\x00" in (key or "") or any(isinstance(v, str) and "\x00" in v for v in vals)
        for key, vals in values.lists()
    )


def init_app(app: Flask) -> None:
    app.request_class = AppRequest
    # Before any blueprint adds a rule: every `<int:...>` in the app is bounded.
    app.url_map.converters["int"] = IdConverter

    @app.before_request
    def _refuse_oversized_and_nul() -> None:
        # A declared body above the limit is refused before anything reads it, also on
        # routes that never read a body; the connection is then closed (see below), so
        # the server does not read the body either.
        limit = body_limit(request)
        if limit is not None and (request.content_length or 0) > limit:
            raise RequestEntityTooLarge()
        # NUL is no character any person types, PostgreSQL cannot store it, and it cuts
        # strings short in C libraries: refused in the path, query and form alike.
        if "\x00" in request.path or _has_nul(request.args):
            raise NulCharacter()
        if "\x00" in (request.headers.get("User-Agent") or ""):
            raise NulCharacter()
        if request.method in ("POST", "PUT", "PATCH") and _has_nul(request.form):
            raise NulCharacter()

    @app.after_request
    def _close_after_refused_body(response):
        # The body of a refused request was not read: the connection cannot carry
        # another request, and must not wait for the rest of the body either.
        if response.status_code == 413:
            response.headers["Connection"] = "close"
        return response
