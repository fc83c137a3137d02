"""Every stored code that a page shows has words in Danish (and English): one label map
per code set (newsletters/labels.py), complete, and used by the pages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale

from newsletters import labels
from newsletters.bounces.models import BounceKind
from newsletters.catalog.models import DigestCadence, DigestMode
from newsletters.editions.models import DeliveryStatus, EditionStatus
from newsletters.mailing.models import OutboxStatus
from newsletters.staff.models import StaffRole
from newsletters.subscriptions.models import ConsentAction, SubscriptionStatus, SuppressionReason
from tests.test_admin import _person_with_everything, admin  # noqa: F401 (fixture)

PACKAGE = Path(labels.__file__).resolve().parent

ENUMS = [
    (SubscriptionStatus, "subscription_status"),
    (ConsentAction, "consent_action"),
    (EditionStatus, "edition_status"),
    (DeliveryStatus, "delivery_status"),
    (OutboxStatus, "outbox_status"),
    (BounceKind, "bounce_kind"),
    (SuppressionReason, "suppression_reason"),
    (StaffRole, "staff_role"),
    (DigestMode, "digest_mode"),
    (DigestCadence, "digest_cadence"),
]


def _calls(names: set[str], keywords: set[str] = frozenset()) -> set[str]:
    """String constants passed to calls of `names` (positionally, in any branch of a
    conditional) or as one of `keywords`, anywhere in the package's code."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            values = list(node.args) if name in names else []
            values += [k.value for k in node.keywords if k.arg in keywords]
            for value in values:
                for sub in ast.walk(value):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        found.add(sub.value)
    return found


def _missing(kind: str, codes: set[str]) -> list[str]:
    return sorted(code for code in codes if code not in labels.LABELS[kind])


@pytest.mark.parametrize(("enum", "kind"), ENUMS, ids=[k for _, k in ENUMS])
def test_every_value_of_every_enum_has_a_label(enum, kind):
    assert _missing(kind, {m.value for m in enum}) == [], f"add them to labels.{kind.upper()}"


def test_every_audit_action_in_the_code_has_a_label():
    actions = {
        s
        for s in _calls(
            {"audit", "record", "record_now", "audit_record_now", "_after_save", "announce"}
        )
        if re.fullmatch(r"[a-z_]+\.[a-z_]+", s)
    }
    # Few left: most actions are announced as events (the next test).
    assert len(actions) > 5  # the search sees the calls
    assert _missing("audit_action", actions) == [], "add them to labels.AUDIT_ACTION"


def test_every_audited_event_in_the_code_has_a_label():
    """`events.announce(name, ...)` writes an audit entry unless told `audited=False`."""
    actions: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            quiet = any(
                k.arg == "audited" and isinstance(k.value, ast.Constant) and k.value.value is False
                for k in node.keywords
            )
            if name != "announce" or quiet:
                continue
            for sub in ast.walk(node.args[0]):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    actions.add(sub.value)
    assert {"edition.send", "edition.finished", "feed.enable", "feed.disable"} <= actions
    assert len(actions) > 15  # the search sees the calls
    assert _missing("audit_action", actions) == [], "add them to labels.AUDIT_ACTION"


def test_every_consent_method_in_the_code_has_a_label():
    methods = {
        s
        for s in _calls({"_ctx"}, {"method"})
        if re.fullmatch(r"[a-z_-]+", s) and s not in ("GET", "POST")
    }
    assert {"web_form", "confirm_link", "one_click", "import_basis"} <= methods
    assert _missing("consent_method", methods) == [], "add them to labels.CONSENT_METHOD"


def test_every_kind_of_outbox_mail_has_a_label():
    kinds = {s for s in _calls(set(), {"kind"}) if re.fullmatch(r"[a-z_]+", s)}
    kinds -= {"csrf", "http", "busy"}  # the error page's kinds, not mail
    assert {"confirm", "welcome"} <= kinds
    assert _missing("mail_kind", kinds) == [], "add them to labels.MAIL_KIND"


def test_labels_are_in_the_readers_language(app: Flask):
    with app.test_request_context():
        with force_locale("da"):
            assert labels.label("web_form", "consent_method") == (
                "Tilmeldingsformularen på hjemmesiden"
            )
            assert labels.label(EditionStatus.SENT, "edition_status") == "Sendt"
        with force_locale("en"):
            assert labels.label("web_form", "consent_method") == "Subscribe form on the website"
        # A code from a newer version (or a foreign row) is shown as it is, never a 500.
        assert labels.label("something_new", "consent_method") == "something_new"


def test_the_subscriber_page_shows_no_raw_codes(admin: FlaskClient, app: Flask):  # noqa: F811
    sid = _person_with_everything(app)
    page = admin.get(f"/staff/subscribers/{sid}").get_data(as_text=True)
    assert "Tilmeldingsformularen på hjemmesiden" in page  # the "How" column
    assert "Hård" in page  # the bounce
    for code in ("web_form", "confirm_link", "import_basis", "queued", "captured", "hard<"):
        assert code not in page, code


def test_the_audit_log_names_actions_in_danish(admin: FlaskClient, app: Flask):  # noqa: F811
    sid = _person_with_everything(app)
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        admin.get(f"/staff/subscribers/{sid}").get_data(as_text=True),
    ).group(1)
    assert admin.post(f"/staff/subscribers/{sid}/data.json", data={"csrf_token": token}).is_json
    page = admin.get("/staff/audit").get_data(as_text=True)
    assert "En abonnents data hentet" in page
    assert ">subscriber.export<" not in page
    assert '<option value="subscriber.export">En abonnents data hentet</option>' in page
