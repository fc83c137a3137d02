"""The REST API against its own OpenAPI document, property-based (schemathesis): for
every operation, requests generated from the document, sent to the live app on the test
database (SQLite, or PostgreSQL with NEWSLETTERS_TEST_DATABASE_URL). No answer may be a
5xx, and every answer must be one the document describes: its status code, its content
type, its headers and its body's schema.

Deterministic (`derandomize`, no example database) and bounded (a few examples per
operation), so it stays quick; `API_FUZZ_EXAMPLES` raises the count for a longer run.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import bearer, make_token
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import subscribe

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_app(make_app) -> Flask:
    app = make_app(API_RATE_LIMIT="100000 per minute")
    # Something to find: subscribers, a pending request, a draft and a sending edition.
    confirmed_audience(app, 3)
    subscribe(app.test_client(), "a@example.dk", ["momentum"])
    draft(app)
    return app


@pytest.fixture
def api_token(api_app: Flask) -> str:
    return make_token(api_app, "fuzz")


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def test_every_answer_matches_the_document_and_none_is_5xx(api_app, api_token):
    # Each operation's strategy, driven by hypothesis here (rather than schemathesis's
    # pytest plugin, whose lazy fixture loading does not work with this pytest).
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(headers=bearer(api_token), checks=CHECKS)

        fuzz()
