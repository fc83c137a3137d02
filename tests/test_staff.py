"""Staff accounts: the CLI, login, sessions that end, roles, and the admin pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from newsletters import timeutil
from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.staff import access, services
from newsletters.staff.models import Staff, StaffRole
from newsletters.staff.twofactor import sealing
from newsletters.subscriptions.models import Subscriber, Subscription, SubscriptionStatus
from tests.support.appclock import AppClock, controlled_clock
from tests.support.pages import csrf_token

PASSWORD = "rigtig-hest-batteri-hæfteklamme"
EDITOR = "redaktoer@kl.dk"
ADMIN = "admin@kl.dk"
# The authenticator app of the test administrators (make_staff sets it up for them).
TEST_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


# --------------------------------------------------------------------------- helpers


def make_staff(
    app: Flask,
    email: str = EDITOR,
    role: str = "editor",
    password: str = PASSWORD,
    *,
    totp: bool | None = None,
) -> int:
    """A staff account; administrators (or `totp=True`) have two factors set up with
    TEST_TOTP_SECRET, as their role requires."""
    with app.app_context():
        staff = services.create_staff(email, role=role, password=password)
        if totp or (totp is None and role == "admin"):
            staff.totp_secret = sealing.seal(TEST_TOTP_SECRET)
            staff.totp_enabled_at = timeutil.utcnow()
            db.session.commit()
        staff_id = staff.id
        db.session.remove()
        return staff_id


def totp_code(secret: str = TEST_TOTP_SECRET, steps: int = 0) -> str:
    """The code an authenticator app shows now by the app's clock (`steps` later)."""
    now = timeutil.utcnow().timestamp()
    return pyotp.TOTP(secret).at(now + 30 * steps)


def staff_row(app: Flask, email: str) -> Staff | None:
    with app.app_context():
        staff = db.session.scalar(db.select(Staff).where(Staff.email == email))
        if staff is not None:
            db.session.expunge(staff)
        db.session.remove()
        return staff


def login(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str):
    """Post the login form as a browser would, with the CSRF token of the login page."""
    page = client.get("/staff/login")
    data = {"csrf_token": csrf_token(page.data), "email": email, "password": password}
    data.update(extra)
    response = client.post("/staff/login", data=data)
    if response.status_code == 303 and response.headers["Location"] == "/staff/login/code":
        # The second step, as the person with the app would: a code not used before.
        with client.application.app_context():
            staff = services.staff_by_email(email)
            staff.totp_last_counter = None
            db.session.commit()
            db.session.remove()
        token = csrf_token(client.get("/staff/login/code").data)
        response = client.post("/staff/login/code", data={"csrf_token": token, "code": totp_code()})
    return response


def post_with_token(
    client: FlaskClient, path: str, data: dict | None = None, page: str = "/staff/"
):
    """POST as the button on a staff page does: with the CSRF token of that page."""
    token = csrf_token(client.get(page).data)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def normalised(html: str, *addresses: str) -> str:
    """The page without what legitimately differs between two answers."""
    html = re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "csrf", html)
    for address in addresses:
        html = html.replace(address, "ADDRESS")
    return html


def login_redirect_target(response) -> str | None:
    """The `next` of a redirect to the login page (AssertionError if it is not one)."""
    assert response.status_code == 302, response.status_code
    location = urlsplit(response.headers["Location"])
    assert location.path == "/staff/login", location
    return parse_qs(location.query).get("next", [None])[0]


def set_session(client: FlaskClient, **values) -> None:
    with client.session_transaction() as session:
        session.update(values)


@pytest.fixture
def clock() -> Iterator[AppClock]:
    yield from controlled_clock()


@pytest.fixture
def editor(app: Flask) -> int:
    return make_staff(app, EDITOR, "editor")


@pytest.fixture
def admin(app: Flask) -> int:
    return make_staff(app, ADMIN, "admin")


@pytest.fixture
def editor_client(client: FlaskClient, editor: int) -> FlaskClient:
    assert login(client, EDITOR).status_code == 303
    return client


@pytest.fixture
def admin_client(client: FlaskClient, admin: int) -> FlaskClient:
    assert login(client, ADMIN).status_code == 303
    return client


# --------------------------------------------------------------------------- the CLI


def test_cli_creates_an_account_with_the_password_from_stdin(runner, app):
    result = runner.invoke(
        args=["staff", "create", " Redaktoer@KL.dk ", "--role", "editor", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "created editor redaktoer@kl.dk" in result.output
    staff = staff_row(app, "redaktoer@kl.dk")
    assert staff.role is StaffRole.EDITOR and staff.is_active
    # Hashed with scrypt (werkzeug's default), never stored as given.
    assert staff.password_hash.startswith("scrypt:")
    assert PASSWORD not in staff.password_hash
    assert login(app.test_client(), "redaktoer@kl.dk").status_code == 303


def test_cli_prompts_for_the_password_twice_without_showing_it(runner, app):
    result = runner.invoke(
        args=["staff", "create", ADMIN, "--role", "admin", "--name", "Anne Admin"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "created admin admin@kl.dk" in result.output
    staff = staff_row(app, ADMIN)
    assert (staff.role, staff.name) == (StaffRole.ADMIN, "Anne Admin")


@pytest.mark.parametrize(
    ("email", "role", "password", "message"),
    [
        ("not-an-address", "editor", PASSWORD, "not a valid email address"),
        (EDITOR, "chief", PASSWORD, "Invalid value for '--role'"),
        (EDITOR, "editor", "short-pw", "shorter than 12 characters"),
        (EDITOR, "editor", "", "the password is empty"),
        (EDITOR, "editor", "            ", "the password is empty"),
    ],
)
def test_cli_refuses_bad_input_with_a_clear_message(runner, app, email, role, password, message):
    result = runner.invoke(
        args=["staff", "create", email, "--role", role, "--password-stdin"],
        input=password + "\n",
    )
    assert result.exit_code != 0
    assert message in result.output
    with app.app_context():
        assert services.list_staff() == []


def test_cli_refuses_an_existing_account_before_asking_for_a_password(runner, app, editor):
    result = runner.invoke(args=["staff", "create", "REDAKTOER@kl.dk", "--role", "admin"])
    assert result.exit_code == 1
    assert "a staff account for redaktoer@kl.dk exists already" in result.output
    assert "Password" not in result.output
    assert staff_row(app, EDITOR).role is StaffRole.EDITOR


def test_cli_refuses_passwords_that_differ(runner, app):
    result = runner.invoke(
        args=["staff", "create", EDITOR, "--role", "editor"],
        input=f"{PASSWORD}\nsomething-else-entirely\n",
    )
    assert result.exit_code != 0
    assert staff_row(app, EDITOR) is None


def test_cli_requires_a_role(runner, app):
    result = runner.invoke(args=["staff", "create", EDITOR, "--password-stdin"], input=PASSWORD)
    assert result.exit_code != 0
    assert "--role" in result.output


# --------------------------------------------------------------------------- login


def test_login_opens_the_dashboard_and_records_the_time(client, app, editor):
    response = login(client, " Redaktoer@KL.dk ")
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/"
    html = client.get("/staff/").get_data(as_text=True)
    assert EDITOR in html
    assert staff_row(app, EDITOR).last_login_at is not None


def test_login_marks_the_session_permanent(client, editor):
    login(client, EDITOR)
    with client.session_transaction() as session:
        assert session.permanent
    assert client.get_cookie("nl_session").expires is not None


def test_failed_logins_answer_the_same_for_an_unknown_address_and_a_wrong_password(
    client, app, editor
):
    unknown = login(client, "nobody@kl.dk", PASSWORD)
    wrong = login(client, EDITOR, "wrong-password-but-long")
    assert unknown.status_code == wrong.status_code == 422
    unknown_html = unknown.get_data(as_text=True)
    assert "Forkert e-mailadresse eller adgangskode" in unknown_html
    assert normalised(unknown_html, "nobody@kl.dk") == normalised(
        wrong.get_data(as_text=True), EDITOR
    )
    # The password is never sent back.
    assert PASSWORD not in unknown_html
    assert client.get("/staff/").status_code == 302


def test_unknown_address_costs_a_password_check_too(app, editor, monkeypatch):
    checked = []
    real = services.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(services, "check_password_hash", counting)
    with app.app_context():
        assert services.authenticate("nobody@kl.dk", PASSWORD) is None
        assert services.authenticate("not an address", PASSWORD) is None
        assert services.authenticate(EDITOR, "wrong-password-but-long") is None
    assert len(checked) == 3
    assert all(h.startswith("scrypt:") for h in checked)


def test_deactivated_account_cannot_log_in_and_is_told_nothing_more(client, app, editor):
    with app.app_context():
        services.deactivate(editor)
    response = login(client, EDITOR)
    assert response.status_code == 422
    assert "Forkert e-mailadresse eller adgangskode" in response.get_data(as_text=True)


def test_login_post_without_csrf_token_is_refused_with_400(client, editor):
    response = client.post("/staff/login", data={"email": EDITOR, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/staff/").status_code == 302


def test_empty_login_form_says_what_is_missing(client):
    token = csrf_token(client.get("/staff/login").data)
    response = client.post("/staff/login", data={"csrf_token": token})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Indtast din e-mailadresse." in html
    assert "Indtast din adgangskode." in html


def test_login_posts_are_rate_limited_per_ip(make_app):
    app = make_app(RATELIMIT_LOGIN="3 per minute")
    make_staff(app)
    client = app.test_client()
    for _ in range(3):
        assert login(client, EDITOR, "wrong-password-but-long").status_code == 422
    response = login(client, EDITOR)
    assert response.status_code == 429
    assert "For mange forespørgsler" in response.get_data(as_text=True)
    # Another address is not held up.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.99"
    assert login(other, EDITOR).status_code == 303


def test_successful_logins_do_not_use_up_the_account_limit(make_app):
    app = make_app(RATELIMIT_LOGIN="100 per minute", RATELIMIT_LOGIN_EMAIL="2 per hour")
    make_staff(app)
    for _ in range(3):
        assert login(app.test_client(), EDITOR).status_code == 303


def test_login_page_sends_a_logged_in_person_on(editor_client):
    response = editor_client.get("/staff/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/"


# --------------------------------------------------------------------------- next


def test_login_returns_to_the_page_asked_for(client, admin):
    response = client.get("/staff/users?sort=email")
    assert login_redirect_target(response) == "/staff/users?sort=email"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'value="/staff/users?sort=email"' in page
    response = login(client, ADMIN, next="/staff/users?sort=email")
    assert response.headers["Location"] == "/staff/users?sort=email"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "https://evil.example/staff/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "staff/users",
        "/staff/\r\nLocation: https://evil.example",
    ],
)
def test_next_pointing_anywhere_but_this_site_is_ignored(client, editor, target):
    page = client.get(f"/staff/login?next={quote(target)}").get_data(as_text=True)
    assert "evil.example" not in page
    response = login(client, EDITOR, next=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/"


# --------------------------------------------------------------------------- access


STAFF_PAGES = [
    "/staff/",
    "/staff/users",
    "/staff/users/new",
    "/staff/newsletters/momentum/settings",
]
ADMIN_PAGES = ["/staff/users", "/staff/users/new", "/staff/newsletters/momentum/settings"]


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_anonymous_visitor_is_sent_to_the_login(client, path):
    assert login_redirect_target(client.get(path)) == path


def test_anonymous_posts_change_nothing(client, app, editor):
    token = csrf_token(client.get("/staff/login").data)
    response = client.post(f"/staff/users/{editor}/deactivate", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/login"
    assert staff_row(app, EDITOR).is_active


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_editor_cannot_open_admin_pages(editor_client, path):
    response = editor_client.get(path)
    assert response.status_code == 403
    assert "Du har ikke adgang til denne side" in response.get_data(as_text=True)


def test_editor_cannot_use_admin_actions(editor_client, app, admin):
    for path, data in [
        (f"/staff/users/{admin}/deactivate", {}),
        (f"/staff/users/{admin}/activate", {}),
        ("/staff/users/new", {"email": "x@kl.dk", "role": "admin", "password": PASSWORD}),
        ("/staff/newsletters/momentum/settings", {"name": "Hacked"}),
    ]:
        assert post_with_token(editor_client, path, data).status_code == 403, path
    assert staff_row(app, ADMIN).is_active
    assert staff_row(app, "x@kl.dk") is None
    with app.app_context():
        assert "Hacked" not in db.session.scalars(db.select(Newsletter.name)).all()


def test_editor_sees_no_admin_links(editor_client):
    html = editor_client.get("/staff/").get_data(as_text=True)
    assert "/staff/users" not in html
    assert "/settings" not in html


def test_logout_is_post_only_with_a_csrf_token(editor_client):
    assert editor_client.get("/staff/logout").status_code == 405
    assert editor_client.post("/staff/logout").status_code == 400
    assert editor_client.get("/staff/").status_code == 200
    response = post_with_token(editor_client, "/staff/logout")
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/login"
    assert "Du er logget ud." in editor_client.get("/staff/login").get_data(as_text=True)
    assert editor_client.get("/staff/").status_code == 302


# --------------------------------------------------------------------------- sessions end


def test_deactivation_ends_the_existing_session(editor_client, app, editor):
    assert editor_client.get("/staff/").status_code == 200
    with app.app_context():
        services.deactivate(editor)
    assert login_redirect_target(editor_client.get("/staff/")) == "/staff/"
    # Activating the account again does not bring the old session back.
    with app.app_context():
        services.activate(editor)
    assert editor_client.get("/staff/").status_code == 302


def test_a_new_password_ends_the_existing_sessions(editor_client, app, editor):
    with app.app_context():
        services.set_password(editor, "a-brand-new-password-2026")
    assert editor_client.get("/staff/").status_code == 302
    assert login(app.test_client(), EDITOR).status_code == 422
    assert login(app.test_client(), EDITOR, "a-brand-new-password-2026").status_code == 303


def test_session_ends_after_the_idle_time(make_app, clock):
    app = make_app(STAFF_IDLE_MINUTES=30)
    make_staff(app)
    client = app.test_client()
    login(client, EDITOR)
    clock.advance(minutes=29)
    assert client.get("/staff/").status_code == 200
    # That request counted as activity.
    clock.advance(minutes=29)
    assert client.get("/staff/").status_code == 200
    clock.advance(minutes=31)
    assert login_redirect_target(client.get("/staff/")) == "/staff/"
    assert "Din session er udløbet" in client.get("/staff/login").get_data(as_text=True)
    assert client.get("/staff/").status_code == 302


def test_session_ends_after_its_lifetime_however_active(client, app, editor, clock):
    login(client, EDITOR)
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    for _ in range(lifetime // 1800 - 1):
        clock.advance(minutes=30)
        assert client.get("/staff/").status_code == 200
    clock.advance(seconds=lifetime % 1800 + 1800 + 1)
    assert client.get("/staff/").status_code == 302


def test_session_taken_to_another_browser_ends(editor_client):
    editor_client.environ_base["HTTP_USER_AGENT"] = "Another browser"
    assert editor_client.get("/staff/").status_code == 302
    # Ended on the server: back in the first browser it does not open either.
    editor_client.environ_base.pop("HTTP_USER_AGENT")
    assert editor_client.get("/staff/").status_code == 302


def test_session_without_a_server_side_session_is_not_trusted(editor_client):
    with editor_client.session_transaction() as session:
        del session[access.SESSION_KEY]
    assert editor_client.get("/staff/").status_code == 302


def test_staff_pages_are_neither_indexed_nor_cached(editor_client, client):
    for response in (editor_client.get("/staff/"), client.get("/staff/login")):
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
        assert response.headers["Cache-Control"] == "no-store"
    assert "X-Robots-Tag" not in client.get("/").headers


# --------------------------------------------------------------------------- dashboard


def test_dashboard_lists_every_newsletter_with_its_confirmed_subscribers(editor_client, app):
    with app.app_context():
        newsletters = {n.slug: n for n in db.session.scalars(db.select(Newsletter))}
        newsletters["momentum"].is_public = False
        for n, status in enumerate(
            [SubscriptionStatus.CONFIRMED] * 3
            + [SubscriptionStatus.PENDING, SubscriptionStatus.UNSUBSCRIBED]
        ):
            subscriber = Subscriber(email=f"reader{n}@kommune.dk")
            subscriber.subscriptions.append(
                Subscription(newsletter=newsletters["momentum"], status=status)
            )
            db.session.add(subscriber)
        db.session.commit()
    html = editor_client.get("/staff/").get_data(as_text=True)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]
    cells = {
        re.search(r'href="/staff/newsletters/([^"]+)"', row).group(1): re.findall(
            r"<td[^>]*>(.*?)</td>", row, re.S
        )
        for row in rows
    }
    assert list(cells) == ["bestyrelse", "kl-nyheder", "momentum", "danske-kommuner"]
    assert cells["momentum"][0].strip() == "3"
    assert cells["bestyrelse"][0].strip() == "0"
    assert "Nej" in cells["momentum"][1] and "Ja" in cells["bestyrelse"][1]


def test_admin_dashboard_links_to_staff_and_settings(admin_client):
    html = admin_client.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/users"' in html
    assert 'href="/staff/newsletters/momentum/settings"' in html


# --------------------------------------------------------------------------- admin pages


def test_admin_creates_a_staff_account_that_can_log_in(admin_client, app):
    response = post_with_token(
        admin_client,
        "/staff/users/new",
        {
            "email": "Ny.Redaktoer@KL.dk",
            "name": "Ny Redaktør",
            "role": "editor",
            "password": PASSWORD,
            "password_again": PASSWORD,
        },
        page="/staff/users/new",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/users"
    html = admin_client.get("/staff/users").get_data(as_text=True)
    assert "Kontoen for ny.redaktoer@kl.dk er oprettet." in html
    assert "Ny Redaktør" in html
    staff = staff_row(app, "ny.redaktoer@kl.dk")
    assert staff.role is StaffRole.EDITOR
    assert login(app.test_client(), "ny.redaktoer@kl.dk").status_code == 303


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "not an address"}, "Indtast en gyldig e-mailadresse"),
        ({"email": ADMIN}, "Der findes allerede en medarbejderkonto med denne adresse."),
        ({"password": "too-short", "password_again": "too-short"}, "mindst 12 tegn"),
        ({"password_again": "something-else-entirely"}, "De to adgangskoder er ikke ens."),
        ({"role": "chief"}, "Not a valid choice"),
    ],
)
def test_admin_gets_clear_errors_when_creating_an_account(admin_client, app, fields, message):
    data = {
        "email": "ny@kl.dk",
        "role": "editor",
        "password": PASSWORD,
        "password_again": PASSWORD,
        **fields,
    }
    response = post_with_token(admin_client, "/staff/users/new", data, page="/staff/users/new")
    assert response.status_code == 422
    if message != "Not a valid choice":  # WTForms' own text, translated by WTForms
        assert message in response.get_data(as_text=True)
    with app.app_context():
        assert len(services.list_staff()) == 1


def test_admin_deactivates_and_activates_an_account(admin_client, app, editor):
    response = post_with_token(
        admin_client, f"/staff/users/{editor}/deactivate", page="/staff/users"
    )
    assert response.status_code == 303
    assert not staff_row(app, EDITOR).is_active
    assert "er deaktiveret" in admin_client.get("/staff/users").get_data(as_text=True)
    assert login(app.test_client(), EDITOR).status_code == 422
    post_with_token(admin_client, f"/staff/users/{editor}/activate", page="/staff/users")
    assert staff_row(app, EDITOR).is_active
    assert login(app.test_client(), EDITOR).status_code == 303


def test_admin_cannot_deactivate_themselves_or_the_last_admin(admin_client, app, admin):
    post_with_token(admin_client, f"/staff/users/{admin}/deactivate", page="/staff/users")
    assert staff_row(app, ADMIN).is_active
    assert "Du kan ikke deaktivere din egen konto." in admin_client.get("/staff/users").get_data(
        as_text=True
    )
    with app.app_context(), pytest.raises(services.LastAdmin):
        services.deactivate(admin)


def test_unknown_account_is_404(admin_client):
    assert post_with_token(admin_client, "/staff/users/9999/deactivate").status_code == 404


def test_admin_edits_a_newsletters_settings(admin_client, app, client):
    page = admin_client.get("/staff/newsletters/momentum/settings").get_data(as_text=True)
    assert 'value="Momentum"' in page
    assert "momentum" in page and 'name="slug"' not in page
    response = post_with_token(
        admin_client,
        "/staff/newsletters/momentum/settings",
        {
            "name": "Momentum – KL's magasin",
            "description_da": "Ny dansk beskrivelse.",
            "description_en": "New English description.",
            "cadence_da": "Hver fredag",
            "cadence_en": "Every Friday",
            "position": "9",
            # is_public unticked
        },
        page="/staff/newsletters/momentum/settings",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/"
    with app.app_context():
        newsletter = db.session.scalar(db.select(Newsletter).where(Newsletter.slug == "momentum"))
        assert (newsletter.name, newsletter.cadence_da, newsletter.cadence_en) == (
            "Momentum – KL's magasin",
            "Hver fredag",
            "Every Friday",
        )
        assert (newsletter.is_public, newsletter.position) == (False, 9)
        assert newsletter.description_en == "New English description."
    # The public form stops offering it at once.
    assert 'value="momentum"' not in app.test_client().get("/").get_data(as_text=True)


def test_newsletter_settings_refuse_bad_input(admin_client, app):
    response = post_with_token(
        admin_client,
        "/staff/newsletters/momentum/settings",
        {"name": "", "description_da": "x", "cadence_da": "x", "position": "-1"},
        page="/staff/newsletters/momentum/settings",
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Indtast nyhedsbrevets navn." in html
    assert "Indtast et helt tal fra 0 til 10000." in html
    with app.app_context():
        name = db.session.scalar(db.select(Newsletter.name).where(Newsletter.slug == "momentum"))
        assert name == "Momentum"


def test_settings_of_an_unknown_newsletter_is_404(admin_client):
    assert admin_client.get("/staff/newsletters/nope/settings").status_code == 404


# --------------------------------------------------------------------------- Danish


ENGLISH_LEFTOVERS = [
    "Log in",
    "Log out",
    "Password",
    "Overview",
    "Newsletters",
    "Staff",
    "Settings",
    "Confirmed subscribers",
    "Create",
    "Email address",
    "Role",
    "Save",
    "Never",
]


def _assert_danish(html: str, label: str) -> None:
    assert '<html lang="da">' in html, label
    text = re.sub(r"<[^>]+>", " ", html)
    text = re.sub(r"\s+", " ", text)
    for phrase in ENGLISH_LEFTOVERS:
        assert not re.search(rf"\b{phrase}\b", text), f"{label}: {phrase!r} in {text!r}"


def test_every_staff_page_renders_in_danish(client, app, admin, editor):
    _assert_danish(client.get("/staff/login").get_data(as_text=True), "login")
    token = csrf_token(client.get("/staff/login").data)
    failed = client.post("/staff/login", data={"csrf_token": token, "email": "x@kl.dk"})
    _assert_danish(failed.get_data(as_text=True), "login, failed")
    login(client, ADMIN)
    pages = {
        "dashboard": "/staff/",
        "staff": "/staff/users",
        "new staff": "/staff/users/new",
        "settings": "/staff/newsletters/bestyrelse/settings",
    }
    for label, path in pages.items():
        response = client.get(path)
        assert response.status_code == 200, label
        _assert_danish(response.get_data(as_text=True), label)
    html = client.get("/staff/").get_data(as_text=True)
    for danish in ("Oversigt", "Medarbejdere", "Log ud", "Bekræftede abonnenter"):
        assert danish in html
    invalid = post_with_token(client, "/staff/users/new", {}, page="/staff/users/new")
    _assert_danish(invalid.get_data(as_text=True), "new staff, empty")
    invalid = post_with_token(
        client, "/staff/newsletters/bestyrelse/settings", {}, page="/staff/users/new"
    )
    _assert_danish(invalid.get_data(as_text=True), "settings, empty")
    editor_client = app.test_client()
    login(editor_client, EDITOR)
    _assert_danish(editor_client.get("/staff/users").get_data(as_text=True), "403")


def test_staff_pages_follow_the_english_choice(editor_client):
    html = editor_client.get("/staff/?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html and "Confirmed subscribers" in html


def test_cli_set_password_lets_a_locked_out_admin_back_in(runner, app):
    created = runner.invoke(
        args=["staff", "create", "chef@kl.dk", "--role", "admin", "--password-stdin"],
        input="the-first-password-123\n",
    )
    assert created.exit_code == 0, created.output
    changed = runner.invoke(
        args=["staff", "set-password", "Chef@KL.dk", "--password-stdin"],
        input="a-brand-new-password-456\n",
    )
    assert changed.exit_code == 0, changed.output
    assert "new password set for chef@kl.dk" in changed.output
    with app.app_context():
        from newsletters.staff import services

        assert services.authenticate("chef@kl.dk", "a-brand-new-password-456") is not None
        assert services.authenticate("chef@kl.dk", "the-first-password-123") is None
    unknown = runner.invoke(
        args=["staff", "set-password", "nobody@kl.dk", "--password-stdin"], input="x" * 20 + "\n"
    )
    assert unknown.exit_code == 1 and "no staff account" in unknown.output
    weak = runner.invoke(
        args=["staff", "set-password", "chef@kl.dk", "--password-stdin"], input="short\n"
    )
    assert weak.exit_code == 1 and "not changed" in weak.output
