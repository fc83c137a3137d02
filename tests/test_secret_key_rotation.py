"""Rotating SECRET_KEY: the old key in SECRET_KEY_FALLBACKS keeps the links in mail
already sent working (one-click unsubscribe included) and staff signed in; new links
are signed with the new key; the suppression list keeps its key (SUPPRESSION_HASH_KEY,
required once there are fallbacks, "hex:..." from `flask subscribers suppression-key`)."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters import ConfigurationError
from newsletters.extensions import db
from newsletters.staff.twofactor import sealing
from newsletters.subscriptions import links, suppression
from newsletters.subscriptions.models import Subscriber, SuppressionReason
from newsletters.tokens import BulkSigner, Purpose, TokenError, sign, verify
from tests.support.clock import Clock, local
from tests.support.flows import confirmed_subscriber, subscriptions_of
from tests.support.pages import csrf_token
from tests.test_staff import EDITOR, PASSWORD, TEST_TOTP_SECRET, make_staff

OLD = "the old secret key of this installation, long enough"
NEW = "the new secret key of this installation, long enough"
ADDRESS = "borgmester@kommune.dk"


def suppression_key(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["subscribers", "suppression-key"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def rotate(app: Flask, *, fallbacks: list[str]) -> None:
    """What an operator's new configuration does (the app reads its config per request)."""
    app.config.update(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=fallbacks)


def unsubscribe_path(app: Flask, address: str) -> str:
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
        url = links.unsubscribe_url(subscriber)
        db.session.remove()
    return url[url.index("/unsubscribe/") :]


@pytest.fixture
def old_app(make_app) -> Flask:
    return make_app(SECRET_KEY=OLD)


def test_links_in_mail_sent_before_the_rotation_still_unsubscribe(old_app):
    client = old_app.test_client()
    confirmed_subscriber(client, old_app, ADDRESS)
    path = unsubscribe_path(old_app, ADDRESS)  # as in a mail sent before
    old_app.config["SUPPRESSION_HASH_KEY"] = suppression_key(old_app)
    rotate(old_app, fallbacks=[OLD])
    page = client.get(path)
    assert page.status_code == 200 and "Afmeld" in page.get_data(as_text=True)
    # RFC 8058 one-click, as a mail client posts it: no session, no CSRF token.
    response = old_app.test_client().post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert set(subscriptions_of(old_app, ADDRESS).values()) == {"unsubscribed"}


def test_without_the_fallback_an_old_link_gets_the_clear_page_and_changes_nothing(old_app):
    client = old_app.test_client()
    confirmed_subscriber(client, old_app, ADDRESS)
    path = unsubscribe_path(old_app, ADDRESS)
    rotate(old_app, fallbacks=[])
    page = client.get(path)
    assert page.status_code == 400
    assert "Traceback" not in page.get_data(as_text=True)
    response = old_app.test_client().post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert set(subscriptions_of(old_app, ADDRESS).values()) == {"confirmed"}


def test_new_links_are_signed_with_the_new_key_alone(old_app):
    rotate(old_app, fallbacks=[OLD])
    payload = {"k": "Q3v9xK2mP8rT1wZ5yB7nLd", "v": 1}
    with old_app.app_context():
        for token in (sign(Purpose.MANAGE, payload), BulkSigner(Purpose.MANAGE).sign(payload)):
            old_app.config["SECRET_KEY_FALLBACKS"] = []
            assert verify(Purpose.MANAGE, token) == payload
            old_app.config.update(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[])
            with pytest.raises(TokenError):
                verify(Purpose.MANAGE, token)
            rotate(old_app, fallbacks=[OLD])


def test_an_expired_old_link_is_still_called_expired(old_app):
    from newsletters import timeutil

    clock = Clock(local(2026, 12, 1, 9, 0))
    timeutil.set_clock(clock)
    try:
        payload = {"k": "Q3v9xK2mP8rT1wZ5yB7nLd", "v": 1}
        with old_app.app_context():
            token = sign(Purpose.LOGIN, payload)
            rotate(old_app, fallbacks=[OLD])
            clock.advance(days=30)
            with pytest.raises(TokenError) as refused:
                verify(Purpose.LOGIN, token)
            assert refused.value.expired
    finally:
        timeutil.set_clock(None)


def test_staff_stay_signed_in_across_the_rotation(old_app):
    make_staff(old_app, EDITOR, "editor")
    clients = [old_app.test_client(), old_app.test_client()]
    for client in clients:
        token = csrf_token(client.get("/staff/login").data)
        data = {"csrf_token": token, "email": EDITOR, "password": PASSWORD}
        client.post("/staff/login", data=data)
        assert client.get("/staff/").status_code == 200
    early, late = clients
    rotate(old_app, fallbacks=[OLD])
    assert early.get("/staff/").status_code == 200  # its cookie now signed with the new key
    rotate(old_app, fallbacks=[])
    assert early.get("/staff/").status_code == 200
    # A browser not seen while the old key was a fallback is signed out, not an error.
    assert late.get("/staff/").status_code == 302


def test_erased_people_stay_suppressed_with_the_key_the_command_printed(old_app):
    with old_app.app_context():
        suppression.suppress(ADDRESS, SuppressionReason.ERASURE, keep_address=False)
        db.session.commit()
    key = suppression_key(old_app)
    assert key.startswith("hex:") and len(key) == 4 + 64
    old_app.config["SUPPRESSION_HASH_KEY"] = key
    rotate(old_app, fallbacks=[OLD])
    with old_app.app_context():
        assert suppression.is_suppressed(ADDRESS)
        assert suppression.is_suppressed(ADDRESS.upper())
    # Once set, the command says so and prints no key.
    result = old_app.test_cli_runner().invoke(args=["subscribers", "suppression-key"])
    assert result.stdout == "" and "set already" in result.stderr


def test_totp_secrets_sealed_under_the_old_secret_key_stay_readable(old_app):
    with old_app.app_context():
        stored = sealing.seal(TEST_TOTP_SECRET)
        rotate(old_app, fallbacks=[OLD])
        assert sealing.unseal(stored) == TEST_TOTP_SECRET
        assert not sealing.sealed_with_current_key(stored)


def test_fallbacks_without_a_suppression_key_stop_the_app_and_say_what_to_do(make_app):
    with pytest.raises(ConfigurationError) as refused:
        make_app(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD])
    assert "flask subscribers suppression-key" in str(refused.value)


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("SECRET_KEY_FALLBACKS", 5, "must be a list"),
        ("SECRET_KEY_FALLBACKS", [""], "must be a list"),
        ("SECRET_KEY_FALLBACKS", [OLD, None], "must be a list"),
        ("SUPPRESSION_HASH_KEY", "hex:zz", "hex"),
        ("SUPPRESSION_HASH_KEY", "hex:00ff", "hex"),  # 2 bytes: not a key
        ("SUPPRESSION_HASH_KEY", "hex:\r\n", "hex"),
    ],
)
def test_malformed_key_settings_stop_the_app_in_one_line(make_app, setting, value, said):
    overrides = {"SUPPRESSION_HASH_KEY": "a suppression key, long enough", setting: value}
    with pytest.raises(ConfigurationError, match=said):
        make_app(**overrides)


def test_the_fallbacks_come_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("NEWSLETTERS_SECRET_KEY_FALLBACKS", f'["{OLD}"]')
    monkeypatch.setenv("NEWSLETTERS_SUPPRESSION_HASH_KEY", "a suppression key, long enough")
    app = make_app(SECRET_KEY=NEW)
    assert app.config["SECRET_KEY_FALLBACKS"] == [OLD]
