"""Rotating the key of the stored TOTP secrets: the old key read as a fallback, every
secret sealed under the new one by `flask staff reseal-2fa`, then the old key dropped;
nobody has to set up their authenticator app again."""

from __future__ import annotations

import pytest
from flask import Flask

from newsletters import ConfigurationError
from newsletters.staff.twofactor import sealing
from tests.test_staff import EDITOR, TEST_TOTP_SECRET, totp_code
from tests.test_twofactor import (
    enrol_editor,
    entries,
    password_step,
    post_code,
    raw_secret,
    signed_in,
    store_raw,
)

pytestmark = pytest.mark.usefixtures("clock")  # conftest's controlled clock


OLD_KEY = "the old key of the second factors, long enough"
NEW_KEY = "the new key of the second factors, long enough"


def logs_in_with_the_app(app: Flask, secret: str, clock) -> bool:
    other = app.test_client()
    assert password_step(other, EDITOR).status_code == 303
    clock.advance(seconds=30)
    return post_code(other, totp_code(secret)).status_code == 303 and signed_in(other)


def reseal(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["staff", "reseal-2fa"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_new_key_with_the_old_as_fallback_keeps_logins_working_then_reseal_drops_it(
    client, app, clock
):
    app.config["TWOFA_ENCRYPTION_KEY"] = OLD_KEY
    secret, _ = enrol_editor(client, app)
    sealed_old = raw_secret(app, EDITOR)
    app.config.update(TWOFA_ENCRYPTION_KEY=NEW_KEY, TWOFA_ENCRYPTION_KEY_FALLBACKS=[OLD_KEY])
    assert logs_in_with_the_app(app, secret, clock)
    assert raw_secret(app, EDITOR) == sealed_old  # reading does not write

    output = reseal(app)
    assert "1 two-factor secret(s) encrypted again with the current key, 0 already were" in output
    assert raw_secret(app, EDITOR) != sealed_old
    [(_, target, details)] = entries(app, "staff.second_factor_resealed")
    assert target == "staff"
    assert details == {"resealed": 1, "already_current": 0, "unreadable": 0}
    # Run again: nothing to do, nothing audited.
    assert "0 two-factor secret(s) encrypted again with the current key, 1 already were" in (
        reseal(app)
    )
    assert len(entries(app, "staff.second_factor_resealed")) == 1
    # The old key dropped (and SECRET_KEY rotated too): the app's codes still work.
    app.config.update(
        TWOFA_ENCRYPTION_KEY_FALLBACKS=[], SECRET_KEY="a rotated secret key, long enough"
    )
    assert logs_in_with_the_app(app, secret, clock)


def test_secrets_sealed_under_secret_key_stay_readable_when_a_key_is_first_set(client, app, clock):
    secret, _ = enrol_editor(client, app)  # under SECRET_KEY: no TWOFA_ENCRYPTION_KEY yet
    app.config["TWOFA_ENCRYPTION_KEY"] = NEW_KEY
    assert logs_in_with_the_app(app, secret, clock)
    assert "1 two-factor secret(s) encrypted again" in reseal(app)
    app.config["SECRET_KEY"] = "a rotated secret key, long enough"
    assert logs_in_with_the_app(app, secret, clock)


def test_without_the_old_key_the_secret_is_unreadable_and_reseal_names_it(client, app, clock):
    app.config["TWOFA_ENCRYPTION_KEY"] = OLD_KEY
    enrol_editor(client, app)
    sealed_old = raw_secret(app, EDITOR)
    app.config["TWOFA_ENCRYPTION_KEY"] = NEW_KEY  # the old key forgotten
    output = reseal(app)
    assert "0 two-factor secret(s) encrypted again with the current key, 0 already were" in output
    assert "1 no key can read" in output and EDITOR in output
    assert "flask staff reset-2fa" in output
    assert raw_secret(app, EDITOR) == sealed_old  # left as it was, for a reset
    [(_, _, details)] = entries(app, "staff.second_factor_resealed")
    assert details == {"resealed": 0, "already_current": 0, "unreadable": 1}


@pytest.mark.parametrize(
    "stored", [TEST_TOTP_SECRET, "gAAAAA" + "x" * 200, "ikke\x01base64\r\n", "æøå" * 20, ""]
)
def test_reseal_leaves_hostile_stored_values_as_they_are(client, app, clock, stored):
    enrol_editor(client, app)
    store_raw(app, EDITOR, stored)
    output = reseal(app)
    assert "1 no key can read" in output and "Traceback" not in output
    assert raw_secret(app, EDITOR) == stored


def test_a_fallback_never_seals(app, clock):
    app.config.update(TWOFA_ENCRYPTION_KEY=NEW_KEY, TWOFA_ENCRYPTION_KEY_FALLBACKS=[OLD_KEY])
    with app.app_context():
        stored = sealing.seal(TEST_TOTP_SECRET)
        assert sealing.sealed_with_current_key(stored)
        app.config.update(TWOFA_ENCRYPTION_KEY=OLD_KEY, TWOFA_ENCRYPTION_KEY_FALLBACKS=[])
        with pytest.raises(sealing.SecretUnreadable):
            sealing.unseal(stored)


@pytest.mark.parametrize("fallbacks", [5, [""], ["ok", None], {"key": "x"}, ["  "]])
def test_a_malformed_fallback_setting_stops_the_app_in_one_line(make_app, fallbacks):
    with pytest.raises(ConfigurationError, match="TWOFA_ENCRYPTION_KEY_FALLBACKS must be a list"):
        make_app(TWOFA_ENCRYPTION_KEY_FALLBACKS=fallbacks)


def test_the_fallbacks_come_from_the_environment_as_a_list_or_one_text(make_app, monkeypatch):
    monkeypatch.setenv("NEWSLETTERS_TWOFA_ENCRYPTION_KEY_FALLBACKS", f'["{OLD_KEY}", "x y"]')
    assert make_app().config["TWOFA_ENCRYPTION_KEY_FALLBACKS"] == [OLD_KEY, "x y"]
    monkeypatch.setenv("NEWSLETTERS_TWOFA_ENCRYPTION_KEY_FALLBACKS", OLD_KEY)
    assert make_app().config["TWOFA_ENCRYPTION_KEY_FALLBACKS"] == [OLD_KEY]
