"""Fuzzing every route of the app (issue 18): hostile path parameters, query strings and
form bodies, anonymous and logged in as editor and as administrator, against the real
app on the real database (SQLite, and PostgreSQL in CI). Nothing may answer 5xx or show
a stack trace.

The routes come from the app's URL map, so a route added later is fuzzed too. Form
bodies carry a valid CSRF token (and sometimes valid values), so the POST logic itself
is reached, not only the CSRF check. Deterministic (`derandomize`, no example database)
and bounded (a fixed number of examples), so CI is stable and quick.
"""

from __future__ import annotations

import io
import re
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from newsletters.extensions import db
from newsletters.subscriptions import links
from newsletters.subscriptions.models import Subscriber
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import confirmed_subscriber
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, login, make_staff

pytestmark = pytest.mark.fuzz

EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Routes whose effect would end the fuzzing session itself.
SKIPPED = {"staff.logout"}

HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\r\n",
    "x\r\nSet-Cookie: evil=1",
    "9" * 25,
    "99999999999999999999",
    "-1",
    "0",
    "2147483648",
    "1e309",
    "NaN",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "0001-01-01T00:00",
    "9999-12-31T23:59",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../../../etc/passwd",
    "%00",
    "x" * 3000,
    "\u202egnp.exe",
    "\U0001f600",
    "=1+1",
    "javascript:alert(1)",
    "http://evil.example/",
    "http://127.0.0.1:1/",
    "\ud7ff\ufffe\uffff",
]
# Values the forms accept, so that validation passes and the action runs.
VALID_VALUES = [
    "bestyrelse",
    "momentum",
    "kl-nyheder",
    "a@example.dk",
    "ny@example.dk",
    "Jens Hansen",
    "Aarhus",
    "2026-03-12",
    "2030-01-01T09:30",
    "1",
    "2",
    "8",
    "y",
    "invite",
    "enrol",
    "daily",
    "weekdays",
    "auto",
    "draft",
    "editor",
    "admin",
    "One-Click",
    "more-items",
    "https://example.com/feed.xml",
    "rigtig-hest-batteri-hæfteklamme",
]
FIELD_NAMES = [
    "email", "name", "municipality", "newsletters", "website", "understood", "never_again",
    "subject", "preheader", "body", "meeting_date", "items-0-heading", "items-0-text",
    "items-0-link", "items-0-position", "items-0-remove", "items-99999-heading", "action",
    "addresses", "scheduled_at", "url", "title", "hour", "cadence", "mode", "auto_send",
    "newsletter", "basis", "welcome", "dry_run", "note", "password", "password_again",
    "role", "position", "description", "q", "List-Unsubscribe", "next", "item", "items",
    "feed_item", "feed_items", "lang", "status", "is_public", "digest_mode",
]  # fmt: skip
QUERY_NAMES = [
    "page", "q", "from", "to", "action", "actor", "target", "after", "status", "newsletter",
    "newsletters", "municipality", "role", "reason", "rows", "lang", "next", "days",
]  # fmt: skip

text_values = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(VALID_VALUES),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.integers(-(2**70), 2**70).map(str),
)
int_params = st.one_of(
    st.sampled_from(["1", "2", "3", "0", "-1", "9" * 20, "9" * 5000, "2147483647", "١٢"]),
    st.integers(-(2**64), 2**64).map(str),
    st.text(max_size=12),
)
hostile_fields = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=15)),
    st.lists(text_values, min_size=1, max_size=3),
    max_size=8,
)
# Forms of valid values (with the odd hostile one): these get past validation, so the
# services behind the forms run with what a person could really post.
plausible_fields = st.dictionaries(
    st.sampled_from(FIELD_NAMES),
    st.lists(
        st.one_of(st.sampled_from(VALID_VALUES), st.sampled_from(VALID_VALUES), text_values),
        min_size=1,
        max_size=2,
    ),
    min_size=2,
    max_size=12,
)
fields = st.one_of(plausible_fields, hostile_fields)
queries = st.dictionaries(
    st.one_of(st.sampled_from(QUERY_NAMES), st.text(max_size=10)), text_values, max_size=4
)
STACK_TRACE = re.compile(rb"Traceback \(most recent call last\)|File \"/|sqlalchemy\.exc\.")


class Target:
    """The app under fuzzing, with real values to put in its URLs."""

    def __init__(self, app: Flask, valid: dict[str, list[str]]) -> None:
        self.app = app
        self.valid = valid
        self.rules: list[Rule] = sorted(
            (
                r
                for r in app.url_map.iter_rules()
                if r.endpoint not in SKIPPED and r.endpoint != "static"
            ),
            key=lambda r: (r.rule, r.endpoint),
        )


@pytest.fixture
def target(make_app) -> Target:
    # Limits so high that the fuzzing never meets them (every example should reach the
    # view). Not RATELIMIT_ENABLED=False: that would switch the shared limiter off for
    # the tests that run after this one.
    lenient = "100000 per minute"
    app = make_app(
        DEV_MAILBOX=True,
        RATELIMIT_SUBSCRIBE=lenient,
        RATELIMIT_LINK_REQUEST=lenient,
        RATELIMIT_LOGIN=lenient,
        RATELIMIT_LOGIN_EMAIL=lenient,
        RATELIMIT_TEST_SEND=lenient,
        RATELIMIT_WELCOME_LETTER=lenient,
    )
    client = app.test_client()
    confirmed_subscriber(client, app, "a@example.dk", newsletters=("momentum", "bestyrelse"))
    confirmed_audience(app, 3)
    edition_id = draft(app)
    with app.app_context():
        from newsletters.editions import sending

        published = draft(app, subject="Sendt")
        sending.start_send(published)
        subscriber = db.session.scalar(
            db.select(Subscriber).where(Subscriber.email == "a@example.dk")
        )

        def token_of(url: str) -> str:
            return url.split("?")[0].rsplit("/", 1)[1]

        tokens = [
            token_of(links.manage_url(subscriber)),
            token_of(links.unsubscribe_url(subscriber)),
            token_of(links.confirm_url(subscriber, [1, 2])),
            token_of(links.join_url(subscriber, 3)),
        ]
        db.session.remove()
    valid = {
        "int": [str(edition_id), str(published), "1", "2"],
        "token": tokens,
        "slug": ["bestyrelse", "momentum", "kl-nyheder", "danske-kommuner"],
        "filename": ["css/dkfds.min.css", "../../../../etc/passwd"],
    }
    return Target(app, valid)


def _path_for(rule: Rule, target: Target, data: st.DataObject) -> str:
    path = rule.rule
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__.lower()
        kind = "int" if "int" in converter else name
        real = st.sampled_from(target.valid.get(kind, target.valid["token"]))
        hostile = int_params if kind == "int" else text_values
        value = data.draw(st.one_of(real, hostile), label=name)
        path = re.sub(r"<(?:[^:<>]+:)?" + name + ">", quote(value, safe=""), path)
    return path


def _fuzz_one(client: FlaskClient, target: Target, data: st.DataObject, token: str) -> None:
    rule = data.draw(st.sampled_from(target.rules), label="rule")
    methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
    method = data.draw(st.sampled_from(methods), label="method")
    path = _path_for(rule, target, data)
    query = data.draw(queries, label="query")
    url = path + ("?" + urlencode(query) if query else "")
    kwargs: dict = {}
    if method == "POST":
        body: dict = data.draw(fields, label="form")
        if data.draw(st.integers(0, 9), label="csrf") > 0:
            body["csrf_token"] = token
        if data.draw(st.integers(0, 4), label="file") == 0:
            content = data.draw(st.binary(max_size=300), label="file content")
            body["file"] = (io.BytesIO(b"email,name\n" + content), "upload.csv")
            kwargs["content_type"] = "multipart/form-data"
        kwargs["data"] = body
    response = client.open(url, method=method, **kwargs)
    answer = response.get_data()
    assert response.status_code < 500, (method, url, kwargs.get("data"), response.status_code)
    assert not STACK_TRACE.search(answer), (method, url)


# Every route gets each of these in each of its path parameters, whatever hypothesis
# draws: huge, negative, non-ASCII digits, NUL, CRLF, very long.
PATH_SWEEP = [
    "9" * 20,
    "2147483648",
    "-1",
    "\u0661\u0662",
    "\x00",
    "a\r\nb",
    "x" * 3000,
    "9" * 5000,
    "\u202e\U0001f600",
    "../..",
]


def _sweep(client: FlaskClient, target: Target, token: str) -> int:
    """Each hostile path value in each parameter of each route, with every method it
    takes (a POST with a valid CSRF token and plausible fields)."""
    done = 0
    for rule in target.rules:
        if not rule.arguments:
            continue
        for value in PATH_SWEEP:
            path = rule.rule
            for name in rule.arguments:
                path = re.sub(r"<(?:[^:<>]+:)?" + name + ">", quote(value, safe=""), path)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                data = {"csrf_token": token, "email": "a@example.dk", "newsletters": "momentum"}
                response = client.open(path, method=method, data=data if method == "POST" else None)
                assert response.status_code < 500, (method, path[:200], response.status_code)
                assert not STACK_TRACE.search(response.get_data()), (method, path[:200])
                done += 1
    return done


def _logged_in(target: Target, email: str, role: str) -> tuple[FlaskClient, str]:
    make_staff(target.app, email, role)
    client = target.app.test_client()
    assert login(client, email).status_code == 303
    return client, csrf_token(client.get("/staff/").data)


def test_every_route_survives_hostile_path_parameters(target):
    anonymous = target.app.test_client()
    assert _sweep(anonymous, target, csrf_token(anonymous.get("/").data)) > 300
    # As an administrator, who may use every staff page.
    admin, token = _logged_in(target, ADMIN, "admin")
    assert _sweep(admin, target, token) > 300


def test_no_route_answers_5xx_to_an_anonymous_stranger(target):
    client = target.app.test_client()
    token = csrf_token(client.get("/").data)

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        _fuzz_one(client, target, data, token)

    fuzz()


@pytest.mark.parametrize("role", ["editor", "admin"])
def test_no_route_answers_5xx_to_staff(target, role):
    email = EDITOR if role == "editor" else ADMIN
    client, token = _logged_in(target, email, role)

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        # The fuzzing may deactivate the account or end its session: log in again, so
        # every example reaches the staff pages.
        with client.session_transaction() as session:
            logged_in = "_user_id" in session
        if not logged_in:
            login(client, email)
        _fuzz_one(client, target, data, csrf_token(client.get("/staff/").data))

    fuzz()
