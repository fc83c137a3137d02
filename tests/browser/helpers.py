"""Helpers for the browser tests: finding Chromium, axe-core, mail links, app state."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pyotp
from flask import Flask
from sqlalchemy import select

from newsletters import timeutil
from newsletters.extensions import db
from newsletters.staff import services as staff_services
from newsletters.staff.twofactor import sealing
from newsletters.subscriptions.models import Subscriber
from tests.support.live import LiveServer
from tests.support.smtp import ReceivedMail, SMTPServer

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DKFDS_DIST = ROOT / "node_modules" / "dkfds" / "dist"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Fail fast: every page here comes from loopback.
TIMEOUT_MS = 5_000

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = {"serious", "critical"}

# The subscribe form's field names are a public contract (other sites copy the form).
NEWSLETTER_SLUGS = ("bestyrelse", "kl-nyheder", "momentum", "danske-kommuner")


# --------------------------------------------------------------------------- Chromium


def chromium_path() -> tuple[str | None, str]:
    """The Chromium to drive, or None and the reason why not."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured, ""
        return None, (
            f"CHROMIUM_PATH={configured} is not an executable file "
            "(unset it to use /usr/bin/chromium, which scripts/ensure-chromium installs)"
        )
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate, ""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found, ""
    return None, (
        "no Chromium found ($CHROMIUM_PATH, /usr/bin/chromium, /usr/bin/chromium-browser): "
        "run scripts/ensure-chromium, or set CHROMIUM_PATH"
    )


class PageProblems:
    """Console errors, uncaught exceptions and failed sub-resources seen by a page
    (a stylesheet or font refused by the Content-Security-Policy shows up here)."""

    def __init__(self, page: Any) -> None:
        self.messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.messages.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        # "Failed to load resource" is also logged for pages answering 4xx on purpose and
        # for the browser's own /favicon.ico; failed sub-resources are caught in _response.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.messages.append(f"console error: {message.text}")

    def _failed(self, request: Any) -> None:
        # A download is handed over to the download machinery, which "aborts" the request.
        if request.resource_type != "document":
            self.messages.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response: Any) -> None:
        # Pages may answer 4xx on purpose (422, 404); their sub-resources must all load.
        if response.request.resource_type != "document" and response.status >= 400:
            self.messages.append(f"HTTP {response.status} for {response.url}")

    def assert_none(self) -> None:
        assert not self.messages, "problems in the browser:\n" + "\n".join(self.messages)


# --------------------------------------------------------------------------- axe-core


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now (the context needs bypass_csp=True)."""
    assert AXE_JS.is_file(), f"{AXE_JS} is missing: run `make assets` (npm ci)"
    page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {
                runOnly: {type: 'tag', values: tags},
                resultTypes: ['violations'],  // fewer details on passes: twice as fast
            });
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html,
                                          summary: n.failureSummary || ''})),
            }));
        }""",
        AXE_TAGS,
    )


def format_violations(label: str, violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{label}: [{v['impact']}] {v['id']}: {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            lines.append(f"    {node['target']}  {node['html'][:160]}")
            lines.extend(f"        {line}" for line in node["summary"].splitlines())
    return "\n".join(lines)


class AxeAudit:
    """axe-core results for several pages; fails once, listing every problem found."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.audited: list[str] = []

    def check(self, page: Any, label: str) -> None:
        violations = axe_violations(page)
        self.audited.append(label)
        where = f"{label} ({page.url})"
        serious = [v for v in violations if v["impact"] in FAILING_IMPACTS]
        other = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
        if serious:
            self.failures.append(format_violations(where, serious))
        if other:
            self.notes.append(format_violations(where, other))

    def assert_clean(self) -> None:
        if self.notes:
            # Not failures; shown with the test's output (pytest -rP, or on failure).
            print("axe-core, moderate or minor:\n" + "\n".join(self.notes))
        assert not self.failures, "axe-core found serious or critical violations:\n" + "\n".join(
            self.failures
        )


# --------------------------------------------------------------------------- forms, app, mail

# The subscribe form's field names are the public contract, so tests find fields by them.
SUBMIT = "main form[method=post] button[type=submit]"


def fill_subscribe_form(
    page: Any, *, email: str, name: str = "", municipality: str = "", slugs=()
) -> None:
    page.fill("#email", email)
    if name:
        page.fill("#name", name)
    if municipality:
        page.select_option("#municipality", municipality)
    for slug in slugs:
        page.check(f"input[name=newsletters][value='{slug}']")


def submit(page: Any, selector: str = SUBMIT) -> Any:
    """Press a submit button; the response of the page it leads to."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    return navigation.value


# --------------------------------------------------------------------------- staff

ADMIN = "admin@kl.dk"
PASSWORD = "rigtig-hest-batteri-hæfteklamme"
# The administrator's authenticator app (administrators must have two factors).
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def make_admin(live_server: LiveServer) -> None:
    with live_server.app.app_context():
        staff = staff_services.create_staff(ADMIN, role="admin", password=PASSWORD)
        staff.totp_secret = sealing.seal(TOTP_SECRET)
        staff.totp_enabled_at = timeutil.utcnow()
        db.session.commit()
        db.session.remove()


def second_step(page: Any, secret: str = TOTP_SECRET) -> Any:
    """Type the code the app shows now (by the app's clock) on the second step's page."""
    page.fill("#code", pyotp.TOTP(secret).at(timeutil.utcnow()))
    return submit(page)


def log_in(page: Any, *, email: str = ADMIN, password: str = PASSWORD) -> Any:
    page.fill("#email", email)
    page.fill("#password", password)
    response = submit(page)
    if page.url.split("?")[0].endswith("/staff/login/code"):
        return second_step(page)
    return response


# --------------------------------------------------------------------------- subscribers


def subscribe_and_confirm(
    page: Any,
    live_server: LiveServer,
    smtp_server: SMTPServer,
    *,
    email: str,
    slugs: tuple[str, ...],
) -> None:
    """Subscribe on the front page and press the button behind the mailed confirm link."""
    page.goto("/")
    fill_subscribe_form(page, email=email, slugs=slugs)
    submit(page)
    [mail] = smtp_server.wait_for(1, address=email)
    page.goto(mail.link("/confirm/"))
    submit(page)
    state = subscriber_state(live_server.app, email)
    assert state and set(state["subscriptions"].values()) == {"confirmed"}, state


def subscriber_state(app: Flask, email: str) -> dict[str, Any] | None:
    """The stored subscriber as plain data: details and {slug: status}; None if absent."""
    with app.app_context():
        try:
            subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
            if subscriber is None:
                return None
            return {
                "name": subscriber.name,
                "municipality": subscriber.municipality,
                "locale": subscriber.locale,
                "subscriptions": {
                    s.newsletter.slug: s.status.value for s in subscriber.subscriptions
                },
            }
        finally:
            db.session.remove()


def list_unsubscribe_url(mail: ReceivedMail) -> str:
    """The https/http URL in the mail's List-Unsubscribe header."""
    header = mail.message["List-Unsubscribe"]
    assert header, "the mail has no List-Unsubscribe header"
    value = str(header).strip()
    assert value.startswith("<") and value.endswith(">"), value
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return value[1:-1]


def screenshot(page: Any, name: str) -> None:
    """Keep a full-page screenshot when $BROWSER_SCREENSHOT_DIR is set."""
    directory = os.environ.get("BROWSER_SCREENSHOT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)
