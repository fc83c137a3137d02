"""The REST API (issue 13): tokens, scopes, every endpoint, problem details, and hostile
input. The API calls the services the pages call, so these tests read the same rows
(intake, consent records, outbox, audit log) that the pages' tests read."""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters.api.models import ApiToken
from newsletters.audit.models import AuditEntry
from newsletters.editions.models import Edition
from newsletters.extensions import db
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import (
    ConsentEvent,
    Subscriber,
    SubscribeRequest,
    Subscription,
    SuppressionReason,
)
from tests.support.api import ALL_SCOPES, bearer, make_token
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import process_intake, queued_mails, subscriptions_of

PROBLEM = "application/problem+json"


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(API_RATE_LIMIT="100000 per minute")


@pytest.fixture
def token(app: Flask) -> str:
    return make_token(app)


@pytest.fixture
def api(app: Flask, token: str):
    client = app.test_client()

    def call(method: str, path: str, *, token: str = token, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers.update(bearer(token))
        return client.open("/api/v1" + path, method=method, headers=headers, **kwargs)

    return call


def audit_actions(app: Flask) -> list[tuple[str, str, dict]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(r.action, r.target, json.loads(r.details)) for r in rows]


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status and body["title"]
    return body


# --------------------------------------------------------------------------- tokens


def test_cli_prints_the_token_alone_on_its_last_line_and_keeps_only_a_hash(app, runner):
    result = runner.invoke(args=["api-tokens", "create", "kl-web", "--scope", "subscribers:read"])
    assert result.exit_code == 0, result.output
    plain = result.output.strip().splitlines()[-1]
    assert plain.startswith("nlt_") and " " not in plain
    with app.app_context():
        row = db.session.scalar(select(ApiToken).where(ApiToken.name == "kl-web"))
        assert row.scope_list == ["subscribers:read"]
        assert plain not in (row.token_hash, row.scopes, row.name)
    listing = runner.invoke(args=["api-tokens", "list"]).output
    assert "kl-web" in listing and plain not in listing and "never" in listing
    assert runner.invoke(args=["api-tokens", "revoke", "kl-web"]).exit_code == 0
    assert "revoked" in runner.invoke(args=["api-tokens", "list"]).output
    again = runner.invoke(args=["api-tokens", "revoke", "kl-web"])
    assert again.exit_code == 1 and "already" in again.output


@pytest.mark.parametrize(
    "args",
    [
        ["x", "--scope", "nope"],
        ["x", "--scope", ""],
        ["bad name", "--scope", "editions:read"],
        ["a\r\nb", "--scope", "editions:read"],
        ["a\x00b", "--scope", "editions:read"],
        ["x" * 37, "--scope", "editions:read"],
    ],
)
def test_cli_refuses_bad_names_and_scopes(app, runner, args):
    result = runner.invoke(args=["api-tokens", "create", *args])
    assert result.exit_code == 1
    with app.app_context():
        assert db.session.scalar(select(ApiToken.id)) is None


def test_a_name_stays_taken(app, runner):
    make_token(app, "crm")
    result = runner.invoke(args=["api-tokens", "create", "crm", "--scope", "editions:read"])
    assert result.exit_code == 1 and "already" in result.output


def test_creation_first_use_and_revocation_are_audited_once(app, api, token, runner):
    assert api("GET", "/newsletters").status_code == 200
    assert api("GET", "/newsletters").status_code == 200
    runner.invoke(args=["api-tokens", "revoke", "site"])
    actions = [(a, d.get("name")) for a, _, d in audit_actions(app)]
    assert actions == [
        ("api_token.create", "site"),
        ("api_token.first_use", "site"),
        ("api_token.revoke", "site"),
    ]
    with app.app_context():
        assert db.session.scalar(select(ApiToken.last_used_at)) is not None


def test_without_or_with_a_bad_token_the_answer_is_401(api):
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer nlt_" + "A" * 43},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer nlt_\x00" + "A" * 42},
        {"Authorization": "Bearer nlt_\u00e6" + "A" * 42},
    ):
        response = api("GET", "/newsletters", token="", headers=headers)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused(app, api, token, runner):
    assert api("GET", "/newsletters").status_code == 200
    runner.invoke(args=["api-tokens", "revoke", "site"])
    assert_problem(api("GET", "/newsletters"), 401)


def test_a_missing_scope_is_403_whatever_another_token_may_do(app, api):
    reader = make_token(app, "reader", "subscribers:read")
    assert api("GET", "/subscribers", token=reader).status_code == 200
    for method, path in [
        ("POST", "/subscriptions"),
        ("POST", "/subscribers"),
        ("DELETE", "/subscribers/1"),
        ("POST", "/editions"),
        ("GET", "/editions/1"),
        ("POST", "/editions/1/send"),
        ("POST", "/editions/1/cancel"),
    ]:
        body = assert_problem(api(method, path, token=reader, json={}), 403)
        assert "scope" in body["detail"]


def test_each_token_has_its_own_rate_limit(make_app):
    app = make_app(API_RATE_LIMIT="2 per minute")
    first, second = make_token(app, "one"), make_token(app, "two")
    client = app.test_client()
    for _ in range(2):
        assert client.get("/api/v1/newsletters", headers=bearer(first)).status_code == 200
    response = client.get("/api/v1/newsletters", headers=bearer(first))
    assert_problem(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert client.get("/api/v1/newsletters", headers=bearer(second)).status_code == 200


# --------------------------------------------------------------------------- the document


def test_the_openapi_document_is_3_1_and_describes_every_endpoint(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert set(paths) >= {
        "/api/v1/newsletters",
        "/api/v1/subscriptions",
        "/api/v1/subscribers",
        "/api/v1/subscribers/{subscriber_id}",
        "/api/v1/editions",
        "/api/v1/editions/{edition_id}",
        "/api/v1/editions/{edition_id}/send",
        "/api/v1/editions/{edition_id}/pause",
        "/api/v1/editions/{edition_id}/resume",
        "/api/v1/editions/{edition_id}/cancel",
    }
    refusal = paths["/api/v1/subscriptions"]["post"]["responses"]["422"]
    assert list(refusal["content"]) == [PROBLEM]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_docs_page_loads_only_our_own_assets(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html
    assert "<script>" not in html  # no inline script: the CSP allows 'self' only
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        assert client.get(f"/api/v1/docs/assets/{asset}").status_code == 200
    assert client.get("/api/v1/docs/assets/package.json").status_code == 404


# --------------------------------------------------------------------------- hostile input


def test_a_body_that_is_not_json_is_415(api):
    for kwargs in (
        {"data": {"email": "a@example.dk", "newsletters": "momentum"}},
        {"data": "email=a", "content_type": "text/plain"},
        {},
    ):
        assert_problem(api("POST", "/subscriptions", **kwargs), 415)
    assert_problem(api("POST", "/editions/1/send", data="x", content_type="text/plain"), 415)


def test_broken_json_is_400_and_a_huge_body_413(api):
    assert_problem(api("POST", "/subscriptions", data=b"{", content_type="application/json"), 400)
    invalid_utf8 = b'{"email": "\xff"}'
    assert_problem(
        api("POST", "/subscriptions", data=invalid_utf8, content_type="application/json"), 400
    )
    huge = json.dumps(
        {"email": "a@example.dk", "newsletters": ["momentum"], "name": "x" * 11_000_000}
    )
    assert_problem(api("POST", "/subscriptions", data=huge, content_type="application/json"), 413)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"email": "a@example.dk\r\nBcc: x@evil.dk", "newsletters": ["momentum"]}, "email"),
        ({"email": "a\x00@example.dk", "newsletters": ["momentum"]}, "email"),
        ({"email": "not an address", "newsletters": ["momentum"]}, "email"),
        ({"email": "a@example.dk", "name": "Jens\r\nHansen", "newsletters": ["momentum"]}, "name"),
        ({"email": "a@example.dk", "name": "www.evil.dk", "newsletters": ["momentum"]}, "name"),
        ({"email": "a@example.dk", "newsletters": []}, "newsletters"),
        ({"email": "a@example.dk", "newsletters": ["nope"]}, "newsletters"),
        ({"email": "a@example.dk", "newsletters": "momentum"}, "newsletters"),
        ({"email": "a@example.dk", "newsletters": ["momentum"], "municipality": "Oz"}, "munic"),
        ({"email": "a@example.dk", "newsletters": ["momentum"], "locale": "fr"}, "locale"),
        ({"email": "a@example.dk", "newsletters": ["momentum"], "extra": 1}, "extra"),
        ({"newsletters": ["momentum"]}, "email"),
        ([], ""),
        ("a", ""),
    ],
)  # fmt: skip
def test_fields_at_fault_are_named_in_a_422(app, api, body, field):
    problem = assert_problem(api("POST", "/subscriptions", json=body), 422)
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    with app.app_context():
        assert db.session.scalar(select(SubscribeRequest.id)) is None


@pytest.mark.parametrize("value", ["0", "2147483648", "9" * 30, "-1", "abc", "%00", "1%0d%0a"])
def test_absurd_ids_are_404_problems(api, value):
    for method, path in [
        ("GET", f"/subscribers/{value}"),
        ("DELETE", f"/subscribers/{value}"),
        ("GET", f"/editions/{value}"),
        ("POST", f"/editions/{value}/send"),
    ]:
        response = api(method, path)
        # A NUL anywhere is refused first; Werkzeug may call an id past the range a
        # method it does not take: a problem either way, never a 5xx.
        expected = {400} if value == "%00" else {404, 405}
        assert response.status_code in expected, (method, path, response.status_code)
        assert_problem(response, response.status_code)


def test_a_nul_in_the_query_is_refused_cleanly(api):
    assert_problem(api("GET", "/subscribers?role=a%00b"), 400)


def test_an_unknown_path_and_method_are_problems_too(api):
    assert_problem(api("GET", "/nothing"), 404)
    response = api("PUT", "/newsletters")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


# --------------------------------------------------------------------------- newsletters


def test_newsletters_are_listed_with_whether_they_are_public(api):
    items = api("GET", "/newsletters").get_json()["items"]
    assert [i["slug"] for i in items] == ["bestyrelse", "kl-nyheder", "momentum", "danske-kommuner"]
    assert all(i["public"] is True and i["name"] and i["description"] for i in items)


# --------------------------------------------------------------------------- subscriptions


def test_a_subscription_request_is_what_the_public_form_does(app, api):
    response = api(
        "POST",
        "/subscriptions",
        json={
            "email": "Jens@Example.dk",
            "name": "Jens",
            "newsletters": ["momentum"],
            "locale": "en",
        },
        headers={"User-Agent": "KL website"},
    )
    assert response.status_code == 202
    process_intake(app)
    assert subscriptions_of(app, "jens@example.dk") == {"momentum": "pending"}
    [mail] = queued_mails(app, "jens@example.dk", kind="confirm")
    assert "Confirm" in mail.subject or "confirm" in mail.raw
    with app.app_context():
        event = db.session.scalar(select(ConsentEvent))
        assert (event.action.value, event.method) == ("requested", "api:site")
        assert event.user_agent == "KL website" and event.locale == "en"
        assert event.consent_text_version


def test_the_answer_never_tells_whether_the_address_was_known(app, api):
    body = {"email": "kendt@example.dk", "newsletters": ["momentum"]}
    first = api("POST", "/subscriptions", json=body)
    process_intake(app)
    with app.app_context():
        suppression.suppress("skjult@example.dk", SuppressionReason.MANUAL)
        db.session.commit()
    answers = [
        api("POST", "/subscriptions", json=body),
        api(
            "POST",
            "/subscriptions",
            json={"email": "skjult@example.dk", "newsletters": ["momentum"]},
        ),
        api("POST", "/subscriptions", json={"email": "ny@example.dk", "newsletters": ["momentum"]}),
    ]
    assert {(r.status_code, r.get_data()) for r in [first, *answers]} == {
        (first.status_code, first.get_data())
    }
    process_intake(app)
    assert queued_mails(app, "skjult@example.dk") == []


def test_the_per_address_mail_limit_holds_through_the_api(app, api):
    for _ in range(5):
        api(
            "POST", "/subscriptions", json={"email": "ofte@example.dk", "newsletters": ["momentum"]}
        )
        process_intake(app)
    assert len(queued_mails(app, "ofte@example.dk")) == 3


# --------------------------------------------------------------------------- subscribers


def test_subscribers_are_listed_filtered_and_paged_with_a_cursor(app, api):
    confirmed_audience(app, 5, "bestyrelse", prefix="b")
    confirmed_audience(app, 2, "momentum", prefix="m")
    seen, cursor = [], None
    while True:
        query = "?newsletter=bestyrelse&status=confirmed&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = api("GET", "/subscribers" + query).get_json()
        assert page["total"] == 5
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(f"b{n:05d}@example.dk" for n in range(5))
    item = api("GET", "/subscribers?newsletter=momentum").get_json()["items"][0]
    assert item["subscriptions"] == [{"newsletter": "momentum", "status": "confirmed"}]
    assert api("GET", "/subscribers?role=borgmester").get_json()["items"] == []
    assert_problem(api("GET", "/subscribers?cursor=%%%"), 422)
    assert_problem(api("GET", "/subscribers?limit=100000"), 422)
    assert_problem(api("GET", "/subscribers?status=bogus"), 422)


def test_a_subscriber_shows_subscriptions_and_consent_history(app, api):
    api("POST", "/subscriptions", json={"email": "h@example.dk", "newsletters": ["momentum"]})
    process_intake(app)
    with app.app_context():
        subscriber_id = db.session.scalar(select(Subscriber.id))
    detail = api("GET", f"/subscribers/{subscriber_id}").get_json()
    assert detail["email"] == "h@example.dk"
    [subscription] = detail["subscriptions"]
    assert subscription["newsletter"] == "momentum" and subscription["status"] == "pending"
    assert [e["action"] for e in subscription["consent_history"]] == ["requested"]


def test_enrolment_is_the_import_with_a_basis(app, api):
    body = {
        "email": "borgmester@aarhus.dk",
        "name": "Anna Borg",
        "municipality": "Aarhus Kommune",
        "role": "Borgmester",
        "newsletters": ["bestyrelse"],
        "basis": "Borgmester fra 1. januar 2026",
    }
    outcome = api("POST", "/subscribers", json=body).get_json()
    assert outcome["enrolled"] == ["bestyrelse"] and outcome["id"] > 0
    assert subscriptions_of(app, "borgmester@aarhus.dk") == {"bestyrelse": "confirmed"}
    assert queued_mails(app, "borgmester@aarhus.dk") == []  # no opt-in mail
    with app.app_context():
        event = db.session.scalar(select(ConsentEvent))
        assert (event.action.value, event.method, event.basis) == (
            "enrolled",
            "api:site",
            "Borgmester fra 1. januar 2026",
        )
        person = db.session.get(Subscriber, outcome["id"])
        assert person.municipality == "Aarhus"
    again = api("POST", "/subscribers", json=body).get_json()
    assert again["unchanged"] == ["bestyrelse"] and again["enrolled"] == []
    imports = [d for a, _, d in audit_actions(app) if a == "subscribers.import"]
    assert imports[0]["from"] == "api" and imports[0]["api_token"] == "site"


def test_enrolment_never_overrides_a_withdrawal_and_welcome_is_optional(app, api):
    body = {"email": "x@example.dk", "newsletters": ["bestyrelse"], "basis": "b", "welcome": True}
    api("POST", "/subscribers", json=body)
    assert len(queued_mails(app, "x@example.dk", kind="welcome")) == 1
    with app.app_context():
        subscription = db.session.scalar(select(Subscription))
        from newsletters.subscriptions.consent import RequestContext
        from newsletters.subscriptions.preferences import unsubscribe_subscriber

        unsubscribe_subscriber(
            subscription.subscriber_id, newsletter_ids=None, ctx=RequestContext()
        )
    outcome = api("POST", "/subscribers", json=body).get_json()
    assert outcome["withdrawn"] == ["bestyrelse"]
    assert subscriptions_of(app, "x@example.dk") == {"bestyrelse": "unsubscribed"}


@pytest.mark.parametrize(
    "change,field",
    [
        ({"basis": ""}, "basis"),
        ({"basis": "   "}, "basis"),
        ({"role": "a\tb"}, "role"),
        ({"municipality": "Atlantis"}, "municipality"),
        ({"newsletters": ["nope"]}, "newsletters"),
        ({"email": "@"}, "email"),
    ],
)
def test_enrolment_refuses_fields_at_fault(app, api, change, field):
    body = {"email": "y@example.dk", "newsletters": ["bestyrelse"], "basis": "b", **change}
    problem = assert_problem(api("POST", "/subscribers", json=body), 422)
    assert problem["errors"][0]["field"].startswith(field)
    with app.app_context():
        assert db.session.scalar(select(Subscriber.id)) is None


def test_erasure_is_the_admin_pages_erasure_with_the_suppression_choice(app, api):
    api(
        "POST",
        "/subscribers",
        json={"email": "z@example.dk", "newsletters": ["bestyrelse"], "basis": "b"},
    )
    with app.app_context():
        subscriber_id = db.session.scalar(select(Subscriber.id))
    assert api("DELETE", f"/subscribers/{subscriber_id}?never_again=true").status_code == 204
    with app.app_context():
        assert db.session.get(Subscriber, subscriber_id) is None
        assert db.session.scalar(select(ConsentEvent.id)) is None
        assert suppression.is_suppressed("z@example.dk")
    assert_problem(api("DELETE", f"/subscribers/{subscriber_id}"), 404)
    assert_problem(api("GET", f"/subscribers/{subscriber_id}"), 404)
    erased = [(t, d) for a, t, d in audit_actions(app) if a == "subscriber.erase"]
    [(target, details)] = erased
    assert target == f"subscriber:{subscriber_id}"
    assert (details["never_again"], details["api_token"]) == (True, "site")
    assert "z@example.dk" not in json.dumps(audit_actions(app))
    assert_problem(api("DELETE", f"/subscribers/{subscriber_id}?never_again=maybe"), 422)


# --------------------------------------------------------------------------- editions


def test_an_edition_is_created_sent_paused_resumed_and_cancelled(app, api):
    confirmed_audience(app, 3)
    response = api(
        "POST",
        "/editions",
        json={
            "newsletter": "bestyrelse",
            "subject": "Nyt fra bestyrelsen",
            "body": "KL's bestyrelse har **besluttet**\n\n- a\n- b",
            "preheader": "Kort",
            "items": [{"heading": "Beslutning", "text": "Tekst", "link": "https://www.kl.dk/"}],
        },
    )
    assert response.status_code == 201
    created = response.get_json()
    edition_id = created["id"]
    assert response.headers["Location"].endswith(f"/api/v1/editions/{edition_id}")
    assert created["status"] == "draft"
    with app.app_context():
        edition = db.session.get(Edition, edition_id)
        assert edition.created_by == "api:site" and len(edition.items) == 1
    assert_problem(api("POST", f"/editions/{edition_id}/pause"), 409)
    assert_problem(api("POST", f"/editions/{edition_id}/resume"), 409)
    sent = api("POST", f"/editions/{edition_id}/send")
    assert sent.status_code == 202
    assert sent.get_json()["status"] == "sending" and sent.get_json()["recipients"] == 3
    assert_problem(api("POST", f"/editions/{edition_id}/send"), 409)
    assert api("POST", f"/editions/{edition_id}/pause").get_json()["status"] == "paused"
    assert api("POST", f"/editions/{edition_id}/resume").get_json()["status"] == "sending"
    status = api("GET", f"/editions/{edition_id}").get_json()
    assert (status["recipients"], status["remaining"], status["sent"]) == (3, 3, 0)
    assert api("POST", f"/editions/{edition_id}/cancel").get_json()["status"] == "cancelled"
    assert_problem(api("POST", f"/editions/{edition_id}/cancel"), 409)
    actions = [a for a, t, _ in audit_actions(app) if t == f"edition:{edition_id}"]
    assert actions == [
        "edition.create",
        "edition.send",
        "edition.pause",
        "edition.resume",
        "edition.cancel",
    ]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"newsletter": "nope"}, "newsletter"),
        ({"subject": ""}, "subject"),
        ({"subject": "a\r\nBcc: x"}, "subject"),
        ({"subject": "x" * 301}, "subject"),
        ({"body": "a\x00b"}, "body"),
        ({"items": [{"heading": ""}]}, "items.0.heading"),
        ({"items": [{"heading": "h", "link": "a\nb"}]}, "items.0.link"),
        ({"status": "sent"}, "status"),
    ],
)
def test_an_edition_with_fields_at_fault_is_not_created(app, api, change, field):
    body = {"newsletter": "bestyrelse", "subject": "Emne", "body": "Tekst", **change}
    problem = assert_problem(api("POST", "/editions", json=body), 422)
    assert problem["errors"][0]["field"] == field
    with app.app_context():
        assert db.session.scalar(select(Edition.id)) is None


def test_a_sent_edition_can_be_read_with_editions_read_only(app, api):
    edition_id = draft(app)
    reader = make_token(app, "reader", "editions:read")
    assert api("GET", f"/editions/{edition_id}", token=reader).get_json()["status"] == "draft"
    assert_problem(api("POST", f"/editions/{edition_id}/send", token=reader), 403)


def test_every_scope_guards_some_endpoint(app):
    """No scope is a promise without an endpoint behind it."""
    from newsletters.api import tokens

    used = {
        getattr(app.view_functions[rule.endpoint], "api_scope", None)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
    }
    assert set(tokens.SCOPES) <= used
    assert set(ALL_SCOPES.split(",")) == set(tokens.SCOPES)


# --------------------------------------------------------------------------- webhooks


def test_webhooks_are_managed_through_the_api(app, api):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    created = api(
        "POST",
        "/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["subscription.confirmed"]},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["subscription.confirmed"]
    listed = api("GET", "/webhooks").get_json()["items"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert "secret" not in listed[0] and body["secret"] not in json.dumps(listed)
    assert api("DELETE", f"/webhooks/{body['id']}").status_code == 204
    assert_problem(api("DELETE", f"/webhooks/{body['id']}"), 404)
    assert api("GET", "/webhooks").get_json()["items"] == []
    actions = [(a, d.get("api_token")) for a, _t, d in audit_actions(app) if "webhook" in a]
    assert actions == [("webhook.add", "site"), ("webhook.remove", "site")]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"url": "http://127.0.0.1:9/hook", "events": ["subscription.confirmed"]}, "url"),
        ({"url": "https://example.org/a\r\nb", "events": ["bounce.recorded"]}, "url"),
        ({"url": "https://example.org/", "events": ["no.such"]}, "events"),
        ({"url": "https://example.org/", "events": []}, "events"),
        ({"url": "ftp://example.org/", "events": ["bounce.recorded"]}, "url"),
    ],
)
def test_bad_webhooks_are_refused_with_the_field_at_fault(app, api, body, field):
    # Private addresses are refused by default (WEBHOOKS_ALLOW_PRIVATE is off here).
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    problem = assert_problem(api("POST", "/webhooks", json=body), 422)
    assert problem["errors"][0]["field"].startswith(field)
    assert api("GET", "/webhooks").get_json()["items"] == []


def test_webhooks_need_their_scope(app, api):
    other = make_token(app, "crm", "subscribers:read")
    assert_problem(api("GET", "/webhooks", token=other), 403)
    assert_problem(
        api("POST", "/webhooks", token=other, json={"url": "https://x.org", "events": []}), 403
    )


def test_the_openapi_document_has_a_schema_for_every_model_it_names(client):
    # The schemas are drawn when the document is first asked for (api/routes.py), not
    # at import: every reference must still lead to one, for requests and answers alike.
    document = client.get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    named = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert len(named) > 20
    assert named <= set(schemas), named - set(schemas)
    body = document["paths"]["/api/v1/subscriptions"]["post"]["requestBody"]
    assert "#/components/schemas/" in json.dumps(body)
