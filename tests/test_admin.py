"""The administrators' pages: subscribers, history, import and export, erasure that
leaves nothing behind, the suppression list, the audit log, and purging stale pending
subscriptions."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text, update

from newsletters.audit.models import AuditEntry
from newsletters.bounces.models import BounceKind
from newsletters.catalog.services import newsletter_by_slug
from newsletters.editions import sending
from newsletters.editions.models import Delivery
from newsletters.extensions import db
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions import (
    consent,
    enrolment,
    erasure,
    importing,
    intake,
    mails,
    preferences,
    suppression,
)
from newsletters.subscriptions.models import (
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from newsletters.timeutil import utcnow
from tests.support.editions import confirmed_audience, draft
from tests.support.pages import csrf_token
from tests.test_staff import ADMIN, EDITOR, login, make_staff

MAYORS = (
    "email;name;municipality;role\r\n"
    "borgmester@aarhus.dk;Anders Aarhus;Aarhus Kommune;borgmester\r\n"
    "borgmester@aeroe.dk;Birthe Ærø;Ærø;borgmester\r\n"
    "borgmester@kk.dk;Carl København;Københavns Kommune;overborgmester\r\n"
)
BASIS = "Borgmester efter kommunalvalget 2025"


@pytest.fixture
def admin(client: FlaskClient, app: Flask) -> FlaskClient:
    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def post_form(client: FlaskClient, path: str, data: dict | None = None, page: str | None = None):
    token = csrf_token(client.get(page or path).data)
    return client.post(path, data={"csrf_token": token, **(data or {})})


def upload(client: FlaskClient, content: bytes, name: str = "borgmestre.csv", **fields):
    token = csrf_token(client.get("/staff/subscribers/import").data)
    data = {
        "csrf_token": token,
        "newsletter": "bestyrelse",
        "mode": "invite",
        "file": (io.BytesIO(content), name),
        **fields,
    }
    response = client.post(
        "/staff/subscribers/import", data=data, content_type="multipart/form-data"
    )
    # The page streams the import's progress: as a browser does, read it to the end
    # (the import writes while the page is read).
    response.get_data()
    return response


# Signing in and out is audited too (issue 14); these tests look at what staff did.
SIGN_IN_ACTIONS = ("staff.login", "staff.logout", "staff.session_expired")


def audit_actions(app: Flask) -> list[tuple[str, str]]:
    """The audit entries of staff actions (not of signing in and out), oldest first."""
    with app.app_context():
        rows = db.session.execute(
            select(AuditEntry.action, AuditEntry.target)
            .where(AuditEntry.action.not_in(SIGN_IN_ACTIONS))
            .order_by(AuditEntry.id)
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]


def count(app: Flask, model, *where) -> int:
    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model).where(*where))
        db.session.remove()
        return value


def subscriber_id(app: Flask, email: str) -> int:
    with app.app_context():
        value = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        db.session.remove()
        return value


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize(
    "path",
    ["/staff/subscribers", "/staff/subscribers/import", "/staff/suppressions", "/staff/audit"],
)
def test_editors_cannot_see_the_administrators_pages(client, app, path):
    make_staff(app, EDITOR, "editor")
    login(client, EDITOR)
    assert client.get(path).status_code == 403


def test_a_post_without_csrf_token_is_refused(admin, app):
    confirmed_audience(app, 1)
    sid = subscriber_id(app, "m00000@example.dk")
    assert (
        admin.post(f"/staff/subscribers/{sid}/erase", data={"understood": "y"}).status_code == 400
    )
    assert count(app, Subscriber) == 1


# --------------------------------------------------------------------------- search


def test_subscribers_can_be_filtered_by_newsletter_status_municipality_and_role(admin, app):
    assert upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="").status_code == 200
    confirmed_audience(app, 3, slug="momentum", prefix="laeser")
    with app.app_context():
        preferences.unsubscribe_subscriber(
            subscriber_id(app, "borgmester@kk.dk"), newsletter_ids=None,
            ctx=consent.RequestContext(method="test"),
        )  # fmt: skip

    def emails(query: str) -> list[str]:
        page = admin.get(f"/staff/subscribers?{query}").get_data(as_text=True)
        return sorted(
            a for a in ["borgmester@aarhus.dk", "borgmester@aeroe.dk", "borgmester@kk.dk",
                        "laeser00000@example.dk"] if f">{a}</a>" in page
        )  # fmt: skip

    assert emails("newsletter=bestyrelse") == [
        "borgmester@aarhus.dk", "borgmester@aeroe.dk", "borgmester@kk.dk"
    ]  # fmt: skip
    assert emails("newsletter=bestyrelse&status=confirmed") == [
        "borgmester@aarhus.dk", "borgmester@aeroe.dk"
    ]  # fmt: skip
    assert emails("status=unsubscribed") == ["borgmester@kk.dk"]
    assert emails(f"municipality={quote('Ærø')}") == ["borgmester@aeroe.dk"]
    assert emails("role=overborgmester") == ["borgmester@kk.dk"]
    assert emails("q=birthe") == ["borgmester@aeroe.dk"]
    assert emails("newsletter=momentum") == ["laeser00000@example.dk"]
    page = admin.get("/staff/subscribers").get_data(as_text=True)
    assert "Abonnenter fundet: 6" in page


def test_paging_walks_every_subscriber_once(make_app):
    app = make_app(STAFF_PAGE_SIZE=7)
    client = app.test_client()
    make_staff(app, ADMIN, "admin")
    login(client, ADMIN)
    addresses = confirmed_audience(app, 20)
    seen: list[str] = []
    url = "/staff/subscribers?newsletter=bestyrelse"
    pages = 0
    while url:
        page = client.get(url).get_data(as_text=True)
        seen += [a for a in addresses if f">{a}</a>" in page]
        pages += 1
        marker = 'rel="next"'
        url = None
        if marker in page:
            href = page.split(marker)[0].rsplit('href="', 1)[1].split('"')[0]
            url = href.replace("&amp;", "&")
    assert pages == 3
    assert seen == addresses


def test_the_history_shows_subscriptions_consent_deliveries_and_bounces(admin, app):
    upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="")
    sid = subscriber_id(app, "borgmester@aarhus.dk")
    edition_id = draft(app, subject="Nyt fra mødet i december")
    with app.app_context():
        sending.start_send(edition_id)
        from newsletters.bounces.processing import record_bounce

        record_bounce(sid, BounceKind.SOFT, status="4.2.2", diagnostic="mailbox full")
        db.session.commit()
    page = admin.get(f"/staff/subscribers/{sid}").get_data(as_text=True)
    assert "Nyt fra KL&#39;s bestyrelse: tilmeldt" in page
    assert "Tilmeldt på et grundlag" in page and BASIS in page
    assert "Nyt fra mødet i december" in page
    assert "mailbox full" in page and "4.2.2" in page


def test_an_unknown_subscriber_is_404(admin):
    assert admin.get("/staff/subscribers/999999").status_code == 404


# --------------------------------------------------------------------------- import


def test_upload_dry_run_reports_and_changes_nothing(admin, app):
    response = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="y")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Prøvekørsel: intet blev ændret" in page and "Tilmeldt: 3" in page
    assert count(app, Subscriber) == 0
    assert audit_actions(app) == []


def test_upload_enrols_with_the_basis_as_the_cli_does_and_again_changes_nothing(admin, app):
    response = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, welcome="y", dry_run="")
    assert response.status_code == 200
    assert "Tilmeldt: 3" in response.get_data(as_text=True)
    with app.app_context():
        events = db.session.scalars(select(ConsentEvent)).all()
        assert {(e.action.value, e.method, e.basis) for e in events} == {
            ("enrolled", "import_basis", BASIS)
        }
        assert db.session.scalar(select(func.count()).where(OutboxMessage.kind == "welcome")) == 3
        db.session.remove()
    again = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, welcome="y", dry_run="")
    assert "Allerede tilmeldt, uændret: 3" in again.get_data(as_text=True)
    assert count(app, OutboxMessage) == 3
    imports = [a for a in audit_actions(app) if a[0] == "subscribers.import"]
    assert imports == [("subscribers.import", "newsletter:bestyrelse")] * 2
    with app.app_context():
        details = json.loads(
            db.session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "subscribers.import")
            ).first()
        )
        assert details["enrolled"] == 3 and details["file"] == "borgmestre.csv"
        # Counts only: the audit log never names a subscriber.
        assert "borgmester@" not in json.dumps(details)


def test_a_bad_file_is_refused_whole_with_each_line_and_reason_in_danish(admin, app):
    bad = (
        "email,name,municipality\n"
        "borgmester@aarhus.dk,Anders,Aarhus\n"
        "ikke-en-adresse,Bent,Aarhus\n"
        "borgmester@aarhus.dk,Anders igen,Aarhus\n"
        "ny@kommune.dk,Carl,Gotham City\n"
    )
    response = upload(admin, bad.encode())
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Filen blev ikke importeret" in page
    assert "Linje 3:" in page and "er ikke en gyldig e-mailadresse" in page
    assert "Linje 4: borgmester@aarhus.dk står allerede på linje 2" in page
    assert "Linje 5: &#39;Gotham City&#39; er ikke en af de 98 kommuner" in page
    assert count(app, Subscriber) == 0


def test_enrolling_without_a_basis_is_refused(admin, app):
    response = upload(admin, MAYORS.encode(), mode="enrol", basis="  ", dry_run="")
    assert response.status_code == 422
    assert "Angiv grundlaget for tilmeldingen" in response.get_data(as_text=True)
    assert count(app, Subscriber) == 0


def test_an_invite_upload_sends_the_double_opt_in_mail(admin, app):
    response = upload(admin, MAYORS.encode(), dry_run="")
    assert "Inviteret (bekræftelsesmail): 3" in response.get_data(as_text=True)
    assert count(app, OutboxMessage, OutboxMessage.kind == "confirm") == 3
    assert count(app, Subscription, Subscription.status == SubscriptionStatus.PENDING) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"email\n\x81\x8d\x8f\x90\x9d@x.dk\n", "hverken UTF-8 eller Windows-1252"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "ikke en tekstfil"),
        ("email,name\nikke-en-adresse,Bent\n".encode("utf-16"), "ikke en gyldig e-mailadresse"),
        (b"", "filen er tom"),
        (b"name,role\nAnders,borgmester\n", "har ingen kolonne &#39;email&#39;"),
        (b"email,email\na@b.dk,c@d.dk\n", "navngivet to gange"),
        (b"email\n", "ingen rækker under overskriften"),
    ],
)
def test_hostile_files_are_refused_with_a_clear_reason(admin, app, content, message):
    response = upload(admin, content)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, Subscriber) == 0


def test_a_windows_1252_file_from_danish_excel_is_read(admin, app):
    response = upload(admin, MAYORS.encode("cp1252"), mode="enrol", basis=BASIS, dry_run="")
    page = response.get_data(as_text=True)
    assert "Tilmeldt: 3" in page and "Windows-1252" in page
    with app.app_context():
        assert (
            db.session.scalar(
                select(Subscriber.name).where(Subscriber.email == "borgmester@aeroe.dk")
            )
            == "Birthe Ærø"
        )


def test_an_upload_streams_a_line_per_chunk_then_the_report(admin, app):
    app.config["IMPORT_CHUNK_ROWS"] = 2
    response = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="")
    assert response.status_code == 200
    # Passed on line by line by a proxy in front, and never kept by a cache.
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "Filen er kontrolleret: 3 rækker uden fejl. De gemmes nu" in page
    # Three rows in chunks of two: a line after each chunk, before the report.
    first = page.index("2 af 3 rækker færdige (66 %)")
    second = page.index("3 af 3 rækker færdige (100 %)")
    assert first < second < page.index("Tilmeldt: 3")
    assert count(app, Subscriber) == 3
    imports = [a for a in audit_actions(app) if a[0] == "subscribers.import"]
    assert imports == [("subscribers.import", "newsletter:bestyrelse")]


def test_an_error_in_the_middle_of_a_streamed_import_is_told_in_danish_and_logged(
    admin, app, monkeypatch, caplog
):
    """The page is already streaming when the second chunk fails: it ends with a Danish
    message (no stack trace, no cut-off page); the first chunk stays whole, and running
    the same file again imports the rest."""
    app.config["IMPORT_CHUNK_ROWS"] = 2
    run = importing._Plan.run
    calls = []

    def fails_the_second_time(plan, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("the disk is full")
        return run(plan, rows)

    monkeypatch.setattr(importing._Plan, "run", fails_the_second_time)
    response = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2 af 3 rækker færdige (66 %)" in page
    assert "Importen stoppede på grund af en uventet fejl efter 2 af 3 rækker" in page
    assert "the disk is full" not in page and "Traceback" not in page
    assert page.rstrip().endswith("</html>")
    assert "the disk is full" in caplog.text
    assert count(app, Subscriber) == 2
    assert [a for a in audit_actions(app) if a[0] == "subscribers.import"] == []

    monkeypatch.setattr(importing._Plan, "run", run)
    page = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="").get_data(
        as_text=True
    )
    assert "Tilmeldt: 1" in page
    assert count(app, Subscriber) == 3


def test_a_streamed_dry_run_says_so_and_writes_nothing(admin, app):
    response = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="y")
    page = response.get_data(as_text=True)
    assert "Nu gennemgås, hvad der ville blive ændret" in page
    assert "Prøvekørsel: intet blev ændret" in page and "Tilmeldt: 3" in page
    assert count(app, Subscriber) == 0


def test_an_upload_without_its_csrf_token_imports_nothing(admin, app):
    response = admin.post(
        "/staff/subscribers/import",
        data={
            "newsletter": "bestyrelse",
            "mode": "enrol",
            "basis": BASIS,
            "file": (io.BytesIO(MAYORS.encode()), "borgmestre.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code in (400, 422)
    assert "rækker færdige" not in response.get_data(as_text=True)
    assert count(app, Subscriber) == 0


def test_a_file_with_crlf_nul_and_a_huge_cell_is_refused_before_any_progress(admin, app):
    hostile = (
        b"email,name\r\nok@kommune.dk,Anna\r\n"
        + b"lang@kommune.dk,"
        + b"x" * 100_000
        # Past the first 64 KB, so the file is read as text and the line named.
        + b"\r\nnul@kommune.dk,A\x00B\r\n"
    )
    response = upload(admin, hostile, mode="enrol", basis=BASIS, dry_run="")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Linje 3:" in page and "Linje 4:" in page
    assert "rækker færdige" not in page
    assert count(app, Subscriber) == 0


@pytest.mark.e2e
def test_ten_thousand_rows_import_at_once_and_the_second_time_change_nothing(admin, app):
    rows = "".join(
        f"person{n:05d}@kommune.dk,Person {n},Aarhus,medarbejder\n" for n in range(10_000)
    )
    content = ("email,name,municipality,role\n" + rows).encode()
    first = upload(admin, content, mode="enrol", basis="Medarbejdere", dry_run="")
    assert "Tilmeldt: 10000" in first.get_data(as_text=True)
    second = upload(admin, content, mode="enrol", basis="Medarbejdere", dry_run="")
    assert "Allerede tilmeldt, uændret: 10000" in second.get_data(as_text=True)
    assert count(app, Subscriber) == 10_000
    assert count(app, ConsentEvent) == 10_000


def test_suppressed_addresses_are_left_out_of_an_import(admin, app):
    with app.app_context():
        suppression.suppress("borgmester@kk.dk", SuppressionReason.ERASURE, keep_address=False)
        db.session.commit()
    response = upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="")
    page = response.get_data(as_text=True)
    assert "Tilmeldt: 2" in page
    assert "fordi de står på spærrelisten: 1" in page
    assert subscriber_id(app, "borgmester@kk.dk") is None


# --------------------------------------------------------------------------- export


def test_the_csv_export_defuses_formulas_and_is_audited(admin, app):
    hostile = (
        "email,name,municipality,role\n"
        'formel@kommune.dk,=1+1,Aarhus,"=HYPERLINK(""http://evil.example"",""klik"")"\n'
        "minus@kommune.dk,-2+3,Aarhus,@SUM(A1)\n"
    )
    upload(admin, hostile.encode(), mode="enrol", basis=BASIS, dry_run="")
    response = post_form(
        admin, "/staff/subscribers/export", {"newsletter": "bestyrelse"},
        page="/staff/subscribers/export",
    )  # fmt: skip
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    body = response.get_data()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    cells = [cell for row in rows[1:] for cell in row[:4]]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells
    assert '\'=HYPERLINK("http://evil.example","klik")' in cells
    assert ("subscribers.export", "newsletter:bestyrelse") in audit_actions(app)


def test_the_csv_export_streams_in_address_order(admin, app, monkeypatch):
    from newsletters.subscriptions import importing

    monkeypatch.setattr(importing, "EXPORT_BATCH", 7)  # many chunks, and a short last one
    addresses = confirmed_audience(app, 30)
    token = csrf_token(admin.get("/staff/subscribers/export").data)
    response = admin.post(
        "/staff/subscribers/export",
        data={"csrf_token": token, "newsletter": "bestyrelse"},
        buffered=False,
    )
    assert response.status_code == 200
    assert response.is_streamed
    chunks = list(response.response)
    assert len(chunks) >= 1 + 1 + 30 // 7  # the BOM, the header, the rows in chunks
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))
    assert rows[0] == ["email", "name", "municipality", "role", "confirmed_at"]
    assert [r[0] for r in rows[1:]] == sorted(addresses)
    response.close()


def test_the_export_sends_its_header_before_the_query_and_reads_in_batches(app, monkeypatch):
    from sqlalchemy import event

    from newsletters.subscriptions import importing

    monkeypatch.setattr(importing, "EXPORT_BATCH", 10)
    confirmed_audience(app, 25)
    with app.app_context():
        statements: list[tuple[str, dict]] = []

        def seen(conn, cursor, statement, parameters, context, executemany):
            statements.append((statement, context.execution_options if context else {}))

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            lines = importing.export_confirmed("bestyrelse")
            assert next(lines).startswith('"email","name"')
            assert not [s for s, _ in statements if "subscriptions" in s]
            rest = list(lines)
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        assert [len(chunk.splitlines()) for chunk in rest] == [10, 10, 5]
        (options,) = [o for s, o in statements if "subscriptions" in s]
        assert options.get("yield_per") == 10


def test_the_exports_memory_does_not_grow_with_the_list(app):
    """Reading the export of 20 000 subscribers holds no more (Python) memory than of
    2 000: rows are read and handed on in batches, never all at once."""
    import tracemalloc

    from newsletters.subscriptions import importing

    confirmed_audience(app, 2_000, prefix="small")
    confirmed_audience(app, 20_000, slug="momentum", prefix="large")

    def peak(slug: str) -> tuple[int, int]:
        with app.app_context():
            tracemalloc.start()
            try:
                lines = sum(chunk.count("\n") for chunk in importing.export_confirmed(slug))
                return lines, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    peak("bestyrelse")  # warm: the first run compiles and caches the statements
    small_lines, small = peak("bestyrelse")
    large_lines, large = peak("momentum")
    assert (small_lines, large_lines) == (2_001, 20_001)
    assert large < small * 2 + 512 * 1024, (small, large)


def test_a_get_on_the_export_downloads_nothing(admin, app):
    response = admin.get("/staff/subscribers/export")
    assert response.mimetype == "text/html"
    assert not [a for a in audit_actions(app) if a[0] == "subscribers.export"]


# --------------------------------------------------------------------------- data protection


def _person_with_everything(app: Flask, email: str = "borgmester@aarhus.dk") -> int:
    """A subscriber with subscriptions, consent, a delivery, a bounce, mails, a pending
    intake row and a suppression entry: something in every table that can hold them."""
    with app.app_context():
        intake.accept_subscribe_request(
            email=email, slugs=["momentum"], ctx=consent.RequestContext(ip="192.0.2.7")
        )
        intake.process_subscribe_requests("test")
        sid = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        newsletter = newsletter_by_slug("bestyrelse")
        subscriber = db.session.get(Subscriber, sid)
        enrolment.enrol(subscriber, newsletter, basis=BASIS, ctx=consent.RequestContext())
        mails.queue_welcome(subscriber, newsletter, basis=BASIS)
        db.session.commit()
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
        from newsletters.bounces.processing import record_bounce

        delivery_id = db.session.scalar(select(Delivery.id).where(Delivery.subscriber_id == sid))
        record_bounce(sid, BounceKind.HARD, status="5.1.1", delivery_id=delivery_id)
        db.session.commit()
        # A second subscribe form, posted but not yet carried out.
        intake.accept_subscribe_request(
            email=email, slugs=["kl-nyheder"], ctx=consent.RequestContext()
        )
        db.session.remove()
    return sid


def _traces(app: Flask, email: str, sid: int) -> list[str]:
    """Every table row that still holds the address or points at the subscriber."""
    found = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, str) and email in value.lower():
                        found.append(f"{table.name}.{column}")
                    if column == "subscriber_id" and value == sid:
                        found.append(f"{table.name}.{column}")
                    if table.name == "subscribers" and column == "id" and value == sid:
                        found.append("subscribers.id")
        db.session.remove()
    return found


def test_the_json_export_holds_everything_and_is_audited(admin, app):
    sid = _person_with_everything(app)
    response = post_form(
        admin, f"/staff/subscribers/{sid}/data.json", page=f"/staff/subscribers/{sid}"
    )
    assert response.status_code == 200
    data = json.loads(response.get_data(as_text=True))
    assert data["email"] == "borgmester@aarhus.dk"
    assert {s["newsletter"] for s in data["subscriptions"]} == {"momentum", "bestyrelse"}
    assert data["editions_received"][0]["subject"]
    assert data["bounces"][0]["status"] == "5.1.1"
    assert data["suppressed"] is True
    assert ("subscriber.export", f"subscriber:{sid}") in audit_actions(app)


def test_erasure_from_the_staff_pages_leaves_nothing_behind(admin, app):
    sid = _person_with_everything(app)
    assert _traces(app, "borgmester@aarhus.dk", sid)  # the check can see them
    response = post_form(
        admin, f"/staff/subscribers/{sid}/erase", {"understood": "y"},
        page=f"/staff/subscribers/{sid}/erase",
    )  # fmt: skip
    assert response.status_code == 303
    assert _traces(app, "borgmester@aarhus.dk", sid) == []
    # The hard bounce's suppression stays, as a code only.
    with app.app_context():
        entry = db.session.scalar(select(Suppression))
        assert entry.email is None and suppression.is_suppressed("borgmester@aarhus.dk")
    assert ("subscriber.erase", f"subscriber:{sid}") in audit_actions(app)


def test_erasure_without_asking_for_no_mail_lets_the_person_come_back(app):
    with app.app_context():
        intake.accept_subscribe_request(
            email="ny@kommune.dk", slugs=["momentum"], ctx=consent.RequestContext()
        )
        intake.process_subscribe_requests("test")
        sid = db.session.scalar(select(Subscriber.id))
        erasure.erase(sid)
        assert not suppression.is_suppressed("ny@kommune.dk")
        assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_an_erased_person_who_asked_never_to_be_mailed_gets_no_mail_from_any_door(admin, app):
    sid = _person_with_everything(app, "aldrig@kommune.dk")
    with app.app_context():
        db.session.execute(update(Suppression).values(reason=SuppressionReason.MANUAL))
        db.session.execute(text("DELETE FROM suppressions"))
        db.session.commit()
    post_form(
        admin, f"/staff/subscribers/{sid}/erase", {"understood": "y", "never_again": "y"},
        page=f"/staff/subscribers/{sid}/erase",
    )  # fmt: skip
    assert _traces(app, "aldrig@kommune.dk", sid) == []
    with app.app_context():
        entry = db.session.scalar(select(Suppression))
        assert (entry.email, entry.reason) == (None, SuppressionReason.ERASURE)
        # The public form: accepted as always (no enumeration), but nothing happens.
        before = db.session.scalar(select(func.count()).select_from(OutboxMessage))
        intake.accept_subscribe_request(
            email="Aldrig@Kommune.dk", slugs=["momentum"], ctx=consent.RequestContext()
        )
        intake.process_subscribe_requests("test")
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == before
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
        db.session.remove()
    # An import leaves the address out.
    report = upload(admin, b"email\naldrig@kommune.dk\n", dry_run="")
    assert "fordi de står på spærrelisten: 1" in report.get_data(as_text=True)


def test_the_preference_centre_can_erase_and_ask_never_to_be_mailed(client, app):
    from newsletters.subscriptions import links

    sid = _person_with_everything(app, "selv@kommune.dk")
    with app.app_context():
        url = links.manage_url(db.session.get(Subscriber, sid))
        path = url.split("localhost", 1)[1] + "/delete"
        db.session.remove()
    token = csrf_token(client.get(path).data)
    response = client.post(path, data={"csrf_token": token, "understood": "y", "never_again": "y"})
    assert response.status_code == 200
    assert _traces(app, "selv@kommune.dk", sid) == []
    with app.app_context():
        assert suppression.is_suppressed("selv@kommune.dk")


# --------------------------------------------------------------------------- suppressions


def test_staff_see_and_lift_suppression_entries(admin, app):
    confirmed_audience(app, 2)
    with app.app_context():
        sid = db.session.scalar(
            select(Subscriber.id).where(Subscriber.email == "m00000@example.dk")
        )
        from newsletters.bounces.processing import record_bounce

        record_bounce(sid, BounceKind.HARD, status="5.1.1", diagnostic="user unknown")
        suppression.suppress("gammel@kommune.dk", SuppressionReason.ERASURE, keep_address=False)
        db.session.commit()
        entry_id = db.session.scalar(
            select(Suppression.id).where(Suppression.email == "m00000@example.dk")
        )
    page = admin.get("/staff/suppressions").get_data(as_text=True)
    assert "m00000@example.dk" in page and "Hårdt bounce" in page
    assert "(slettet: kun en kode gemmes)" in page
    # Finding a hash-only entry by its full address.
    found = admin.get("/staff/suppressions?q=Gammel@kommune.dk").get_data(as_text=True)
    assert "Poster: 1" in found
    response = post_form(admin, f"/staff/suppressions/{entry_id}/lift", page="/staff/suppressions")
    assert response.status_code == 303
    assert count(app, Suppression) == 1
    with app.app_context():
        assert db.session.get(Subscriber, sid).hard_bounced_at is None
    assert ("suppression.lift", f"suppression:{entry_id}") in audit_actions(app)


# --------------------------------------------------------------------------- audit


def test_every_staff_action_writes_an_audit_entry(admin, app):
    from tests.test_editor import compose_data

    confirmed_audience(app, 2)
    base = "/staff"
    post_form(admin, f"{base}/newsletters/bestyrelse/editions/new", compose_data())
    with app.app_context():
        from newsletters.editions.models import Edition

        edition_id = db.session.scalar(select(Edition.id))
    e = f"{base}/editions/{edition_id}"
    post_form(admin, f"{e}/edit", compose_data(subject="Ny titel"))
    post_form(admin, f"{e}/test", {"addresses": ""}, page=e)
    post_form(admin, f"{e}/schedule", {"scheduled_at": "2099-01-05T09:30"}, page=f"{e}/send")
    post_form(admin, f"{e}/unschedule", page=e)
    post_form(admin, f"{e}/send", page=f"{e}/send")
    post_form(admin, f"{e}/pause", page=f"{e}/progress")
    post_form(admin, f"{e}/resume", page=f"{e}/progress")
    post_form(admin, f"{e}/cancel", page=f"{e}/cancel")
    post_form(
        admin, f"{base}/users/new",
        {"email": "ny@kl.dk", "name": "Ny", "role": "editor",
         "password": "et-langt-kodeord-til-test", "password_again": "et-langt-kodeord-til-test"},
    )  # fmt: skip
    with app.app_context():
        from newsletters.staff.models import Staff

        new_id = db.session.scalar(select(Staff.id).where(Staff.email == "ny@kl.dk"))
    post_form(admin, f"{base}/users/{new_id}/deactivate", page=f"{base}/users")
    post_form(admin, f"{base}/users/{new_id}/activate", page=f"{base}/users")
    settings = f"{base}/newsletters/momentum/settings"
    post_form(
        admin, settings,
        {"name": "Momentum", "description_da": "Om kommunerne", "cadence_da": "Ugentlig",
         "position": "2", "is_public": "y"},
    )  # fmt: skip
    actions = audit_actions(app)
    target = f"edition:{edition_id}"
    for action in [
        "edition.create", "edition.save", "edition.test_send", "edition.schedule",
        "edition.unschedule", "edition.send", "edition.pause", "edition.resume",
        "edition.cancel",
    ]:  # fmt: skip
        assert (action, target) in actions, (action, actions)
    for action in ["staff.create", "staff.deactivate", "staff.activate"]:
        assert (action, f"staff:{new_id}") in actions, (action, actions)
    assert ("newsletter.settings", "newsletter:momentum") in actions
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "edition.send"))
        assert entry.actor_email == ADMIN and entry.ip == "127.0.0.1"
        assert json.loads(entry.details) == {"recipients": 2}

    page = admin.get("/staff/audit?action=edition.pause").get_data(as_text=True)
    assert "edition.pause" in page and "edition.resume</code>" not in page
    assert "Poster: 1" in page


def test_the_audit_log_cannot_be_changed(app):
    with app.app_context():
        db.session.add(AuditEntry(action="test.entry", actor_email="", target="", details="{}"))
        db.session.commit()
        with pytest.raises(Exception, match="append-only"):
            db.session.execute(update(AuditEntry).values(action="tampered"))
            db.session.flush()
        db.session.rollback()
        if db.engine.dialect.name == "postgresql":
            with pytest.raises(Exception, match="append-only"):
                db.session.execute(text("DELETE FROM audit_log"))
            db.session.rollback()
        assert db.session.scalar(select(AuditEntry.action)) == "test.entry"


def test_the_cli_import_is_audited_as_the_operator(app, runner, tmp_path):
    path = tmp_path / "mayors.csv"
    path.write_text(MAYORS)
    result = runner.invoke(
        args=["subscribers", "import", str(path), "--newsletter", "bestyrelse", "--basis", BASIS]
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry))
        assert (entry.action, entry.actor_id, entry.actor_email) == ("subscribers.import", None, "")


# --------------------------------------------------------------------------- purge


def test_purge_pending_deletes_only_stale_unconfirmed_subscriptions(app, runner):
    with app.app_context():
        for email, slugs in [("gammel@kommune.dk", ["momentum"]), ("ny@kommune.dk", ["momentum"])]:
            intake.accept_subscribe_request(email=email, slugs=slugs, ctx=consent.RequestContext())
        intake.process_subscribe_requests("test")
        confirmed = db.session.scalar(select(Subscriber).where(Subscriber.email == "ny@kommune.dk"))
        enrolment.enrol(
            confirmed, newsletter_by_slug("bestyrelse"), basis=BASIS,
            ctx=consent.RequestContext(),
        )  # fmt: skip
        db.session.commit()
        long_ago = utcnow() - timedelta(days=40)
        db.session.execute(update(Subscription).values(requested_at=long_ago))
        db.session.commit()
        db.session.remove()
    result = runner.invoke(args=["subscribers", "purge-pending"])
    assert result.exit_code == 0, result.output
    assert "purged 2 pending subscription(s)" in result.output
    assert "1 subscriber(s) left with none" in result.output
    with app.app_context():
        left = db.session.execute(
            select(Subscriber.email, Subscription.status).join(Subscription)
        ).all()
        assert left == [("ny@kommune.dk", SubscriptionStatus.CONFIRMED)]
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.to_address == "gammel@kommune.dk")) == 0  # fmt: skip


def test_purge_pending_keeps_recent_requests(app, runner):
    with app.app_context():
        intake.accept_subscribe_request(
            email="frisk@kommune.dk", slugs=["momentum"], ctx=consent.RequestContext()
        )
        intake.process_subscribe_requests("test")
    result = runner.invoke(args=["subscribers", "purge-pending", "--days", "30"])
    assert "purged 0 pending" in result.output
    assert count(app, Subscription) == 1


# --------------------------------------------------------------------------- welcome letter


def _join_links(raw: str) -> dict[str, str]:
    """Newsletter name -> one-click link, from a welcome letter's plain-text part."""
    import email as email_lib
    import re

    message = email_lib.message_from_string(raw)
    text = next(
        p.get_payload(decode=True).decode()
        for p in message.walk()
        if p.get_content_type() == "text/plain"
    ).replace("\r\n", "\n")
    found = {}
    for name, url in re.findall(r"^(.+?): .*\n.*?: (http://localhost/join/\S+)$", text, re.M):
        found[name] = url
    return found


def test_the_welcome_letter_goes_once_to_each_enrolled_person_with_join_links(admin, app):
    upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="")
    # Someone who joined by double opt-in is not "enrolled": no letter.
    confirmed_audience(app, 1, prefix="frivillig")
    page = "/staff/newsletters/bestyrelse/welcome-letter"
    assert "Send velkomstbrevet" not in admin.get(page).get_data(as_text=True)
    response = post_form(
        admin, page, {"subject": "Velkommen, borgmester", "body": "Kære borgmester\n\n**Tillykke**"}
    )
    assert response.status_code == 303
    assert "Tilmeldte, der ikke har fået brevet" in admin.get(page).get_data(as_text=True)
    response = post_form(admin, f"{page}/send", page=page)
    assert response.status_code == 303
    with app.app_context():
        letters = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "welcome_letter")
        ).all()
        assert sorted(m.to_address for m in letters) == [
            "borgmester@aarhus.dk", "borgmester@aeroe.dk", "borgmester@kk.dk"
        ]  # fmt: skip
        raw = letters[0].raw
        db.session.remove()
    assert "Velkommen, borgmester" in raw and "List-Unsubscribe:" in raw
    offers = _join_links(raw)
    assert set(offers) == {"KL's daglige nyhedsbreve", "Momentum", "Danske Kommuner"}
    # A second send goes to nobody.
    post_form(admin, f"{page}/send", page=page)
    assert count(app, OutboxMessage, OutboxMessage.kind == "welcome_letter") == 3
    assert [a for a in audit_actions(app) if a[0].startswith("welcome_letter")] == [
        ("welcome_letter.save", "newsletter:bestyrelse"),
        ("welcome_letter.send", "newsletter:bestyrelse"),
        ("welcome_letter.send", "newsletter:bestyrelse"),
    ]


def test_a_join_link_shows_a_button_and_only_the_post_subscribes(admin, app):
    upload(admin, MAYORS.encode(), mode="enrol", basis=BASIS, dry_run="")
    page = "/staff/newsletters/bestyrelse/welcome-letter"
    post_form(admin, page, {"subject": "Velkommen", "body": "Tekst"})
    post_form(admin, f"{page}/send", page=page)
    with app.app_context():
        raw = db.session.scalar(
            select(OutboxMessage).where(OutboxMessage.to_address == "borgmester@aarhus.dk")
        ).raw
        db.session.remove()
    path = _join_links(raw)["Momentum"].removeprefix("http://localhost")
    visitor = app.test_client()
    shown = visitor.get(path)
    assert shown.status_code == 200
    assert "Ja, tilmeld mig" in shown.get_data(as_text=True)
    sid = subscriber_id(app, "borgmester@aarhus.dk")
    momentum = newsletter_by_slug
    with app.app_context():
        momentum_id = momentum("momentum").id
    assert count(app, Subscription, Subscription.newsletter_id == momentum_id) == 0
    token = csrf_token(shown.data)
    done = visitor.post(path, data={"csrf_token": token})
    assert done.status_code == 200
    assert "Tak, nu er du tilmeldt" in done.get_data(as_text=True)
    with app.app_context():
        subscription = db.session.scalar(
            select(Subscription).where(
                Subscription.subscriber_id == sid, Subscription.newsletter_id == momentum_id
            )
        )
        assert subscription.status is SubscriptionStatus.CONFIRMED
        methods = db.session.execute(
            select(ConsentEvent.action, ConsentEvent.method).where(
                ConsentEvent.subscription_id == subscription.id
            )
        ).all()
        assert {(a.value, m) for a, m in methods} == {
            ("requested", "welcome-link"), ("confirmed", "welcome-link")
        }  # fmt: skip
        db.session.remove()
    # Twice is harmless; a tampered link gets a clear page.
    assert visitor.post(path, data={"csrf_token": token}).status_code == 200
    assert visitor.get(path[:-3] + "xyz").status_code == 400
    # A join link is no confirm link.
    assert visitor.get(path.replace("/join/", "/confirm/")).status_code == 400


def test_an_expired_join_link_subscribes_nobody(make_app):
    app = make_app(JOIN_MAX_AGE_DAYS=-1)
    with app.app_context():
        subscriber = Subscriber(email="borgmester@aarhus.dk")
        db.session.add(subscriber)
        db.session.commit()
        from newsletters.subscriptions import links

        path = links.join_url(subscriber, newsletter_by_slug("momentum").id)
        path = path.removeprefix("http://localhost")
    assert app.test_client().get(path).status_code == 410
    assert count(app, Subscription) == 0


def test_sending_the_welcome_letter_is_rate_limited(make_app):
    app = make_app(RATELIMIT_WELCOME_LETTER="1 per hour")
    client = app.test_client()
    make_staff(app, ADMIN, "admin")
    login(client, ADMIN)
    page = "/staff/newsletters/bestyrelse/welcome-letter"
    post_form(client, page, {"subject": "Velkommen", "body": "Tekst"})
    assert post_form(client, f"{page}/send", page=page).status_code == 303
    assert post_form(client, f"{page}/send", page=page).status_code == 429


def test_the_worker_purges_stale_pending_subscriptions_once_a_day(app, monkeypatch):
    from newsletters import worker

    daily = [job for job in worker.JOBS if isinstance(job, worker._Daily)]
    assert [job.job for job in daily] == [worker._purge_pending]
    runs = []
    job = worker._Daily(lambda: runs.append(1))
    clock = [1000.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: clock[0])
    assert job("w") is False and runs == [1]
    clock[0] += 3600
    job("w")
    assert runs == [1]
    clock[0] += 86400
    job("w")
    assert runs == [1, 1]


def test_staff_add_an_address_to_the_suppression_list_and_its_next_send_leaves_it_out(admin, app):
    addresses = confirmed_audience(app, 3)
    response = post_form(admin, "/staff/suppressions", {"email": "ikke-en-adresse", "note": ""})
    assert response.status_code == 422
    assert "Indtast en gyldig e-mailadresse" in response.get_data(as_text=True)
    response = post_form(
        admin, "/staff/suppressions", {"email": addresses[1].upper(), "note": "Ringede"}
    )
    assert response.status_code == 303
    with app.app_context():
        entry = db.session.scalar(select(Suppression))
        assert (entry.email, entry.reason, entry.note) == (
            addresses[1], SuppressionReason.MANUAL, "Ringede"
        )  # fmt: skip
        db.session.remove()
    assert ("suppression.add", f"suppression:{entry.id}") in audit_actions(app)
    edition_id = draft(app)
    with app.app_context():
        assert sending.start_send(edition_id) == 2
