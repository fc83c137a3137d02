"""The public subscribe form: contract, double opt-in request, abuse limits, no enumeration."""

from __future__ import annotations

import re

from newsletters.extensions import db
from newsletters.subscriptions.consent import CURRENT_CONSENT_VERSION
from newsletters.subscriptions.models import ConsentEvent, Subscriber
from tests.support.flows import process_intake, queued_mails, subscribe, subscriptions_of
from tests.support.pages import csrf_token


def test_front_page_has_the_contract_fields(client):
    html = client.get("/").get_data(as_text=True)
    for name in ("email", "name", "municipality", "csrf_token"):
        assert f'name="{name}"' in html
    boxes = re.findall(r'<input[^>]*name="newsletters"[^>]*>', html)
    values = sorted(re.search(r'value="([^"]+)"', b).group(1) for b in boxes)
    assert values == ["bestyrelse", "danske-kommuner", "kl-nyheder", "momentum"]
    assert all('type="checkbox"' in b for b in boxes)


def test_front_page_offers_all_98_municipalities(client):
    html = client.get("/").get_data(as_text=True)
    select = html[html.index('name="municipality"') : html.index("</select>")]
    assert select.count("<option") == 99  # the 98 and "choose"
    assert ">København</option>" in select and ">Ærø</option>" in select


def test_post_without_csrf_token_is_refused_with_400(client, app):
    response = client.post("/", data={"email": "a@example.dk", "newsletters": ["momentum"]})
    assert response.status_code == 400
    assert subscriptions_of(app, "a@example.dk") == {}
    assert queued_mails(app) == []


def test_post_with_a_forged_csrf_token_is_refused_with_400(client, app):
    client.get("/")
    response = client.post(
        "/", data={"csrf_token": "forged", "email": "a@example.dk", "newsletters": ["momentum"]}
    )
    assert response.status_code == 400
    assert queued_mails(app) == []


def test_subscribe_creates_pending_subscriptions_and_one_confirmation(client, app):
    response = subscribe(
        client,
        " Anna.Borgmester@Aarhus.DK ",
        ["bestyrelse", "momentum"],
        name="Anna Hansen",
        municipality="Aarhus",
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/subscribed")
    address = "anna.borgmester@aarhus.dk"
    assert subscriptions_of(app, address) == {"bestyrelse": "pending", "momentum": "pending"}
    [mail] = queued_mails(app, address)
    assert mail.kind == "confirm"
    with app.app_context():
        subscriber = db.session.scalar(db.select(Subscriber))
        assert (subscriber.name, subscriber.municipality) == ("Anna Hansen", "Aarhus")


def test_request_is_recorded_as_consent_with_ip_agent_and_text_version(client, app):
    client.environ_base.update(REMOTE_ADDR="192.0.2.7", HTTP_USER_AGENT="Outlook-iOS/4.0")
    subscribe(client, "a@example.dk", ["momentum"])
    with app.app_context():
        [event] = db.session.scalars(db.select(ConsentEvent))
        assert event.action.value == "requested"
        assert event.method == "web_form"
        assert event.ip == "192.0.2.7"
        assert event.user_agent == "Outlook-iOS/4.0"
        assert event.consent_text_version == CURRENT_CONSENT_VERSION
        assert event.locale == "da"
        assert event.at is not None


def test_second_request_for_a_pending_address_does_not_create_a_second_subscriber(client, app):
    subscribe(client, "a@example.dk", ["momentum"])
    subscribe(client, "A@Example.dk", ["momentum", "kl-nyheder"])
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Subscriber.id))) == 1
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending", "kl-nyheder": "pending"}
    mails = queued_mails(app, "a@example.dk")
    assert [m.kind for m in mails] == ["confirm", "confirm"]


def test_no_address_gets_more_than_three_link_mails_an_hour(client, app):
    for _ in range(5):
        assert subscribe(client, "victim@example.dk", ["momentum"]).status_code == 303
    client.post(
        "/manage",
        data={"csrf_token": csrf_token(client.get("/manage").data), "email": "victim@example.dk"},
    )
    assert len(queued_mails(app, "victim@example.dk")) == 3


def test_honeypot_filled_answers_the_same_and_does_nothing(client, app):
    response = subscribe(client, "bot@example.dk", ["momentum"], website="http://spam")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/subscribed")
    assert subscriptions_of(app, "bot@example.dk") == {}
    assert queued_mails(app) == []


def test_invalid_address_is_refused_with_a_danish_message_tied_to_the_field(client, app):
    response = subscribe(client, "not-an-address", ["momentum"])
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="email-error"' in html
    assert 'aria-describedby="email-hint email-error"' in html
    assert 'aria-invalid="true"' in html
    assert "Indtast en gyldig e-mailadresse" in html
    assert queued_mails(app) == []


def test_no_newsletter_chosen_is_refused(client, app):
    response = subscribe(client, "a@example.dk", [])
    assert response.status_code == 422
    assert 'id="newsletters-error"' in response.get_data(as_text=True)
    assert queued_mails(app) == []


def test_unknown_newsletter_or_municipality_is_refused(client, app):
    assert subscribe(client, "a@example.dk", ["no-such-list"]).status_code == 422
    assert (
        subscribe(client, "a@example.dk", ["momentum"], municipality="Atlantis").status_code == 422
    )
    assert queued_mails(app) == []


def test_answer_is_the_same_for_new_pending_and_confirmed_addresses(client, app):
    from tests.support.flows import confirmed_subscriber

    confirmed_subscriber(client, app, "known@example.dk")
    answers = []
    for address in (
        "known@example.dk",
        "pending@example.dk",
        "pending@example.dk",
        "new@example.dk",
    ):
        response = subscribe(client, address, ["momentum"])
        page = client.get(response.headers["Location"])
        answers.append((response.status_code, response.headers["Location"], page.data))
    assert len(set(answers)) == 1


def test_confirmed_subscriber_asking_again_gets_a_manage_link_not_a_confirmation(client, app):
    from tests.support.flows import confirmed_subscriber

    confirmed_subscriber(client, app, "known@example.dk")
    subscribe(client, "known@example.dk", ["momentum"])
    kinds = [m.kind for m in queued_mails(app, "known@example.dk")]
    assert kinds == ["confirm", "already_subscribed"]


def test_a_stranger_cannot_change_a_confirmed_subscribers_details(client, app):
    from tests.support.flows import confirmed_subscriber

    subscribe(client, "known@example.dk", ["momentum"], name="Anna")
    confirmed_subscriber(client, app, "known@example.dk")
    subscribe(client, "known@example.dk", ["momentum"], name="Mallory", municipality="Ærø")
    with app.app_context():
        subscriber = db.session.scalar(db.select(Subscriber))
        assert subscriber.name == "Anna"
        assert subscriber.municipality == ""


def test_subscribe_is_rate_limited_per_ip(make_app):
    app = make_app(RATELIMIT_SUBSCRIBE="2 per hour")
    client = app.test_client()
    assert subscribe(client, "a@example.dk").status_code == 303
    assert subscribe(client, "b@example.dk").status_code == 303
    response = subscribe(client, "c@example.dk")
    assert response.status_code == 429
    assert "For mange forespørgsler" in response.get_data(as_text=True)
    assert subscriptions_of(app, "c@example.dk") == {}


def test_english_form_records_english_and_mails_in_english(client, app):
    token = csrf_token(client.get("/?lang=en").data)
    client.post(
        "/?lang=en",
        data={"csrf_token": token, "email": "en@example.dk", "newsletters": ["momentum"]},
    )
    process_intake(app)
    [mail] = queued_mails(app, "en@example.dk")
    assert mail.subject == "Confirm your subscription to KL's newsletters"
    with app.app_context():
        assert db.session.scalar(db.select(Subscriber.locale)) == "en"


def test_danish_confirmation_mail_is_in_danish(client, app):
    subscribe(client, "da@example.dk", ["momentum"])
    [mail] = queued_mails(app, "da@example.dk")
    assert mail.subject == "Bekræft din tilmelding til KL's nyhedsbreve"
