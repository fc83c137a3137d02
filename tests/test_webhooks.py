"""Outgoing webhooks (issue 13): events written with the change they report, signed as
Standard Webhooks says and checked by a receiver on loopback, retried with growing
backoff for a day, failing endpoints disabled, private addresses refused, hostile input
refused, an erased person's address never sent."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters import events
from newsletters.audit.models import AuditEntry
from newsletters.bounces.processing import ProcessStats, process_message
from newsletters.extensions import db
from newsletters.subscriptions import erasure as subscriber_services
from newsletters.subscriptions.models import Subscriber
from newsletters.webhooks import delivery, services
from newsletters.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.support.flows import confirmed_subscriber
from tests.support.hookserver import HookServer
from tests.support.pages import csrf_token
from tests.test_admin import admin  # noqa: F401 (fixture)
from tests.test_bounces import sample
from tests.test_staff import EDITOR, login, make_staff
from tests.test_unsubscribe import _unsubscribe_path

HOOKS = {"WEBHOOKS_ALLOW_PRIVATE": True, "WEBHOOKS_TIMEOUT": 10}


@pytest.fixture
def receiver():
    server = HookServer().start()
    yield server
    server.stop()


@pytest.fixture
def hooks_app(make_app) -> Flask:
    return make_app(**HOOKS)


def add(app: Flask, url: str, event_types: str = ",".join(services.EVENT_TYPES)):
    with app.app_context():
        endpoint, secret = services.add_endpoint(url, event_types, actor=events.CLI)
        endpoint_id = endpoint.id
        db.session.remove()
    return endpoint_id, secret


def announce(app: Flask, name: str, **data) -> None:
    with app.app_context():
        events.announce(name, "", audited=False, **data)
        db.session.commit()


def deliver(app: Flask) -> int:
    with app.app_context():
        attempted = delivery.deliver_due("test-worker")
        db.session.remove()
    return attempted


def deliveries(app: Flask) -> list[WebhookDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        db.session.expunge_all()
    return rows


def endpoint_row(app: Flask, endpoint_id: int) -> WebhookEndpoint:
    with app.app_context():
        row = db.session.get(WebhookEndpoint, endpoint_id)
        db.session.expunge_all()
    return row


def started(app: Flask, edition_id: int = 5) -> None:
    announce(
        app,
        "edition.started",
        edition_id=edition_id,
        newsletter="momentum",
        subject="Momentum uge 49",
        recipients=1200,
    )


# --------------------------------------------------------------------------- delivery


def test_an_event_is_posted_signed_as_standard_webhooks_says(hooks_app, receiver, clock):
    _, secret = add(hooks_app, receiver.url, "edition.started")
    receiver.secret = secret
    started(hooks_app)
    assert deliver(hooks_app) == 1
    [call] = receiver.wait_for(1)
    assert call.verified, call.error
    body = call.event
    assert set(body) == {"id", "type", "timestamp", "data"}
    assert body["id"] == call.webhook_id and body["id"].startswith("msg_")
    assert body["type"] == "edition.started"
    assert body["timestamp"] == body["timestamp"][:19] + body["timestamp"][19:]
    assert body["timestamp"].startswith("2026-11-30T05:00:00")  # the app's clock
    assert body["data"] == {
        "edition_id": 5,
        "newsletter": "momentum",
        "subject": "Momentum uge 49",
        "recipients": 1200,
    }
    assert call.headers["content-type"] == "application/json"
    [row] = deliveries(hooks_app)
    assert row.delivered_at is not None and row.attempts == 1 and row.last_status == 200


def test_a_wrong_secret_fails_verification(hooks_app, receiver, clock):
    add(hooks_app, receiver.url, "edition.started")
    receiver.secret = services.new_secret()
    started(hooks_app)
    deliver(hooks_app)
    [call] = receiver.wait_for(1)
    assert not call.verified


def test_only_subscribed_enabled_endpoints_get_an_event(hooks_app, receiver, clock):
    wants, _ = add(hooks_app, receiver.url + "/a", "edition.started,edition.paused")
    add(hooks_app, receiver.url + "/b", "bounce.recorded")
    disabled, _ = add(hooks_app, receiver.url + "/c", "edition.started")
    with hooks_app.app_context():
        services.disable_endpoint(disabled, "test")
        db.session.commit()
    started(hooks_app)
    assert [r.endpoint_id for r in deliveries(hooks_app)] == [wants]


def test_the_event_rolls_back_with_the_change(hooks_app, receiver, clock):
    add(hooks_app, receiver.url, "edition.paused")
    with hooks_app.app_context():
        events.announce("edition.paused", "edition:1", audited=False, edition_id=1)
        db.session.rollback()
        db.session.remove()
    assert deliveries(hooks_app) == []


def test_a_500_is_retried_within_a_minute_with_the_same_webhook_id(hooks_app, receiver, clock):
    _, secret = add(hooks_app, receiver.url, "edition.started")
    receiver.secret = secret
    receiver.answer("500")
    started(hooks_app)
    deliver(hooks_app)
    [row] = deliveries(hooks_app)
    assert (row.attempts, row.last_status, row.delivered_at) == (1, 500, None)
    assert row.last_error.startswith("HTTP 500")
    assert timedelta(0) < row.next_attempt_at - row.last_attempt_at <= timedelta(minutes=1)
    assert deliver(hooks_app) == 0  # not yet due
    clock.advance(seconds=60)
    assert deliver(hooks_app) == 1
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id and first.body == second.body
    assert second.verified
    [row] = deliveries(hooks_app)
    assert row.delivered_at is not None and row.attempts == 2


def test_a_dropped_connection_is_retried(hooks_app, receiver, clock):
    _, secret = add(hooks_app, receiver.url, "edition.started")
    receiver.secret = secret
    receiver.answer("drop")
    started(hooks_app)
    deliver(hooks_app)
    [row] = deliveries(hooks_app)
    assert row.delivered_at is None and row.last_status is None
    assert "connection" in row.last_error
    clock.advance(seconds=60)
    deliver(hooks_app)
    calls = receiver.wait_for(2)
    assert calls[0].webhook_id == calls[1].webhook_id
    assert deliveries(hooks_app)[0].delivered_at is not None


def test_a_refused_connection_and_a_timeout_are_retried(make_app, receiver, clock):
    app = make_app(**{**HOOKS, "WEBHOOKS_TIMEOUT": 0.5})
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    add(app, f"http://127.0.0.1:{closed}/hooks", "edition.started")
    add(app, receiver.url, "edition.started")
    receiver.answer("hang:2")
    started(app)
    deliver(app)
    refused, slow = deliveries(app)
    assert "connection" in refused.last_error and refused.delivered_at is None
    assert slow.last_error == "no answer within 0.5 seconds" and slow.delivered_at is None
    assert slow.next_attempt_at > slow.last_attempt_at


def test_a_non_2xx_such_as_a_redirect_is_not_success(hooks_app, receiver, clock):
    add(hooks_app, receiver.url, "edition.started")
    receiver.answer("302")
    started(hooks_app)
    deliver(hooks_app)
    assert deliveries(hooks_app)[0].delivered_at is None


def test_backoff_grows_for_a_day_then_gives_up_and_disables_the_endpoint(
    hooks_app, receiver, clock
):
    endpoint_id, _ = add(hooks_app, receiver.url, "edition.started")
    receiver.answer(then="503")
    started(hooks_app)
    created = deliveries(hooks_app)[0].created_at
    waits: list[float] = []
    for _ in range(40):
        assert deliver(hooks_app) == 1
        row = deliveries(hooks_app)[0]
        if row.failed_at is not None:
            break
        waits.append((row.next_attempt_at - row.last_attempt_at).total_seconds())
        clock.set(row.next_attempt_at - timedelta(seconds=1))
        assert deliver(hooks_app) == 0, "attempted before its time"
        clock.set(row.next_attempt_at)
    # 30 s, doubling, up to 3 hours; the first retry within a minute.
    assert waits[:9] == [30, 60, 120, 240, 480, 960, 1920, 3840, 7680]
    assert set(waits[9:]) == {10800}
    assert row.failed_at - created >= timedelta(hours=24)
    assert row.failed_at - created < timedelta(hours=27)
    endpoint = endpoint_row(hooks_app, endpoint_id)
    assert not endpoint.enabled
    assert "24 hours" in endpoint.disabled_reason and "HTTP 503" in endpoint.disabled_reason
    # Nothing more is tried, also for new events.
    started(hooks_app, 6)
    clock.advance(hours=1)
    assert deliver(hooks_app) == 0
    with hooks_app.app_context():
        actions = db.session.scalars(select(AuditEntry.action)).all()
    assert "webhook.disable" in actions


def test_a_failing_endpoints_other_events_wait_with_it(hooks_app, receiver, clock):
    add(hooks_app, receiver.url, "edition.started")
    receiver.answer("500")
    for edition_id in (1, 2, 3):
        started(hooks_app, edition_id)
    assert deliver(hooks_app) == 1  # the first fails: the other two are not tried
    first, *rest = deliveries(hooks_app)
    assert all(r.attempts == 0 and r.next_attempt_at == first.next_attempt_at for r in rest)
    assert all(r.leased_until is None for r in deliveries(hooks_app))
    clock.set(first.next_attempt_at)
    assert deliver(hooks_app) == 3
    assert [c.event["data"]["edition_id"] for c in receiver.wait_for(4)] == [1, 1, 2, 3]


def test_enabling_again_sends_what_waited(hooks_app, receiver, clock):
    endpoint_id, _ = add(hooks_app, receiver.url, "edition.started")
    started(hooks_app, 1)  # queued while it was enabled
    with hooks_app.app_context():
        services.disable_endpoint(endpoint_id, "Every delivery failed for 24 hours")
        db.session.commit()
    started(hooks_app, 2)
    assert len(deliveries(hooks_app)) == 1  # a disabled endpoint gets no new events
    assert deliver(hooks_app) == 0  # and what waits, waits
    result = hooks_app.test_cli_runner().invoke(args=["webhooks", "enable", str(endpoint_id)])
    assert result.exit_code == 0, result.output
    assert deliver(hooks_app) == 1
    assert receiver.wait_for(1)[0].event["data"]["edition_id"] == 1
    assert endpoint_row(hooks_app, endpoint_id).disabled_reason is None


def test_endpoints_are_called_concurrently(make_app, clock):
    app = make_app(**{**HOOKS, "WEBHOOKS_CONCURRENCY": 3})
    servers = [HookServer().start() for _ in range(3)]
    try:
        for server in servers:
            server.answer(then="hang:1.5")
            add(app, server.url, "edition.started")
        started(app)
        began = time.monotonic()
        assert deliver(app) == 3
        # One after the other would take 4.5 s.
        assert time.monotonic() - began < 3.5
    finally:
        for server in servers:
            server.stop()


def test_a_lease_left_by_a_dead_worker_runs_out_and_the_event_goes_again(
    hooks_app, receiver, clock
):
    add(hooks_app, receiver.url, "edition.started")
    started(hooks_app)
    with hooks_app.app_context():
        from newsletters import jobs

        assert jobs.claim(WebhookDelivery, "dead-worker", 10) == [1]  # then it died
        db.session.remove()
    assert deliver(hooks_app) == 0
    clock.advance(seconds=hooks_app.config["WORKER_LEASE_SECONDS"] + 1)
    assert deliver(hooks_app) == 1
    assert deliveries(hooks_app)[0].delivered_at is not None


# --------------------------------------------------------------------------- addresses

PRIVATE = [
    "https://127.0.0.1/hooks",
    "https://localhost/hooks",
    "https://[::1]/hooks",
    "https://10.1.2.3/hooks",
    "https://192.168.1.1/hooks",
    "https://169.254.169.254/latest/meta-data",
    "https://2130706433/hooks",
    "https://[::ffff:127.0.0.1]/hooks",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_addresses_are_refused_by_default(make_app, url):
    app = make_app()
    assert app.config["WEBHOOKS_ALLOW_PRIVATE"] is False
    with app.app_context(), pytest.raises(services.WebhookError):
        services.add_endpoint(url, "edition.started")
    result = app.test_cli_runner().invoke(
        args=["webhooks", "add", url, "--events", "edition.started"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "WEBHOOKS_ALLOW_PRIVATE" in result.output
    with app.app_context():
        assert services.list_endpoints() == []


def test_plain_http_needs_the_private_setting_and_a_public_address_is_accepted(make_app):
    app = make_app()
    with app.app_context():
        with pytest.raises(services.WebhookError):
            services.add_endpoint("http://93.184.216.34/hooks", "edition.started")
        endpoint, _ = services.add_endpoint("https://93.184.216.34/hooks", "edition.started")
        assert endpoint.enabled


def test_the_address_is_checked_again_when_delivering(make_app, receiver, clock):
    allowed = make_app(**HOOKS)
    add(allowed, receiver.url, "edition.started")
    # The same endpoint seen by a worker that does not allow private addresses (a name
    # that resolved to a public address when added and to loopback now is the same case).
    strict = make_app(WEBHOOKS_TIMEOUT=3)
    started(strict)
    assert deliver(strict) == 1
    [row] = deliveries(strict)
    assert row.delivered_at is None and row.last_error.startswith("refused: loopback")
    time.sleep(0.2)
    assert receiver.calls == []


# --------------------------------------------------------------------------- hostile input

HOSTILE_URLS = [
    "https://example.dk/hooks\r\nX-Injected: 1",
    "https://example.dk/\nhooks",
    "https://example.dk/\x00hooks",
    "https://example.dk/" + "a" * 5000,
    "https://user:pass@example.dk/hooks",
    "ftp://example.dk/hooks",
    "javascript:alert(1)",
    "https:///hooks",
    "https://example.dk:99999/hooks",
    "",
]


@pytest.mark.parametrize("url", HOSTILE_URLS, ids=range(len(HOSTILE_URLS)))
def test_hostile_urls_are_refused(hooks_app, url):
    with hooks_app.app_context():
        with pytest.raises(services.WebhookError) as refused:
            services.add_endpoint(url, "edition.started")
        assert "\n" not in str(refused.value) and "\x00" not in str(refused.value)
        assert services.list_endpoints() == []


@pytest.mark.parametrize(
    "event_types",
    [
        "subscription.nope",
        "bounce.recorded,edition.started\x00",
        "bounce.recorded\r\nedition.started",
        "",
        ",,,",
        "x" * 100_000,
        "subscriber.erase",  # the announcement, not the event
    ],
)
def test_unknown_event_names_are_refused(hooks_app, event_types):
    with hooks_app.app_context():
        with pytest.raises(services.WebhookError) as refused:
            services.add_endpoint("http://127.0.0.1:9/hooks", event_types)
        assert refused.value.field == "events"
        assert len(str(refused.value)) < 500 and "\x00" not in str(refused.value)
        assert services.list_endpoints() == []


def test_events_are_cleaned_and_deduplicated(hooks_app):
    with hooks_app.app_context():
        assert services.parse_events([" bounce.recorded ,bounce.recorded", "edition.paused"]) == [
            "bounce.recorded",
            "edition.paused",
        ]


# --------------------------------------------------------------------------- CLI


def test_cli_add_prints_the_secret_alone_on_its_last_line_once(hooks_app, receiver, clock):
    runner = hooks_app.test_cli_runner()
    result = runner.invoke(
        args=["webhooks", "add", receiver.url, "--events", "bounce.recorded,edition.started"]
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    assert result.output.count(secret) == 1
    listing = runner.invoke(args=["webhooks", "list"])
    assert listing.exit_code == 0
    assert receiver.url in listing.output and "bounce.recorded,edition.started" in listing.output
    assert secret not in listing.output
    # The secret signs what is sent.
    receiver.secret = secret
    started(hooks_app)
    deliver(hooks_app)
    assert receiver.wait_for(1)[0].verified
    removed = runner.invoke(args=["webhooks", "remove", "1"])
    assert removed.exit_code == 0 and "removed" in removed.output
    assert runner.invoke(args=["webhooks", "remove", "1"]).exit_code == 1
    assert "no webhooks" in runner.invoke(args=["webhooks", "list"]).output
    with hooks_app.app_context():
        audited = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert audited == ["webhook.add", "webhook.remove"]


@pytest.mark.parametrize(
    "args",
    [
        ["webhooks", "add", "http://127.0.0.1:9/x", "--events", "nope"],
        ["webhooks", "add", "http://127.0.0.1:9/x\r\nX: 1", "--events", "bounce.recorded"],
        ["webhooks", "add", "http://127.0.0.1:9/x"],
        ["webhooks", "remove", "0"],
        ["webhooks", "remove", "99999999999999999999"],
        ["webhooks", "remove", "abc"],
        ["webhooks", "enable", "5"],
    ],
)
def test_cli_refuses_bad_input_without_a_traceback(hooks_app, args):
    result = hooks_app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- staff page


def test_the_staff_page_adds_shows_the_secret_once_and_lists_in_danish(
    admin,  # noqa: F811
    app,
    receiver,
):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    page = admin.get("/staff/webhooks/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Tilføj en webhook" in text and "En abonnent blev slettet" in text
    response = admin.post(
        "/staff/webhooks/",
        data={
            "csrf_token": csrf_token(page.data),
            "url": receiver.url,
            "events": ["subscription.confirmed", "bounce.recorded"],
        },
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", text).group(0)
    assert "vises ikke igen" in text
    again = admin.get("/staff/webhooks/").get_data(as_text=True)
    assert secret not in again and receiver.url in again
    with app.app_context():
        [endpoint] = services.list_endpoints()
        assert endpoint.events == "subscription.confirmed,bounce.recorded"
        assert endpoint.secret == secret
        # (The admin's sign-in is in the log too.)
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("webhook.%"))
        ).one()
        assert (entry.action, entry.actor_email) == ("webhook.add", "admin@kl.dk")
    log = admin.get("/staff/audit").get_data(as_text=True)
    assert "Webhook tilføjet" in log


def test_the_staff_page_shows_why_an_endpoint_was_disabled_and_enables_it(
    admin,  # noqa: F811
    app,
):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    endpoint_id, _ = add(app, "http://127.0.0.1:9/hooks", "edition.started")
    with app.app_context():
        services.disable_endpoint(endpoint_id, "Every delivery failed for 24 hours; HTTP 500")
        db.session.commit()
    page = admin.get("/staff/webhooks/")
    text = page.get_data(as_text=True)
    assert "Slået fra" in text and "Every delivery failed for 24 hours; HTTP 500" in text
    response = admin.post(
        f"/staff/webhooks/{endpoint_id}/enable", data={"csrf_token": csrf_token(page.data)}
    )
    assert response.status_code == 303
    assert endpoint_row(app, endpoint_id).enabled
    page = admin.get("/staff/webhooks/")
    response = admin.post(
        f"/staff/webhooks/{endpoint_id}/remove", data={"csrf_token": csrf_token(page.data)}
    )
    assert response.status_code == 303
    with app.app_context():
        assert services.list_endpoints() == []


def test_the_staff_page_refuses_hostile_input_in_danish(admin, app):  # noqa: F811
    page = admin.get("/staff/webhooks/")
    for data, message in (
        ({"url": "https://127.0.0.1/x", "events": ["bounce.recorded"]}, "offentlige adresser"),
        ({"url": "https://example.dk/\r\nX: y", "events": ["bounce.recorded"]}, "linjeskift"),
        ({"url": "https://example.dk/" + "a" * 5000, "events": ["bounce.recorded"]}, "2000 tegn"),
        ({"url": "https://93.184.216.34/x", "events": ["nope"]}, "Ukendt hændelse nope"),
        ({"url": "https://93.184.216.34/x"}, "Vælg mindst én hændelse"),
    ):
        response = admin.post(
            "/staff/webhooks/", data={"csrf_token": csrf_token(page.data), **data}
        )
        assert response.status_code == 422, data
        text = response.get_data(as_text=True)
        assert "Ret venligst følgende" in text and message in text, data
    # A NUL anywhere in a form is refused before any view (newsletters/inputs.py).
    nul = admin.post(
        "/staff/webhooks/",
        data={"csrf_token": csrf_token(page.data), "url": "https://a.dk/\x00", "events": ["x"]},
    )
    assert nul.status_code == 400
    # No CSRF token, absurd ids, GET on an action.
    assert (
        admin.post("/staff/webhooks/", data={"url": "https://93.184.216.34/x"}).status_code == 400
    )
    assert admin.post("/staff/webhooks/1/remove").status_code == 400
    assert admin.post("/staff/webhooks/99999999999999999999/remove").status_code == 404
    assert admin.get("/staff/webhooks/1/remove").status_code == 405
    with app.app_context():
        assert services.list_endpoints() == []


def test_editors_cannot_see_the_webhooks_page(client, app):
    make_staff(app, EDITOR, "editor")
    login(client, EDITOR)
    assert client.get("/staff/webhooks/").status_code == 403


# --------------------------------------------------------------------------- end to end


def test_real_subscribe_confirm_unsubscribe_bounce_and_erasure_send_their_events(
    hooks_app, receiver, client
):
    app = hooks_app
    _, receiver.secret = add(app, receiver.url)
    address = "borgmester@ukendt-kommune.dk"
    client = app.test_client()
    confirmed_subscriber(client, app, address, ("momentum", "bestyrelse"))
    assert client.post(_unsubscribe_path(app, address, "momentum")).status_code == 200
    with app.app_context():
        stats = ProcessStats()
        process_message(sample("postfix_user_unknown.eml", 0, 0), stats)
        assert stats.hard == 1
        subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == address))
        db.session.remove()
    assert deliver(app) == 6
    calls = receiver.wait_for(6)
    assert all(call.verified for call in calls)
    seen = [(c.event["type"], c.event["data"].get("newsletter")) for c in calls]
    assert sorted(seen[:2]) == [
        ("subscription.requested", "bestyrelse"),
        ("subscription.requested", "momentum"),
    ]
    assert sorted(seen[2:4]) == [
        ("subscription.confirmed", "bestyrelse"),
        ("subscription.confirmed", "momentum"),
    ]
    assert seen[4:] == [("subscription.unsubscribed", "momentum"), ("bounce.recorded", None)]
    confirmed = calls[2].event["data"]
    assert confirmed["email"] == address and confirmed["subscriber_id"] == subscriber_id
    assert confirmed["method"] == "confirm_link"
    assert calls[5].event["data"]["kind"] == "hard"

    # Erasure: reported by id, and the address is scrubbed from what is stored.
    with app.app_context():
        assert subscriber_services.erase(subscriber_id, by_staff_id=None)
    assert deliver(app) == 1
    erased = receiver.wait_for(7)[6]
    assert erased.event["type"] == "subscriber.erased"
    assert erased.event["data"] == {"subscriber_id": subscriber_id, "never_again": False}
    for row in deliveries(app):
        assert address not in row.payload and "ukendt-kommune" not in row.payload


def test_an_erased_persons_address_is_never_sent_in_a_later_delivery(hooks_app, receiver, clock):
    app = hooks_app
    add(app, receiver.url, "subscription.confirmed,subscriber.erased")
    receiver.answer("500")  # the confirmation waits for a retry
    client = app.test_client()
    confirmed_subscriber(client, app, "slet.mig@kommune.dk")
    assert deliver(app) == 1
    with app.app_context():
        subscriber_id = db.session.scalar(select(Subscriber.id))
        subscriber_services.erase(subscriber_id, never_again=True)
    clock.advance(minutes=5)
    while deliver(app):
        pass
    calls = receiver.wait_for(3)
    later = calls[1:]
    assert {c.event["type"] for c in later} == {"subscription.confirmed", "subscriber.erased"}
    for call in later:
        assert b"slet.mig" not in call.body and b"kommune.dk" not in call.body
    assert json.loads(later[0].body)["data"]["subscriber_id"] == subscriber_id


def test_an_erasure_announced_by_target_alone_still_scrubs(hooks_app, receiver, clock):
    add(hooks_app, receiver.url, "bounce.recorded,subscriber.erased")
    announce(hooks_app, "bounce.recorded", subscriber_id=41, email="x@kommune.dk", kind="soft")
    with hooks_app.app_context():
        events.announce("subscriber.erase", "subscriber:41", audited=False, name="X Y")
        db.session.commit()
    bounce, erased = deliveries(hooks_app)
    assert "x@kommune.dk" not in bounce.payload and json.loads(bounce.payload)["data"] == {
        "subscriber_id": 41,
        "kind": "soft",
    }
    assert json.loads(erased.payload)["data"] == {"subscriber_id": 41}


def test_edition_lifecycle_announcements_are_events(hooks_app, receiver, clock):
    add(hooks_app, receiver.url, "edition.started,edition.paused,edition.finished")
    for name in ("edition.started", "edition.paused", "edition.finished"):
        announce(hooks_app, name, edition_id=3, newsletter="bestyrelse", subject="Nyt", sent=7)
    assert deliver(hooks_app) == 3
    assert [c.event["type"] for c in receiver.wait_for(3)] == [
        "edition.started",
        "edition.paused",
        "edition.finished",
    ]
