"""The preference centre: a personal link, choose newsletters, details, data, deletion."""

from __future__ import annotations

import json
import time

from sqlalchemy import func, select

from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions.models import ConsentEvent, Subscriber, Subscription
from tests.support.flows import (
    confirmed_subscriber,
    link_in,
    queued_mails,
    subscribe,
    subscriptions_of,
)
from tests.support.pages import csrf_token


def _manage_path(client, app, address="a@example.dk"):
    page = client.get("/manage")
    response = client.post("/manage", data={"csrf_token": csrf_token(page.data), "email": address})
    assert response.status_code == 303
    assert response.headers["Location"] == "/link-sent"
    return link_in(queued_mails(app, address, kind="manage_link")[-1], "/manage/")


def test_link_request_answers_the_same_for_known_and_unknown_addresses(client, app):
    confirmed_subscriber(client, app, "known@example.dk")
    answers = set()
    for address in ("known@example.dk", "nobody@example.dk"):
        page = client.get("/manage")
        response = client.post(
            "/manage", data={"csrf_token": csrf_token(page.data), "email": address}
        )
        answers.add((response.status_code, response.data))
    assert len(answers) == 1
    assert [m.kind for m in queued_mails(app, "known@example.dk")] == ["confirm", "manage_link"]
    assert queued_mails(app, "nobody@example.dk") == []


def test_link_request_for_an_unconfirmed_address_sends_a_fresh_confirmation(client, app):
    subscribe(client, "a@example.dk")
    page = client.get("/manage")
    client.post("/manage", data={"csrf_token": csrf_token(page.data), "email": "a@example.dk"})
    assert [m.kind for m in queued_mails(app, "a@example.dk")] == ["confirm", "confirm"]


def test_manage_page_shows_current_choices(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    html = client.get(_manage_path(client, app)).get_data(as_text=True)
    assert "a@example.dk" in html
    for slug, checked in (("momentum", True), ("bestyrelse", True), ("kl-nyheder", False)):
        tag = html[html.index(f'value="{slug}"') - 120 : html.index(f'value="{slug}"') + 40]
        assert ("checked" in tag) is checked, slug


def test_saving_preferences_adds_removes_and_records_consent(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    path = _manage_path(client, app)
    page = client.get(path)
    response = client.post(
        path,
        data={
            "csrf_token": csrf_token(page.data),
            "newsletters": ["bestyrelse", "kl-nyheder"],
            "name": "Anna Hansen",
            "municipality": "Ærø",
        },
    )
    assert response.status_code == 303
    assert subscriptions_of(app, "a@example.dk") == {
        "momentum": "unsubscribed",
        "bestyrelse": "confirmed",
        "kl-nyheder": "confirmed",
    }
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber))
        assert (subscriber.name, subscriber.municipality) == ("Anna Hansen", "Ærø")
        events = [
            (e.subscription.newsletter.slug, e.action.value, e.method)
            for e in db.session.scalars(
                select(ConsentEvent).where(ConsentEvent.method == "preference_centre")
            )
        ]
    assert ("momentum", "withdrawn", "preference_centre") in events
    assert ("kl-nyheder", "confirmed", "preference_centre") in events
    # The saved page says so.
    assert client.get(response.headers["Location"]).status_code == 200


def test_get_on_manage_link_changes_nothing(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    path = _manage_path(client, app)
    with app.app_context():
        before = db.session.scalar(select(func.count(ConsentEvent.id)))
    for suffix in ("", "/data.json", "/delete"):
        assert client.get(path + suffix).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count(ConsentEvent.id))) == before
        assert db.session.scalar(select(func.count(Subscriber.id))) == 1
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "confirmed"}


def test_unsubscribe_from_all(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "kl-nyheder"))
    path = _manage_path(client, app)
    page = client.get(path)
    response = client.post(f"{path}/unsubscribe-all", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 200
    assert set(subscriptions_of(app, "a@example.dk").values()) == {"unsubscribed"}


def test_download_my_data_as_json(client, app):
    client.environ_base.update(REMOTE_ADDR="192.0.2.9")
    confirmed_subscriber(client, app, "a@example.dk")
    response = client.get(_manage_path(client, app) + "/data.json")
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.data)
    assert data["email"] == "a@example.dk"
    [subscription] = data["subscriptions"]
    assert subscription["newsletter"] == "momentum"
    history = [(e["action"], e["ip"]) for e in subscription["consent_history"]]
    assert history == [("requested", "192.0.2.9"), ("confirmed", "192.0.2.9")]
    assert {m["kind"] for m in data["mails"]} == {"confirm", "manage_link"}


def test_delete_me_needs_the_box_ticked(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    path = _manage_path(client, app)
    page = client.get(f"{path}/delete")
    response = client.post(f"{path}/delete", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 422
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "confirmed"}


def test_delete_me_erases_everything_about_the_person(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    confirmed_subscriber(client, app, "other@example.dk")
    path = _manage_path(client, app)
    page = client.get(f"{path}/delete")
    response = client.post(
        f"{path}/delete", data={"csrf_token": csrf_token(page.data), "understood": "y"}
    )
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(select(Subscriber.email)).all() == ["other@example.dk"]
        other_id = db.session.scalar(select(Subscriber.id))
        assert {s.subscriber_id for s in db.session.scalars(select(Subscription))} == {other_id}
        assert {m.to_address for m in db.session.scalars(select(OutboxMessage))} == {
            "other@example.dk"
        }
        events = db.session.scalars(select(ConsentEvent)).all()
        assert {e.subscription.subscriber_id for e in events} == {other_id}
    # The old link now gets a clear page, not an error.
    assert client.get(path).status_code == 400


def test_expired_manage_link_offers_a_new_one(make_app):
    app = make_app(MANAGE_MAX_AGE_DAYS=1 / 86400)
    client = app.test_client()
    confirmed_subscriber(client, app, "a@example.dk")
    path = _manage_path(client, app)
    time.sleep(2.1)
    page = client.get(path)
    assert page.status_code == 410
    response = client.post(f"{path}/resend", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 303
    assert len(queued_mails(app, "a@example.dk", kind="manage_link")) == 2
    # Reloading the page it lands on sends nothing more.
    client.get(response.headers["Location"])
    client.get(response.headers["Location"])
    assert len(queued_mails(app, "a@example.dk", kind="manage_link")) == 2
    # An expired link cannot save anything.
    save = client.post(path, data={"csrf_token": csrf_token(page.data), "newsletters": []})
    assert save.status_code == 410
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "confirmed"}


def test_manage_link_from_the_mail_is_personal(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    confirmed_subscriber(client, app, "b@example.dk")
    path_a = _manage_path(client, app, "a@example.dk")
    path_b = _manage_path(client, app, "b@example.dk")
    assert path_a != path_b
    assert "a@example.dk" in client.get(path_a).get_data(as_text=True)
    assert "b@example.dk" not in client.get(path_a).get_data(as_text=True)
