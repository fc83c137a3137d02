"""Issue 18, findings 3, 7, 8, 10 and 11: each attack of the security probe, replayed.

3: attacker text inside genuine KL mail (names); 7: formula cells in CSV exports;
8: 5xx on odd input; 10: request size; 11: the Host header in links. The suite runs on
SQLite and on PostgreSQL (NEWSLETTERS_TEST_DATABASE_URL), so every case here runs on both.
"""

from __future__ import annotations

import csv
import io
import re
import select
import socket
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select as sql_select

from newsletters import names
from newsletters.extensions import db
from newsletters.names import MAX_NAME_LENGTH, InvalidName, clean_name
from newsletters.spreadsheet import defuse
from newsletters.staff import services as staff_services
from newsletters.subscriptions import consent, intake
from newsletters.subscriptions.models import Subscriber, SubscribeRequest
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import (
    confirmed_subscriber,
    link_in,
    mail_text,
    process_intake,
    queued_mails,
    subscribe,
)
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, login, make_staff

PACKAGE = Path(__file__).resolve().parent.parent / "newsletters"

# The probe's payload: a "name" that turns the confirmation mail into a phishing mail.
PHISHING_NAME = (
    "Jens\r\n\r\nVIGTIGT: Din adgang til KL udløber i dag. Bekræft din konto på "
    "https://kl-login.evil.example/verify\r\n\r\nMed venlig hilsen\r\nKL"
)


def _count(app: Flask, model) -> int:
    with app.app_context():
        value = db.session.scalar(sql_select(func.count()).select_from(model))
        db.session.remove()
        return value


def _subscriber(app: Flask, email: str) -> Subscriber:
    with app.app_context():
        row = db.session.scalar(sql_select(Subscriber).where(Subscriber.email == email))
        db.session.expunge(row)
        db.session.remove()
        return row


@pytest.fixture
def admin(client: FlaskClient, app: Flask) -> FlaskClient:
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def _post_form(client: FlaskClient, path: str, data: dict, page: str | None = None):
    token = csrf_token(client.get(page or path).data)
    return client.post(path, data={"csrf_token": token, **data})


# =========================================================================== finding 3


@pytest.mark.parametrize(
    "name",
    [
        "Jacob Bundsgaard",
        "Anne-Marie Ørsted-Åberg",
        "A.B. Nielsen",
        "Dr. med. Ib Bo",
        "O'Brien",
        "Søren (borgmester)",
        "Borgmester i Kbh.",
        "José Müller",
    ],
)
def test_real_names_are_accepted(name):
    assert clean_name(name) == name


def test_a_name_is_trimmed_and_its_spaces_collapsed():
    assert clean_name("  Anne \u00a0  Jensen ") == "Anne Jensen"


@pytest.mark.parametrize(
    "name",
    [
        PHISHING_NAME,
        "Jens\nVIGTIGT",
        "Jens\rVIGTIGT",
        "Jens\u2028VIGTIGT",
        "Jens\x00",
        "Jens\x1b[31m",
        "Jens\u202eGIGTIV",  # right-to-left override
        "Jens\u200b",  # zero-width space
        "https://kl-login.evil.example/verify",
        "kl-login.evil.example",
        "Se evil.dk",
        "www.evil",
        "evil\u3002example",  # ideographic full stop: a dot to IDNA
        "evil\uff0eexample",  # fullwidth full stop
        "jens@evil.example",
        "javascript:alert(1)",
        "x" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_names_that_could_carry_a_message_are_refused(name):
    with pytest.raises(InvalidName):
        clean_name(name)


def test_a_huge_name_is_refused_as_too_long_before_the_link_pattern_sees_it(monkeypatch):
    # The link pattern's time grows with the square of its input: a 500 KB name field
    # (MAX_FORM_MEMORY_SIZE) took hours of CPU when the pattern ran before the length check.
    seen: list[int] = []

    class Pattern:
        def search(self, text: str) -> None:
            seen.append(len(text))

    monkeypatch.setattr(names, "_LINK", Pattern())
    with pytest.raises(InvalidName, match="too long"):
        clean_name("A" * 500_000)
    assert seen == []
    assert clean_name("Anne Jensen") == "Anne Jensen" and seen == [11]


def test_the_probes_name_is_refused_on_the_public_form_in_danish(client, app):
    token = csrf_token(client.get("/").data)
    response = client.post(
        "/",
        data={
            "csrf_token": token,
            "email": "offer@example.dk",
            "name": PHISHING_NAME,
            "newsletters": ["momentum"],
        },
    )
    assert response.status_code == 422
    assert "Navnet skal stå på én linje." in response.get_data(as_text=True)
    assert _count(app, SubscribeRequest) == 0
    process_intake(app)
    assert queued_mails(app, "offer@example.dk") == []


def test_a_link_in_the_name_is_refused_on_the_public_form_in_danish(client, app):
    response = subscribe(client, "offer@example.dk", name="Se kl-login.evil.example/verify")
    assert response.status_code == 422
    assert "Navnet må ikke indeholde links" in response.get_data(as_text=True)
    assert queued_mails(app, "offer@example.dk") == []


def test_the_subscribe_service_refuses_a_bad_name_too(app):
    """The API and any other caller get the same check as the form."""
    with app.app_context():
        with pytest.raises(InvalidName):
            intake.accept_subscribe_request(
                email="offer@example.dk",
                slugs=["momentum"],
                name="Jens\nhttps://evil.example",
                ctx=consent.RequestContext(),
            )
        db.session.rollback()
    assert _count(app, SubscribeRequest) == 0


def test_the_subscribe_service_takes_only_one_of_the_98_municipalities(app):
    with app.app_context():
        with pytest.raises(ValueError):
            intake.accept_subscribe_request(
                email="offer@example.dk",
                slugs=["momentum"],
                municipality="VIGTIGT: https://evil.example",
                ctx=consent.RequestContext(),
            )
        db.session.rollback()
    assert _count(app, SubscribeRequest) == 0


def test_the_confirmation_mail_shows_nothing_the_stranger_typed(client, app):
    # A name that passes every check is still a stranger's words: not in the mail.
    subscribe(client, "offer@example.dk", name="Ring straks til 70 20 30 40")
    [mail] = queued_mails(app, "offer@example.dk", kind="confirm")
    assert "Ring straks" not in mail.raw
    assert "Ring straks" not in mail_text(mail)
    assert mail_text(mail).splitlines()[0] == "Hej"


def test_no_mail_a_stranger_can_cause_shows_the_stored_name(client, app):
    """The name typed before the owner confirmed stays on the record: neither the
    'already subscribed' mail nor the manage link (both anyone can ask for) print it."""
    subscribe(client, "offer@example.dk", name="Ring straks til 70 20 30 40")
    [confirm] = queued_mails(app, "offer@example.dk", kind="confirm")
    path = link_in(confirm, "/confirm/")
    client.post(path, data={"csrf_token": csrf_token(client.get(path).data)})
    subscribe(client, "offer@example.dk", name="Andet navn")  # already subscribed
    _post_form(client, "/manage", {"email": "offer@example.dk"})
    kinds = {m.kind: m for m in queued_mails(app, "offer@example.dk")}
    assert {"already_subscribed", "manage_link"} <= set(kinds)
    for mail in kinds.values():
        assert "Ring straks" not in mail.raw and "Andet navn" not in mail.raw


def test_the_welcome_mail_after_an_import_shows_no_name(runner, app, tmp_path):
    csv_file = tmp_path / "borgmestre.csv"
    csv_file.write_text("email,name\nborgmester@aarhus.dk,Anders Aarhus\n", encoding="utf-8")
    result = runner.invoke(
        args=[
            "subscribers", "import", str(csv_file), "--newsletter", "bestyrelse",
            "--basis", "Borgmester", "--welcome",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [mail] = queued_mails(app, "borgmester@aarhus.dk", kind="welcome")
    assert "Anders Aarhus" not in mail.raw


def test_the_preference_centre_refuses_a_bad_name_and_keeps_the_old(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    _post_form(client, "/manage", {"email": "a@example.dk"})
    [mail] = queued_mails(app, "a@example.dk", kind="manage_link")
    path = link_in(mail, "/manage/")
    response = _post_form(
        client, path, {"name": "Jens\r\nhttps://evil.example", "newsletters": ["momentum"]}
    )
    assert response.status_code == 422
    assert "Navnet skal stå på én linje." in response.get_data(as_text=True)
    assert _subscriber(app, "a@example.dk").name == ""
    response = _post_form(client, path, {"name": "  Jens   Hansen ", "newsletters": ["momentum"]})
    assert response.status_code == 303
    assert _subscriber(app, "a@example.dk").name == "Jens Hansen"


def test_the_import_refuses_a_file_with_a_bad_name_line_by_line(runner, app, tmp_path):
    csv_file = tmp_path / "hostile.csv"
    csv_file.write_text(
        'email,name\nok@example.dk,Bo\nbad@example.dk,"Jens\nVIGTIGT"\n'
        "url@example.dk,kl-login.evil.example\n",
        encoding="utf-8",
    )
    result = runner.invoke(
        args=["subscribers", "import", str(csv_file), "--newsletter", "bestyrelse", "--basis", "B"]
    )
    assert result.exit_code == 1
    # (The quoted name spans lines 3 and 4; a record is named by the line it starts on.)
    assert "line 3: The name must be on one line." in result.output
    assert "line 5: The name must not contain links" in result.output
    assert _count(app, Subscriber) == 0


def test_the_import_upload_names_a_bad_name_in_danish(admin, app):
    token = csrf_token(admin.get("/staff/subscribers/import").data)
    response = admin.post(
        "/staff/subscribers/import",
        data={
            "csrf_token": token,
            "newsletter": "bestyrelse",
            "mode": "invite",
            "file": (io.BytesIO(b"email,name\nx@example.dk,evil.example\n"), "a.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "Navnet må ikke indeholde links" in response.get_data(as_text=True)


def test_staff_names_get_the_same_check(admin, app):
    with app.app_context():
        with pytest.raises(staff_services.StaffError):
            staff_services.create_staff(
                "ny@kl.dk", role="editor", password="x" * 20 + "-hest-batteri", name="a\nb"
            )
        db.session.rollback()
    response = _post_form(
        admin,
        "/staff/users/new",
        {
            "email": "ny@kl.dk",
            "name": "https://evil.example",
            "role": "editor",
            "password": "rigtig-hest-batteri-hæfteklamme",
            "password_again": "rigtig-hest-batteri-hæfteklamme",
        },
    )
    assert response.status_code == 422
    assert "Navnet må ikke indeholde links" in response.get_data(as_text=True)


# =========================================================================== finding 7

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _excel_cells(line: str, separator: str) -> list[str]:
    """A line as Excel splits it: quotes count only at a cell's start, and after the
    closing quote the rest up to the separator is kept as it is."""
    cells, i, n = [], 0, len(line)
    while i <= n:
        if i < n and line[i] == '"':
            j, value = i + 1, ""
            while j < n:
                if line[j] == '"':
                    if j + 1 < n and line[j + 1] == '"':
                        value, j = value + '"', j + 2
                        continue
                    j += 1
                    break
                value, j = value + line[j], j + 1
            k = line.find(separator, j)
            k = n if k < 0 else k
            cells.append(value + line[j:k])
        else:
            k = line.find(separator, i)
            k = n if k < 0 else k
            cells.append(line[i:k])
        i = k + 1
    return cells


def _formula_cells(text: str) -> list[tuple[str, str]]:
    """Every (separator, cell) of the text that a spreadsheet would read as a formula,
    whichever separator it splits on and however it treats quotes."""
    found = []
    for separator in (",", ";", "\t", "|"):
        pieces: set[str] = set()
        for line in text.splitlines():
            pieces |= set(_excel_cells(line, separator))
            pieces |= {p.lstrip(' "') for p in line.split(separator)}
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=separator):
            pieces |= set(row)
        found += [(separator, p) for p in pieces if p.startswith(TRIGGERS)]
    return found


@pytest.mark.parametrize(
    "value",
    ["=1+1", "x;=1+1;", "x,=1+1", "x\t=1", 'x;"=1+1', "x; @SUM(A1)", "+45 33 70", "-2", "\tx"],
)
def test_defused_cells_are_no_formula_in_any_split(value):
    line = '"' + defuse(value).replace('"', '""') + '"'
    assert _formula_cells(line) == []


def test_harmless_values_are_exported_as_they_are():
    for value in ("Anne-Marie Jensen", "a+b@example.dk", "2026-03-12T09:30:00+00:00", ""):
        assert defuse(value) == value


def _set_name_in_preference_centre(client: FlaskClient, app: Flask, email: str, name: str):
    confirmed_subscriber(client, app, email, newsletters=("bestyrelse",))
    _post_form(client, "/manage", {"email": email})
    path = link_in(queued_mails(app, email, kind="manage_link")[-1], "/manage/")
    response = _post_form(client, path, {"name": name, "newsletters": ["bestyrelse"]})
    assert response.status_code == 303
    assert _subscriber(app, email).name == name


def test_a_name_from_the_preference_centre_is_no_formula_in_the_admin_export(client, app):
    _set_name_in_preference_centre(client, app, "a@example.dk", "x;=1+1;")
    make_staff(app, ADMIN, "admin")
    login(client, ADMIN)
    response = _post_form(
        client, "/staff/subscribers/export", {"newsletter": "bestyrelse"},
        page="/staff/subscribers/export",
    )  # fmt: skip
    assert response.status_code == 200
    text = response.get_data().decode("utf-8-sig")
    assert "x;'=1+1;" in text
    assert _formula_cells(text) == []
    # Every cell is quoted, the header too.
    assert text.startswith('"email","name","municipality","role","confirmed_at"\r\n')


def test_a_name_from_the_preference_centre_is_no_formula_in_the_cli_export(client, app, runner):
    _set_name_in_preference_centre(client, app, "a@example.dk", "x;=1+1;")
    result = runner.invoke(args=["subscribers", "export", "--newsletter", "bestyrelse"])
    assert result.exit_code == 0
    assert "x;'=1+1;" in result.output
    assert _formula_cells(result.output) == []


def test_every_csv_export_uses_the_shared_writer():
    """No module writes CSV but newsletters/spreadsheet.py (quoting and defusing)."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "spreadsheet.py"
        and re.search(r"csv\.(writer|DictWriter)\(", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# =========================================================================== finding 8

HUGE = "9" * 20


@pytest.fixture
def dev_app(make_app) -> Flask:
    return make_app(DEV_MAILBOX=True)


@pytest.mark.parametrize(
    "path",
    [
        f"/editions/{HUGE}",
        "/editions/2147483648",
        "/editions/-1",
        "/editions/\u0661\u0662",  # Arabic-Indic digits: digits to Python, not to us
        f"/editions/{'9' * 5000}",
        f"/dev/mail/{HUGE}",
        f"/dev/mail/{HUGE}.html",
        f"/dev/mail/{HUGE}.eml",
    ],
)
def test_absurd_ids_on_public_pages_are_404(dev_app, path):
    response = dev_app.test_client().get(path)
    assert response.status_code == 404
    assert "Siden findes ikke" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", f"/staff/editions/{HUGE}"),
        ("GET", f"/staff/editions/{HUGE}/edit"),
        ("GET", f"/staff/editions/{HUGE}/progress.json"),
        ("POST", f"/staff/editions/{HUGE}/send"),
        ("GET", f"/staff/subscribers/{HUGE}"),
        ("POST", f"/staff/subscribers/{HUGE}/data.json"),
        ("POST", f"/staff/suppressions/{HUGE}/lift"),
        ("POST", f"/staff/feeds/{HUGE}/fetch"),
        ("POST", f"/staff/users/{HUGE}/deactivate"),
    ],
)
def test_absurd_ids_on_staff_pages_are_404(admin, method, path):
    token = csrf_token(admin.get("/staff/").data)
    response = admin.open(path, method=method, data={"csrf_token": token})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/staff/audit?from=0001-01-01&to=0001-01-01",
        "/staff/audit?from=9999-12-31&to=9999-12-31",
        "/staff/audit?from=2026-13-45",
        f"/staff/audit?page={'9' * 25}",
        "/staff/audit?page=-5",
        f"/staff/suppressions?page={'9' * 25}",
        f"/staff/newsletters/bestyrelse?page={'9' * 25}",
        f"/staff/subscribers?after={'9' * 25}",
        f"/staff/editions/1/edit?rows={'9' * 25}",
    ],
)
def test_absurd_pages_and_dates_on_staff_pages_are_answered(admin, app, path):
    draft(app)
    response = admin.get(path)
    assert response.status_code == 200, path


def test_an_absurd_page_number_on_the_front_page_is_ignored(client):
    assert client.get(f"/?page={'9' * 25}").status_code == 200


def test_a_nul_in_a_form_field_is_a_clear_400(client, app):
    token = csrf_token(client.get("/").data)
    response = client.post(
        "/",
        data=f"csrf_token={token}&email=a%40example.dk&name=a%00b&newsletters=momentum",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "tegn, der ikke er tilladt" in response.get_data(as_text=True)
    assert _count(app, SubscribeRequest) == 0


@pytest.mark.parametrize(
    "path",
    ["/?newsletters=a%00b", "/manage?email=a%00b", "/confirm/a%00b", "/unsubscribe/a%00b"],
)
def test_a_nul_in_the_address_is_a_clear_400(client, path):
    response = client.get(path)
    assert response.status_code == 400
    assert "tegn, der ikke er tilladt" in response.get_data(as_text=True)


def test_a_nul_on_staff_pages_is_a_clear_400(admin):
    for path in (
        "/staff/newsletters/a%00b",
        "/staff/subscribers?q=a%00b",
        "/staff/audit?actor=%00",
    ):
        assert admin.get(path).status_code == 400, path
    token = csrf_token(admin.get("/staff/suppressions").data)
    response = admin.post(
        "/staff/suppressions",
        data=f"csrf_token={token}&email=a%00b%40example.dk&note=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400


def test_a_nul_in_the_user_agent_is_refused_before_it_reaches_a_consent_record(client, app):
    token = csrf_token(client.get("/").data)
    response = client.post(
        "/",
        data={"csrf_token": token, "email": "a@example.dk", "newsletters": ["momentum"]},
        headers={"User-Agent": "Mozilla\x00evil"},
    )
    assert response.status_code == 400
    assert _count(app, SubscribeRequest) == 0


# =========================================================================== finding 10


def test_a_body_over_the_limit_is_413_in_danish(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1000)
    response = app.test_client().post(
        "/unsubscribe/x", data={"List-Unsubscribe": "One-Click", "pad": "x" * 2000}
    )
    assert response.status_code == 413
    assert "Det, du sendte, er for stort" in response.get_data(as_text=True)
    assert response.headers["Connection"] == "close"


def test_a_route_that_reads_no_body_refuses_a_large_one_too(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1000)
    response = app.test_client().get("/", data="x" * 2000)
    assert response.status_code == 413


def test_only_the_import_upload_takes_larger_bodies(make_app):
    app = make_app(MAX_CONTENT_LENGTH=100_000, IMPORT_MAX_CONTENT_LENGTH=1_000_000)
    client = app.test_client()
    make_staff(app, ADMIN, "admin")
    login(client, ADMIN)
    # Three people and a long column the import ignores: 300 KB.
    rows = "".join(f"p{n}@example.dk,Person {n},{'x' * 100_000}\n" for n in range(3))
    content = ("email,name,notes\n" + rows).encode()

    def post(path: str, data: bytes):
        token = csrf_token(client.get("/staff/subscribers/import").data)
        return client.post(
            path,
            data={
                "csrf_token": token, "newsletter": "bestyrelse", "mode": "invite",
                "dry_run": "y", "file": (io.BytesIO(data), "a.csv"),
            },
            content_type="multipart/form-data",
        )  # fmt: skip

    response = post("/staff/subscribers/import", content)
    assert response.status_code == 200, response.status_code
    assert 'id="import-report"' in response.get_data(as_text=True)
    assert post("/staff/suppressions", content).status_code == 413
    assert post("/staff/subscribers/import", content * 4).status_code == 413


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_form_parts_are_capped(make_app, kind):
    app = make_app(MAX_FORM_PARTS=50)
    fields = {f"f{n}": "x" for n in range(200)}
    if kind == "urlencoded":
        body, content_type = "&".join(f"{k}={v}" for k, v in fields.items()), None
        content_type = "application/x-www-form-urlencoded"
        response = app.test_client().post("/unsubscribe/x", data=body, content_type=content_type)
    else:
        response = app.test_client().post(
            "/unsubscribe/x", data=fields, content_type="multipart/form-data"
        )
    assert response.status_code == 413


def test_an_urlencoded_body_is_held_to_the_form_memory_limit(make_app):
    app = make_app(MAX_FORM_MEMORY_SIZE=10_000)
    response = app.test_client().post(
        "/unsubscribe/x",
        data="a=" + "x" * 20_000,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413


@pytest.fixture
def http_server(make_app):
    from tests.support.live import LiveServer

    app = make_app(MAX_CONTENT_LENGTH=1_000_000)
    server = LiveServer(app).start()
    yield server
    server.stop()


def _read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_huge_declared_body_gets_413_without_the_server_reading_it(http_server):
    """The probe: an anonymous 1.5 GB multipart POST. Only the headers are sent; the
    answer comes at once, and the server closes the connection instead of waiting."""
    sock = socket.create_connection(("127.0.0.1", http_server.port))
    try:
        sock.sendall(
            b"POST /unsubscribe/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: 1500000000\r\n\r\n"
        )
        started = time.monotonic()
        head = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        assert time.monotonic() - started < 5
        assert b"Connection: close" in head
        # The server hangs up: it does not wait for (or read) the 1.5 GB.
        sock.settimeout(5)
        while sock.recv(65536):
            pass
    finally:
        sock.close()


def test_a_chunked_body_is_cut_off_at_the_limit(http_server):
    """No Content-Length: the server reads up to the limit (1 MB here), answers 413 and
    stops reading; the client cannot push the 200 MB it wanted to."""
    sock = socket.create_connection(("127.0.0.1", http_server.port))
    sent = 0
    answer = b""
    try:
        sock.sendall(
            b"POST /unsubscribe/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
        sock.setblocking(False)
        deadline = time.monotonic() + 30
        while sent < 200_000_000 and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                answer += data
                if not data or b"\r\n\r\n" in answer:
                    break
            if writable:
                try:
                    sent += sock.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The limit plus what the kernel's socket buffers hold, far from 200 MB.
    assert sent < 40_000_000, sent


# =========================================================================== finding 11

HOSTILE_HOSTS = [
    {"Host": "evil.example"},
    {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
]


def _published_edition(app: Flask) -> int:
    from newsletters.editions import sending

    confirmed_audience(app, 1)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
        db.session.remove()
    return edition_id


@pytest.mark.parametrize("proxies", [0, 1])
@pytest.mark.parametrize("headers", HOSTILE_HOSTS)
def test_the_web_version_links_only_to_the_public_base_url(make_app, proxies, headers):
    """The probe: GET /editions/2 with Host: evil.example linked to
    http://evil.example/manage, on a page shared caches keep."""
    app = make_app(PROXY_COUNT=proxies, PUBLIC_BASE_URL="https://nyhedsbreve.kl.dk")
    edition_id = _published_edition(app)
    response = app.test_client().get(f"/editions/{edition_id}", headers=headers)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "evil.example" not in page
    assert 'href="https://nyhedsbreve.kl.dk/manage"' in page
    assert f"https://nyhedsbreve.kl.dk/editions/{edition_id}" in page


def _public_get_paths(app: Flask, client: FlaskClient) -> list[str]:
    """Every public GET route of the URL map, with real tokens where it takes one."""
    subscribe(client, "a@example.dk", ["momentum"])
    [confirm] = queued_mails(app, "a@example.dk", kind="confirm")
    confirm_path = link_in(confirm, "/confirm/")
    client.post(confirm_path, data={"csrf_token": csrf_token(client.get(confirm_path).data)})
    _post_form(client, "/manage", {"email": "a@example.dk"})
    [manage] = queued_mails(app, "a@example.dk", kind="manage_link")
    manage_path = link_in(manage, "/manage/")
    token = manage_path.rsplit("/", 1)[1]
    with app.app_context():
        from newsletters.subscriptions import links

        subscriber = db.session.scalar(
            sql_select(Subscriber).where(Subscriber.email == "a@example.dk")
        )
        unsubscribe_path = links.unsubscribe_url(subscriber).split("localhost", 1)[1]
        join_path = links.join_url(subscriber, 1).split("localhost", 1)[1]
        db.session.remove()
    edition_id = _published_edition(app)
    values = {
        "token": token,
        "edition_id": str(edition_id),
        "message_id": "1",
        "mail_id": "1",
        "filename": "css/dkfds.min.css",
        "slug": "bestyrelse",
        "link_id": "1",
        # The REST API's (a 401 problem without a token) and its docs' assets.
        "subscriber_id": "1",
        "name": "swagger-ui.css",
    }
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule.startswith(("/staff", "/static")):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(r"<(?:[^:<>]+:)?" + name + ">", values[name], path)
        paths.append(path)
    paths += [confirm_path, unsubscribe_path, join_path]
    return paths


@pytest.mark.parametrize("headers", HOSTILE_HOSTS)
def test_no_public_page_or_redirect_carries_a_hostile_host(make_app, headers):
    app = make_app(PROXY_COUNT=1, DEV_MAILBOX=True)
    client = app.test_client()
    paths = _public_get_paths(app, client)
    assert len(paths) >= 15
    for path in paths:
        response = client.get(path, headers=headers)
        assert response.status_code < 500, path
        assert b"evil.example" not in response.get_data(), path
        assert "evil.example" not in str(response.headers), path


def test_mails_asked_for_through_a_hostile_host_link_to_the_public_base_url(make_app):
    app = make_app(PROXY_COUNT=1, PUBLIC_BASE_URL="https://nyhedsbreve.kl.dk")
    client = app.test_client()
    hostile = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    token = csrf_token(client.get("/", headers=hostile).data)
    response = client.post(
        "/",
        data={"csrf_token": token, "email": "a@example.dk", "newsletters": ["momentum"]},
        headers=hostile,
    )
    assert response.status_code == 303
    process_intake(app)
    [mail] = queued_mails(app, "a@example.dk")
    assert "evil.example" not in mail.raw
    assert "https://nyhedsbreve.kl.dk/confirm/" in mail_text(mail)


def test_no_code_builds_links_from_the_request_host():
    """One helper (newsletters/urls.py) makes absolute links, from PUBLIC_BASE_URL."""
    pattern = re.compile(r"_external\s*=\s*True|host_url|url_root|request\.host\b")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.html"), *PACKAGE.rglob("*.txt")]
        if path.name != "urls.py" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_a_multipart_part_with_an_unreadable_name_is_no_5xx(client):
    """Found by the route fuzzer: a part named by a line break reached the NUL check as
    the key None."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="\n"\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\na@example.dk\r\n--b--\r\n'
    )
    for path in ("/", "/manage", "/confirm/garbage"):
        response = client.post(path, data=body, content_type="multipart/form-data; boundary=b")
        assert response.status_code == 400, path
