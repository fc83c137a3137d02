"""HTML validity of every page the browser tests visit, by the Nu Html Checker (vnu.jar,
the W3C's validator, from npm's `vnu-jar`, run on the machine's Java).

Why vnu and not a Python parser: html5lib's strict mode reports parse errors only, while
vnu also checks the content models, attributes and references the browser tolerates
silently: duplicate ids, a label whose `for` names no control, `aria-*` pointing at
nothing, elements where they may not stand. It runs once per session as a small HTTP
service on loopback (started in the background while Chromium starts), and then checks
a page in a few milliseconds, so each test fails on its own pages.

The HTML part of a mail (shown in the editor's preview frame) is checked too, except for
the presentational table attributes and `mso-` styles that Outlook needs
(`cellpadding`, `border`, `mso-hide`...), which HTML5 calls obsolete or unknown.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VNU_JAR = ROOT / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
START_TIMEOUT_SECONDS = 180.0

# The mail HTML's layout attributes for Outlook (email/layout.html): obsolete in HTML5,
# deliberate in a mail.
MAIL_LAYOUT_MESSAGES = ("is obsolete", "Use CSS instead", "CSS: “mso-")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HtmlChecker:
    """The Nu Html Checker as a service on loopback."""

    def __init__(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError(
                "the HTML validity check needs Java: apt-get install default-jre-headless"
            )
        if not VNU_JAR.is_file():
            raise RuntimeError(f"{VNU_JAR} is missing: run `make assets` (npm ci)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/?out=json"
        self._process = subprocess.Popen(  # noqa: S603
            [
                java,
                "-Xss8m",  # the schema's recursive patterns need more than the default stack
                "-Dnu.validator.servlet.bind-address=127.0.0.1",
                "-cp",
                str(VNU_JAR),
                "nu.validator.servlet.Main",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ready = False

    def _wait_until_ready(self) -> None:
        if self._ready:
            return
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("the Nu Html Checker (vnu.jar) stopped at start-up")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    self._ready = True
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the Nu Html Checker (vnu.jar) did not start in time")

    def errors(self, html: bytes, *, mail: bool = False) -> list[str]:
        """The checker's errors for one document, each as 'line N: message: extract'."""
        self._wait_until_ready()
        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.url, data=html, headers={"Content-Type": "text/html; charset=utf-8"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            messages = json.load(response)["messages"]
        found = []
        for m in messages:
            if m.get("type") not in ("error", "non-document-error"):
                continue
            if mail and any(text in m.get("message", "") for text in MAIL_LAYOUT_MESSAGES):
                continue
            extract = " ".join(m.get("extract", "").split())
            found.append(f"line {m.get('lastLine', '?')}: {m.get('message')}  [{extract}]")
        return found

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()


@dataclass
class VisitedDocuments:
    """The HTML documents a browser context received (pages and frames), for the check."""

    base_url: str
    documents: list[tuple[str, bytes]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def watch(self, context: Any) -> None:
        context.on("response", self._response)

    def _response(self, response: Any) -> None:
        if response.request.resource_type != "document":
            return
        if not response.url.startswith(self.base_url):
            return
        if not response.headers.get("content-type", "").startswith("text/html"):
            return
        if 300 <= response.status < 400:
            return
        try:
            body = response.body()
        except Exception:  # noqa: BLE001 (a download or an aborted navigation has none)
            return
        self.documents.append((response.url, body))

    def problems(self, checker: HtmlChecker) -> list[str]:
        """Each distinct error once, with the pages (paths) where it was found."""
        where: dict[str, list[str]] = {}
        checked: set[bytes] = set()
        for url, body in self.documents:
            if body in checked:
                continue
            checked.add(body)
            path = url[len(self.base_url) :] or "/"
            mail = "/preview.html" in path or (path.startswith("/dev/mail/") and ".html" in path)
            for error in checker.errors(body, mail=mail):
                pages = where.setdefault(error, [])
                if path not in pages:
                    pages.append(path)
        return [f"{', '.join(pages)}:\n    {error}" for error, pages in where.items()]
