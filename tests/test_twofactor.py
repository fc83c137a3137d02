"""Two factors for staff: setting up TOTP, the code after the password, recovery codes,
codes used once, wrong codes throttled and audited, the half-way state, reset-2fa."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from newsletters.audit.models import AuditEntry
from newsletters.extensions import db
from newsletters.staff import services
from newsletters.staff.models import RecoveryCode, Staff, StaffSession
from newsletters.staff.twofactor import sealing
from tests.support.clock import Clock, local
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, PASSWORD, TEST_TOTP_SECRET, make_staff, totp_code

pytestmark = pytest.mark.usefixtures("clock")


@pytest.fixture
def clock() -> Iterator[Clock]:
    from newsletters import timeutil

    clock = Clock(local(2026, 12, 1, 9, 0))
    timeutil.set_clock(clock)
    yield clock
    timeutil.set_clock(None)


def password_step(client: FlaskClient, email: str, password: str = PASSWORD, **headers):
    token = csrf_token(client.get("/staff/login").data)
    return client.post(
        "/staff/login",
        data={"csrf_token": token, "email": email, "password": password},
        headers=headers,
    )


def post_code(client: FlaskClient, code: str, **headers):
    token = csrf_token(client.get("/staff/login/code", headers=headers).data)
    return client.post(
        "/staff/login/code", data={"csrf_token": token, "code": code}, headers=headers
    )


def setup_secret(page: str) -> str:
    found = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    assert found, "no secret on the page"
    return found.group(1).replace(" ", "")


def post_setup(client: FlaskClient, code: str, current_code: str | None = None):
    token = csrf_token(client.get("/staff/two-factor/setup").data)
    data = {"csrf_token": token, "code": code}
    if current_code is not None:
        data["current_code"] = current_code
    return client.post("/staff/two-factor/setup", data=data)


def recovery_codes(page: str) -> list[str]:
    return re.findall(r"<code>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})</code>", page)


def entries(app: Flask, action: str | None = None) -> list[tuple[str, str, dict]]:
    with app.app_context():
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        rows = [(e.action, e.target, json.loads(e.details)) for e in db.session.scalars(query)]
        db.session.remove()
        return rows


def stored_secret(app: Flask, email: str) -> str:
    """The account's TOTP secret as the app reads it (decrypted)."""
    with app.app_context():
        stored = db.session.scalar(select(Staff.totp_secret).where(Staff.email == email))
        return sealing.unseal(stored)


def staff_of(app: Flask, email: str) -> Staff:
    with app.app_context():
        staff = services.staff_by_email(email)
        db.session.expunge(staff)
        db.session.remove()
        return staff


def signed_in(client: FlaskClient) -> bool:
    return client.get("/staff/").status_code == 200


def enrol_editor(client: FlaskClient, app: Flask) -> tuple[str, list[str]]:
    """An editor without two factors logs in and sets them up; (secret, recovery codes)."""
    make_staff(app, EDITOR, "editor")
    assert password_step(client, EDITOR).status_code == 303
    page = client.get("/staff/two-factor/setup").get_data(as_text=True)
    secret = setup_secret(page)
    response = post_setup(client, totp_code(secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    codes = recovery_codes(response.get_data(as_text=True))
    return secret, codes


# --------------------------------------------------------------------------- set-up


def test_setup_page_draws_the_qr_code_itself_in_danish(client, app):
    make_staff(app, EDITOR, "editor")
    password_step(client, EDITOR)
    page = client.get("/staff/two-factor/setup").get_data(as_text=True)
    assert "Opsæt totrinslogin" in page
    assert "<svg" in page and 'class="totp-qr"' in page
    # No outside service: no image or script from elsewhere carries the secret.
    assert "otpauth://" not in page and "http://" not in page.split("<svg", 1)[1].split("</svg")[0]
    # The same secret on a reload (it is only kept when a code confirms it).
    assert setup_secret(page) == setup_secret(
        client.get("/staff/two-factor/setup").get_data(as_text=True)
    )
    assert not staff_of(app, EDITOR).has_totp


def test_enrolment_needs_a_code_from_the_new_secret_then_shows_ten_codes_once(client, app):
    make_staff(app, EDITOR, "editor")
    password_step(client, EDITOR)
    secret = setup_secret(client.get("/staff/two-factor/setup").get_data(as_text=True))
    wrong = post_setup(client, pyotp.TOTP(pyotp.random_base32()).at(0))
    assert wrong.status_code == 422 and not staff_of(app, EDITOR).has_totp
    response = post_setup(client, totp_code(secret))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    codes = recovery_codes(page)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert "Dine gendannelseskoder" in page
    staff = staff_of(app, EDITOR)
    assert staff.has_totp and stored_secret(app, EDITOR) == secret
    with app.app_context():
        stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
        assert len(stored) == 10
        assert not any(c.replace("-", "") in h for c in codes for h in stored)
    assert [a for a, _, _ in entries(app) if a.startswith("staff.")][-2:] == [
        "staff.second_factor_failed",
        "staff.totp_enrolled",
    ]
    # Shown once: the overview only counts them.
    overview = client.get("/staff/two-factor").get_data(as_text=True)
    assert "10 ubrugte gendannelseskoder" in overview
    assert not any(code in overview for code in codes)


def test_sign_in_with_totp_after_the_password(client, app, clock):
    secret, _ = enrol_editor(client, app)
    client.post("/staff/logout", data={"csrf_token": csrf_token(client.get("/staff/").data)})
    response = password_step(client, EDITOR)
    assert response.headers["Location"] == "/staff/login/code"
    # Half-way is no login.
    assert not signed_in(client)
    clock.advance(seconds=60)
    response = post_code(client, totp_code(secret))
    assert response.status_code == 303 and response.headers["Location"] == "/staff/"
    assert signed_in(client)
    [*_, (_, target, details)] = entries(app, "staff.login")
    assert target == f"staff:{staff_of(app, EDITOR).id}"
    assert details["second_factor"] == "totp" and details["login_method"] == "password"


def test_a_code_is_accepted_once_and_one_step_either_side(client, app, clock):
    secret, _ = enrol_editor(client, app)
    other = app.test_client()
    clock.advance(seconds=90)
    password_step(other, EDITOR)
    code = totp_code(secret, steps=-1)  # the app's clock is 30 s behind: still fine
    assert post_code(other, code).status_code == 303
    third = app.test_client()
    password_step(third, EDITOR)
    assert post_code(third, code).status_code == 422  # the same code again
    assert post_code(third, totp_code(secret, steps=-2)).status_code == 422  # too old
    assert post_code(third, totp_code(secret, steps=2)).status_code == 422  # too far ahead
    assert post_code(third, totp_code(secret)).status_code == 303


def test_a_recovery_code_logs_in_once(client, app):
    _, codes = enrol_editor(client, app)
    other = app.test_client()
    password_step(other, EDITOR)
    # Typed carelessly: upper case, spaces for dashes.
    response = post_code(other, " " + codes[3].upper().replace("-", " ") + " ")
    assert response.status_code == 303
    assert "9 gendannelseskode(r) tilbage" in other.get("/staff/").get_data(as_text=True)
    assert entries(app, "staff.login")[-1][2]["second_factor"] == "recovery"
    third = app.test_client()
    password_step(third, EDITOR)
    assert post_code(third, codes[3]).status_code == 422


def test_wrong_codes_are_audited_and_slowed_like_passwords(make_app, clock):
    app = make_app(LOGIN_FAILURES_BEFORE_DELAY=3)
    make_staff(app, EDITOR, "editor", totp=True)
    client = app.test_client()
    password_step(client, EDITOR)
    for _ in range(3):
        assert post_code(client, "000000").status_code == 422
    held = post_code(client, totp_code())
    assert held.status_code == 429 and held.headers["Retry-After"] == "1"
    assert "for mange forkerte koder" in held.get_data(as_text=True)
    actions = [a for a, _, _ in entries(app) if a.startswith("staff.second")]
    assert actions == ["staff.second_factor_failed"] * 3 + ["staff.second_factor_throttled"]
    clock.advance(seconds=2)
    assert post_code(client, totp_code()).status_code == 303


@pytest.mark.parametrize(
    "code",
    ["123456\r\nX-Evil: 1", "12\x0034", "1" * 100_000, "١٢٣٤٥٦", "' OR 1=1 --", "", "  "],
    ids=["crlf", "nul", "huge", "arabic-digits", "sql", "empty", "blank"],
)
def test_hostile_codes_are_refused_cleanly(client, app, code):
    make_staff(app, EDITOR, "editor", totp=True)
    password_step(client, EDITOR)
    response = post_code(client, code)
    assert response.status_code in (400, 413, 422)
    assert not signed_in(client)


def test_the_half_way_state_is_bound_to_its_account_browser_and_time(client, app, clock):
    make_staff(app, EDITOR, "editor", totp=True)
    make_staff(app, ADMIN, "admin")
    password_step(client, EDITOR, **{"User-Agent": "Browser A"})
    # Another browser with the same cookie (copied) is sent back to the password.
    response = client.get("/staff/login/code", headers={"User-Agent": "Browser B"})
    assert response.status_code == 303 and response.headers["Location"] == "/staff/login"
    # A code of another account does not open this one.
    password_step(client, EDITOR)
    admins = pyotp.random_base32(32)
    with app.app_context():
        db.session.execute(
            text("UPDATE staff SET totp_secret = :s WHERE email = :e"),
            {"s": sealing.seal(admins), "e": ADMIN},
        )
        db.session.commit()
    assert post_code(client, totp_code(admins)).status_code == 422
    assert not signed_in(client)
    # Time runs out.
    password_step(client, EDITOR)
    clock.advance(minutes=11)
    response = client.get("/staff/login/code")
    assert response.status_code == 303 and response.headers["Location"] == "/staff/login"
    # A forged state (another account's id) breaks the signature: no state at all.
    password_step(client, EDITOR)
    cookie = client.get_cookie("nl_session")
    client.set_cookie("nl_session", cookie.value.replace("i", "j", 1))
    assert client.get("/staff/login/code").status_code == 303


def test_a_changed_session_version_voids_the_half_way_state(client, app):
    make_staff(app, EDITOR, "editor", totp=True)
    password_step(client, EDITOR)
    with app.app_context():
        services.set_password(services.staff_by_email(EDITOR).id, "et-helt-nyt-kodeord-123")
    response = client.get("/staff/login/code")
    assert response.status_code == 303 and response.headers["Location"] == "/staff/login"
    assert not signed_in(client)


# --------------------------------------------------------------------------- required


def test_an_administrator_without_two_factors_must_set_them_up_first(client, app):
    make_staff(app, ADMIN, "admin", totp=False)
    response = password_step(client, ADMIN)
    assert response.headers["Location"] == "/staff/two-factor/setup"
    for path in ("/staff/", "/staff/users", "/staff/login/code"):
        assert client.get(path).status_code in (302, 303), path
    assert not signed_in(client)
    secret = setup_secret(client.get("/staff/two-factor/setup").get_data(as_text=True))
    response = post_setup(client, totp_code(secret))
    assert response.status_code == 200 and len(recovery_codes(response.get_data(as_text=True)))
    assert client.get("/staff/users").status_code == 200
    assert entries(app, "staff.login")[-1][2]["second_factor"] == "totp"


def test_a_session_without_required_two_factors_can_do_nothing_else(make_app):
    app = make_app(TWOFA_REQUIRED_FOR_EDITORS=False)
    make_staff(app, EDITOR, "editor")
    client = app.test_client()
    assert password_step(client, EDITOR).headers["Location"] == "/staff/"
    app.config["TWOFA_REQUIRED_FOR_EDITORS"] = True
    response = client.get("/staff/newsletters/momentum")
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/two-factor/setup"
    assert client.get("/staff/two-factor/setup").status_code == 200
    # A new login goes to the set-up, not in.
    other = app.test_client()
    assert password_step(other, EDITOR).headers["Location"] == "/staff/two-factor/setup"


def test_administrators_cannot_turn_two_factors_off(client, app):
    make_staff(app, ADMIN, "admin")
    from tests.test_staff import login

    assert login(client, ADMIN).status_code == 303
    token = csrf_token(client.get("/staff/two-factor").data)
    client.post("/staff/two-factor/off", data={"csrf_token": token, "off-current_code": "1"})
    assert staff_of(app, ADMIN).has_totp


# --------------------------------------------------------------------------- changes


def test_turning_off_needs_the_current_code_and_ends_the_other_sessions(client, app, clock):
    secret, _ = enrol_editor(client, app)
    other = app.test_client()
    clock.advance(seconds=30)
    password_step(other, EDITOR)
    assert post_code(other, totp_code(secret)).status_code == 303
    clock.advance(seconds=30)
    token = csrf_token(client.get("/staff/two-factor").data)
    wrong = client.post(
        "/staff/two-factor/off", data={"csrf_token": token, "off-current_code": "1"}
    )
    assert wrong.status_code == 422 and staff_of(app, EDITOR).has_totp
    response = client.post(
        "/staff/two-factor/off", data={"csrf_token": token, "off-current_code": totp_code(secret)}
    )
    assert response.status_code == 303
    assert not staff_of(app, EDITOR).has_totp
    assert signed_in(client) and not signed_in(other)
    assert entries(app, "staff.totp_removed")[-1][2]["sessions_ended"] == 1


def test_setting_up_again_needs_a_current_code(client, app, clock):
    secret, codes = enrol_editor(client, app)
    clock.advance(seconds=30)
    new = setup_secret(client.get("/staff/two-factor/setup").get_data(as_text=True))
    assert new != secret
    assert post_setup(client, totp_code(new)).status_code == 422
    assert post_setup(client, totp_code(new), current_code="000000").status_code == 422
    response = post_setup(client, totp_code(new), current_code=codes[0])
    assert response.status_code == 200
    assert stored_secret(app, EDITOR) == new
    assert entries(app, "staff.totp_enrolled")[-1][2]["renewed"] is True


def test_new_recovery_codes_replace_the_old(client, app, clock):
    secret, codes = enrol_editor(client, app)
    clock.advance(seconds=30)
    token = csrf_token(client.get("/staff/two-factor").data)
    response = client.post(
        "/staff/two-factor/recovery-codes",
        data={"csrf_token": token, "renew-current_code": totp_code(secret)},
    )
    fresh = recovery_codes(response.get_data(as_text=True))
    assert response.status_code == 200 and len(fresh) == 10 and not set(fresh) & set(codes)
    other = app.test_client()
    password_step(other, EDITOR)
    assert post_code(other, codes[1]).status_code == 422
    assert post_code(other, fresh[1]).status_code == 303


def test_changes_need_a_csrf_token(client, app):
    enrol_editor(client, app)
    assert client.post("/staff/two-factor/off", data={"off-current_code": "1"}).status_code == 400
    assert client.post("/staff/login/code", data={"code": "1"}).status_code == 400


# --------------------------------------------------------------------------- reset-2fa


def test_reset_2fa_clears_the_set_up_and_ends_the_sessions(client, app, runner):
    make_staff(app, ADMIN, "admin")
    from tests.test_staff import login

    assert login(client, ADMIN).status_code == 303
    half = app.test_client()
    password_step(half, ADMIN)
    result = runner.invoke(args=["staff", "reset-2fa", " Admin@KL.dk "])
    assert result.exit_code == 0, result.output
    assert "1 open session(s) ended" in result.output
    staff = staff_of(app, ADMIN)
    assert not staff.has_totp and staff.totp_last_counter is None
    with app.app_context():
        assert db.session.scalar(select(RecoveryCode.id)) is None
        assert (
            db.session.scalar(select(StaffSession.id).where(StaffSession.ended_at.is_(None)))
            is None
        )
    assert not signed_in(client)
    # The half-way login from before the reset is void.
    assert half.get("/staff/login/code").headers["Location"] == "/staff/login"
    [(_, target, details)] = entries(app, "staff.second_factor_reset")
    assert target == f"staff:{staff.id}" and details["sessions_ended"] == 1
    # At the next login the administrator sets it up again.
    assert password_step(client, ADMIN).headers["Location"] == "/staff/two-factor/setup"


@pytest.mark.parametrize("email", ["nobody@kl.dk", "not an address", "a\r\nb@kl.dk", "x" * 5000])
def test_reset_2fa_of_an_unknown_account_fails_clearly(runner, app, email):
    result = runner.invoke(args=["staff", "reset-2fa", email])
    assert result.exit_code == 1
    assert "staff reset-2fa:" in result.output and "nothing was changed" in result.output
    assert entries(app, "staff.second_factor_reset") == []


# --------------------------------------------------------------------------- encrypted at rest


def raw_secret(app: Flask, email: str) -> str | None:
    with app.app_context():
        value = db.session.scalar(select(Staff.totp_secret).where(Staff.email == email))
        db.session.remove()
        return value


def store_raw(app: Flask, email: str, value: str | None) -> None:
    with app.app_context():
        db.session.execute(
            text("UPDATE staff SET totp_secret = :s WHERE email = :e"), {"s": value, "e": email}
        )
        db.session.commit()
        db.session.remove()


def test_the_secret_is_stored_encrypted_never_in_the_clear(client, app):
    secret, _ = enrol_editor(client, app)
    stored = raw_secret(app, EDITOR)
    assert secret not in stored and stored.startswith("gAAAAA") and len(stored) <= 255
    assert stored_secret(app, EDITOR) == secret
    # Under another SECRET_KEY (and no TWOFA_ENCRYPTION_KEY) it cannot be read.
    with app.app_context():
        app.config["SECRET_KEY"] = "another-secret-key-of-enough-length"
        with pytest.raises(sealing.SecretUnreadable):
            sealing.unseal(stored)


def test_an_explicit_encryption_key_survives_a_new_secret_key(app):
    with app.app_context():
        app.config["TWOFA_ENCRYPTION_KEY"] = "a separate key for the second factors"
        stored = sealing.seal(TEST_TOTP_SECRET)
        app.config["SECRET_KEY"] = "a rotated secret key, long enough"
        assert sealing.unseal(stored) == TEST_TOTP_SECRET
        app.config["TWOFA_ENCRYPTION_KEY"] = "another key"
        with pytest.raises(sealing.SecretUnreadable):
            sealing.unseal(stored)


def unreadable_under_another_key(app: Flask) -> str:
    with app.app_context():
        key = app.config["SECRET_KEY"]
        app.config["SECRET_KEY"] = "the key of some other installation"
        try:
            return sealing.seal(TEST_TOTP_SECRET)
        finally:
            app.config["SECRET_KEY"] = key


@pytest.mark.parametrize(
    "stored",
    [
        "under another key",
        TEST_TOTP_SECRET,  # left in the clear (the migration was not run)
        "gAAAAA" + "x" * 200,
        "ikke\x01base64\r\n",
        "æøå" * 20,
        "",
    ],
)
def test_an_unreadable_secret_refuses_app_codes_clearly_and_recovery_codes_still_work(
    client, app, clock, stored
):
    secret, codes = enrol_editor(client, app)
    if stored == "under another key":
        stored = unreadable_under_another_key(app)
    store_raw(app, EDITOR, stored)
    other = app.test_client()
    password_step(other, EDITOR)
    clock.advance(seconds=30)
    response = post_code(other, totp_code(secret))
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "kan ikke længere læse din opsætning af totrinslogin" in page
    assert "Traceback" not in page and not signed_in(other)
    assert (
        entries(app, "staff.second_factor_unreadable")[-1][1] == f"staff:{staff_of(app, EDITOR).id}"
    )
    # Nothing is changed by it: the stored value stays for an administrator to reset.
    assert raw_secret(app, EDITOR) == stored
    assert post_code(other, codes[0]).status_code == 303
    assert signed_in(other)


def test_changes_confirmed_with_an_app_code_say_when_the_secret_cannot_be_read(client, app, clock):
    secret, codes = enrol_editor(client, app)
    store_raw(app, EDITOR, unreadable_under_another_key(app))
    clock.advance(seconds=30)
    token = csrf_token(client.get("/staff/two-factor").data)
    for path, field in (("recovery-codes", "renew-current_code"), ("off", "off-current_code")):
        response = client.post(
            f"/staff/two-factor/{path}", data={"csrf_token": token, field: totp_code(secret)}
        )
        assert response.status_code == 409, path
        assert "kan ikke længere læse" in response.get_data(as_text=True)
    new = setup_secret(client.get("/staff/two-factor/setup").get_data(as_text=True))
    response = post_setup(client, totp_code(new), current_code=totp_code(secret))
    assert response.status_code == 409
    # A recovery code still confirms a new set-up, which is then readable again.
    response = post_setup(client, totp_code(new), current_code=codes[0])
    assert response.status_code == 200
    assert stored_secret(app, EDITOR) == new


def test_migration_0026_encrypts_the_secrets_in_place_and_back(app, clock):
    make_staff(app, EDITOR, "editor", totp=True)
    editor_id = staff_of(app, EDITOR).id
    with app.app_context():
        db.session.remove()
        downgrade(revision="0025")
        try:
            assert raw_secret(app, EDITOR) == TEST_TOTP_SECRET
            # A secret stored before 0026, in the clear.
            db.session.execute(
                text(
                    "INSERT INTO staff (email, name, role, password_hash, is_active, "
                    "session_version, role_from_provider, created_at, totp_secret, "
                    "totp_enabled_at) SELECT 'gammel@kl.dk', '', role, password_hash, "
                    "is_active, 1, role_from_provider, created_at, :s, totp_enabled_at "
                    "FROM staff WHERE id = :id"
                ),
                {"s": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "id": editor_id},
            )
            db.session.commit()
            db.session.remove()
        finally:
            upgrade()
        db.session.remove()
    assert TEST_TOTP_SECRET not in raw_secret(app, EDITOR)
    assert stored_secret(app, EDITOR) == TEST_TOTP_SECRET
    assert stored_secret(app, "gammel@kl.dk") == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    client = app.test_client()
    password_step(client, EDITOR)
    assert post_code(client, totp_code()).status_code == 303
    with app.app_context():
        downgrade(revision="0025")
        try:
            assert raw_secret(app, EDITOR) == TEST_TOTP_SECRET
        finally:
            db.session.remove()
            upgrade()
        db.session.remove()
    # Ids are still never handed out again (SQLite re-created the table).
    gammel = staff_of(app, "gammel@kl.dk").id
    assert make_staff(app, "ny@kl.dk", "editor") == gammel + 1


def test_migration_0026_down_stops_unchanged_on_a_secret_it_cannot_read(app, capfd):
    make_staff(app, EDITOR, "editor", totp=True)
    store_raw(app, EDITOR, unreadable_under_another_key(app))
    stored = raw_secret(app, EDITOR)
    with app.app_context():
        db.session.remove()
        try:
            # Flask-Migrate logs the migration's message and exits non-zero.
            with pytest.raises(SystemExit):
                downgrade(revision="0025")
        finally:
            db.session.remove()
            upgrade()
        db.session.remove()
    assert raw_secret(app, EDITOR) == stored
    assert "cannot be decrypted with this configuration's key" in capfd.readouterr().err


# --------------------------------------------------------------------------- migration


def test_migration_0012_goes_down_and_up_keeping_the_accounts(app):
    make_staff(app, EDITOR, "editor")
    with app.app_context():
        db.session.remove()
        downgrade(revision="0010")
        try:
            columns = [c["name"] for c in db.inspect(db.engine).get_columns("staff")]
            assert "totp_secret" not in columns
            assert "staff_newsletters" not in db.inspect(db.engine).get_table_names()
        finally:
            db.session.remove()
            upgrade()
        staff = db.session.scalar(select(Staff).where(Staff.email == EDITOR))
        assert staff is not None and not staff.has_totp
        db.session.remove()
    # Ids are still never handed out again.
    assert make_staff(app, "ny@kl.dk", "editor") == staff.id + 1


def test_the_test_secret_is_a_real_one():
    assert len(TEST_TOTP_SECRET) == 32


def test_a_login_through_single_sign_on_is_not_asked_for_the_local_second_factor(make_app):
    """The identity provider's own factors count: only password logins need TOTP."""
    app = make_app()
    admin_id = make_staff(app, ADMIN, "admin", totp=False)

    def sso_login():
        from newsletters.staff import access

        access.start_session(services.staff_by_id(admin_id), login_method="oidc")
        return "ok"

    app.add_url_rule("/test-sso-login", "test_sso_login", sso_login)
    client = app.test_client()
    assert client.get("/test-sso-login").status_code == 200
    assert client.get("/staff/users").status_code == 200
    [(_, _, details)] = entries(app, "staff.login")
    assert details == {"login_method": "oidc"}
