"""Double opt-in: opening the link shows a button; only the POST confirms."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer

from newsletters import timeutil
from newsletters.extensions import db
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import ConsentEvent, Subscriber, SuppressionReason
from newsletters.tokens import BulkSigner, Purpose, TokenError, sign, verify
from tests.support.flows import header, link_in, queued_mails, subscribe, subscriptions_of
from tests.support.pages import csrf_token


def _confirm_path(client, app, address="a@example.dk", newsletters=("momentum",)):
    subscribe(client, address, list(newsletters))
    return link_in(queued_mails(app, address, kind="confirm")[-1], "/confirm/")


def test_get_on_confirm_link_does_not_confirm(client, app):
    path = _confirm_path(client, app, newsletters=("momentum", "bestyrelse"))
    for _ in range(3):  # Microsoft 365 Safe Links, then the person, then a preview
        page = client.get(path)
        assert page.status_code == 200
        assert "<form" in page.get_data(as_text=True)
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending", "bestyrelse": "pending"}
    with app.app_context():
        actions = [e.action.value for e in db.session.scalars(db.select(ConsentEvent))]
    assert "confirmed" not in actions


def test_post_confirms_and_records_ip_and_agent(client, app):
    path = _confirm_path(client, app)
    page = client.get(path)
    client.environ_base.update(REMOTE_ADDR="198.51.100.4", HTTP_USER_AGENT="Mozilla/5.0 Edge")
    response = client.post(path, data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 200
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "confirmed"}
    with app.app_context():
        event = db.session.scalars(
            db.select(ConsentEvent).where(ConsentEvent.action == "confirmed")
        ).one()
        assert (event.ip, event.user_agent, event.method) == (
            "198.51.100.4",
            "Mozilla/5.0 Edge",
            "confirm_link",
        )


def test_confirming_twice_is_harmless(client, app):
    path = _confirm_path(client, app)
    token = csrf_token(client.get(path).data)
    first = client.post(path, data={"csrf_token": token})
    second = client.post(path, data={"csrf_token": token})
    assert first.status_code == second.status_code == 200
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "confirmed"}
    with app.app_context():
        confirmed = db.session.scalars(
            db.select(ConsentEvent).where(ConsentEvent.action == "confirmed")
        ).all()
    assert len(confirmed) == 1
    # The link, opened again, says there is nothing left to confirm.
    assert "<form" not in client.get(path).get_data(as_text=True).split("<main")[1]


def test_confirm_post_without_csrf_token_does_not_confirm(client, app):
    path = _confirm_path(client, app)
    response = client.post(path, data={})
    assert response.status_code == 400
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}


def test_tampered_token_gets_a_clear_page(client, app):
    path = _confirm_path(client, app)
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    for url in (tampered, "/confirm/garbage", "/confirm/" + "x" * 500):
        response = client.get(url)
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "Traceback" not in html
        assert "Linket virker ikke" in html


def test_token_for_another_purpose_is_refused(client, app):
    with app.app_context():
        subscribe(client, "a@example.dk")
        link_key = db.session.scalar(db.select(Subscriber.link_key))
        manage_token = sign(Purpose.MANAGE, {"k": link_key, "v": 1})
    assert client.get(f"/confirm/{manage_token}").status_code == 400
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}


def test_token_signed_with_another_key_is_refused(client, app):
    subscribe(client, "a@example.dk")
    forged = URLSafeTimedSerializer("another-key", salt="newsletters.confirm").dumps(
        {"s": 1, "v": 1, "n": [1, 2, 3, 4]}
    )
    assert client.get(f"/confirm/{forged}").status_code == 400


def test_expired_link_offers_a_new_one(make_app):
    app = make_app(CONFIRM_MAX_AGE_DAYS=1 / 86400)  # one second
    client = app.test_client()
    path = _confirm_path(client, app)
    time.sleep(2.1)
    page = client.get(path)
    assert page.status_code == 410
    html = page.get_data(as_text=True)
    assert "Linket er udløbet" in html
    # Pressing the button on the page with an expired link does not confirm either.
    assert client.post(path, data={"csrf_token": csrf_token(html)}).status_code == 410
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}
    resend = client.post(f"{path}/resend", data={"csrf_token": csrf_token(html)})
    assert resend.status_code == 303
    mails = queued_mails(app, "a@example.dk", kind="confirm")
    assert len(mails) == 2
    assert link_in(mails[1], "/confirm/") != path


def test_revoked_links_stop_working(client, app):
    path = _confirm_path(client, app)
    with app.app_context():
        subscriber = db.session.scalar(db.select(Subscriber))
        subscriber.token_version += 1
        db.session.commit()
    assert client.get(path).status_code == 400
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}


def test_confirm_link_does_not_resubscribe_after_unsubscribing(client, app):
    path = _confirm_path(client, app)
    # List-Unsubscribe of the confirmation mail = "I did not ask for this".
    url = header(queued_mails(app, "a@example.dk")[0], "List-Unsubscribe").strip("<>")
    client.post(urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "unsubscribed"}
    assert "<form" not in client.get(path).get_data(as_text=True).split("<main")[1]
    # Even a hand-made POST (with a valid CSRF token of the session) does not resubscribe.
    response = client.post(path, data={"csrf_token": csrf_token(client.get("/").data)})
    assert response.status_code == 200
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "unsubscribed"}


BLOCKED = (
    "Adressen a@example.dk er blokeret: der bliver ikke sendt nyhedsbreve til den, "
    "og tilmeldingen kan ikke bekræftes."
)


def _main(page) -> str:
    return page.get_data(as_text=True).split("<main")[1]


def test_confirm_page_of_a_suppressed_address_says_it_is_blocked_and_offers_no_button(client, app):
    """The GET says what the POST will do: a suppressed address is not confirmed."""
    path = _confirm_path(client, app)
    with app.app_context():
        suppression.suppress("A@Example.dk", SuppressionReason.HARD_BOUNCE)
        db.session.commit()
    page = client.get(path)
    assert page.status_code == 200
    main = _main(page)
    assert BLOCKED in main
    assert "<form" not in main and "Bekræft tilmelding" not in main
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}


def test_confirm_post_of_a_suppressed_address_confirms_nothing_and_says_so(client, app):
    path = _confirm_path(client, app)
    with app.app_context():
        suppression.suppress("a@example.dk", SuppressionReason.ERASURE, keep_address=False)
        db.session.commit()
    # A hand-made POST (with a valid CSRF token of the session): the page had no button.
    response = client.post(path, data={"csrf_token": csrf_token(client.get("/").data)})
    assert response.status_code == 200
    assert BLOCKED in _main(response)
    assert "Tak, nu er du tilmeldt" not in _main(response)
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "pending"}
    with app.app_context():
        actions = [e.action.value for e in db.session.scalars(db.select(ConsentEvent))]
    assert "confirmed" not in actions


def test_confirm_page_of_an_address_no_longer_suppressed_offers_the_button_again(client, app):
    path = _confirm_path(client, app)
    with app.app_context():
        entry = suppression.suppress("a@example.dk", SuppressionReason.MANUAL)
        db.session.commit()
        assert BLOCKED in _main(client.get(path))
        suppression.lift(entry.id, by_staff_id=None)
    main = _main(client.get(path))
    assert BLOCKED not in main and "Bekræft tilmelding" in main


@pytest.mark.parametrize("purpose", [Purpose.MANAGE, Purpose.UNSUBSCRIBE])
def test_bulk_signed_links_are_the_tokens_sign_makes(app, purpose, monkeypatch):
    payload = {"k": "Q3v9xK2mP8rT1wZ5yB7nLd", "v": 3, "n": [2]}
    instant = datetime(2026, 12, 1, 9, 0, 0, 500000, tzinfo=UTC)
    monkeypatch.setattr(timeutil, "_clock", lambda: instant)
    with app.app_context():
        bulk = BulkSigner(purpose).sign(payload)
        assert bulk == sign(purpose, payload)
        assert verify(purpose, bulk) == payload
        other = Purpose.UNSUBSCRIBE if purpose is Purpose.MANAGE else Purpose.MANAGE
        with pytest.raises(TokenError):
            verify(other, bulk)
