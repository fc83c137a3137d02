"""Danish wherever the product is installed (PRODUCT.md invariant 9).

Does what a deployment does: a fresh `git clone` of the repository at HEAD, installed
into a new virtual environment with `pip install .`, with `pip install -e .`, and as a
wheel (`pip wheel --no-deps`) installed and run from a directory outside the clone.
Then `flask --app wsgi db upgrade` and `seed`, the web app (`flask --app wsgi run`) and
the worker (`flask --app wsgi worker`) as processes of their own, mail to an SMTP server
on loopback. Every kind of mail (confirmation, manage link, already subscribed,
welcome, edition, digest) and the key pages are read for a Danish reader and for one who
chose English: a text the Danish catalogue translates must not show in English to the
Danish reader, and no Danish text may show to the English reader.

To stay fast the new environment reaches the test environment's installed dependencies
through a .pth file (a directory of links to them, without this package), and only the
package itself is installed, with --no-deps, the way a deployment installs it.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from babel.messages.pofile import read_po

from tests.support.browserless import HttpClient
from tests.support.feedserver import FeedServer, undated
from tests.support.pages import csrf_token
from tests.support.smtp import ReceivedMail, SMTPServer, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "newsletters" / "translations"
# The same translated text, whatever it is: too short a fragment could be a name.
MIN_FRAGMENT = 14
PLACEHOLDER = re.compile(r"%\([^)]*\)[sd]|%[sd]")


# --------------------------------------------------------------------------- the catalogue


def _fragments(text: str) -> list[str]:
    """The literal pieces of a message (placeholders cut out), long enough to be telling."""
    pieces = []
    for line in text.splitlines():
        for piece in PLACEHOLDER.split(line):
            piece = " ".join(piece.split()).strip(" .,:;()-–")
            if len(piece) >= MIN_FRAGMENT and " " in piece:
                pieces.append(piece)
    return pieces


@dataclass(frozen=True)
class Catalogue:
    english: dict[str, str]  # fragment of an msgid -> the msgid (translated differently)
    danish: dict[str, str]  # fragment of a Danish msgstr -> its msgid

    @classmethod
    def load(cls) -> Catalogue:
        with (TRANSLATIONS / "da" / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f, locale="da")
        english: dict[str, str] = {}
        danish: dict[str, str] = {}
        for message in catalog:
            if not message.id or not message.string:
                continue
            ids = [message.id] if isinstance(message.id, str) else list(message.id)
            strings = [message.string] if isinstance(message.string, str) else message.string
            id_pieces = {p for i in ids for p in _fragments(i)}
            da_pieces = {p for s in strings for p in _fragments(s)}
            for piece in id_pieces - da_pieces:
                english.setdefault(piece, ids[0])
            for piece in da_pieces - id_pieces:
                danish.setdefault(piece, ids[0])
        return cls(english, danish)

    def english_in(self, text: str) -> list[str]:
        flat = " ".join(text.split())
        return sorted(
            f"{piece!r} (of {msgid!r})" for piece, msgid in self.english.items() if piece in flat
        )

    def danish_in(self, text: str) -> list[str]:
        flat = " ".join(text.split())
        return sorted(
            f"{piece!r} (for {msgid!r})" for piece, msgid in self.danish.items() if piece in flat
        )


def visible_text(page: str) -> str:
    """What a person reads on a page or in an HTML mail: no tags, scripts or styles."""
    page = re.sub(r"(?is)<(script|style|title)\b.*?</\1>", " ", page)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def mail_text(mail: ReceivedMail) -> str:
    return "\n".join([str(mail.message["Subject"]), mail.text, visible_text(mail.html)])


# --------------------------------------------------------------------------- installing


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the repository at HEAD: only what is committed."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    if os.environ.get("NEWSLETTERS_TEST_DATABASE_URL"):
        # Each install runs on its own SQLite database whatever the suite's database is,
        # so the PostgreSQL leg of CI would only repeat the SQLite leg's minutes.
        pytest.skip("runs once, in the SQLite leg of the suite (it uses its own SQLite)")
    target = tmp_path_factory.mktemp("install") / "newsletters"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-local", str(ROOT), str(target)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to the test environment's installed packages, without this project's own."""
    folder = tmp_path_factory.mktemp("deps")
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("newsletters", "__editable__", "wsgi")) or name.endswith(".pth"):
            continue
        if name == "__pycache__":
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def new_venv(where: Path, dependencies: Path) -> Path:
    """A new virtual environment that sees the dependencies; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "test-dependencies.pth").write_text(f"{dependencies}\n")
    return python


def pip(python: Path, *args: str, cwd: Path) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEWSLETTERS_", "PYTHON", "VIRTUAL_ENV"))
    }


@dataclass
class Deployment:
    python: Path
    cwd: Path  # where `flask --app wsgi` runs
    env: dict[str, str]

    def flask(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.python), "-m", "flask", "--app", "wsgi", *args],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"flask {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.python), "-m", "flask", "--app", "wsgi", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _install(kind: str, clone: Path, dependencies: Path, tmp: Path) -> tuple[Path, Path]:
    """Install the clone the `kind` way; the python, and where flask is run from."""
    python = new_venv(tmp / "venv", dependencies)
    if kind == "pip install .":
        pip(python, "install", "--no-deps", ".", cwd=clone)
        return python, clone
    if kind == "pip install -e .":
        pip(python, "install", "--no-deps", "-e", ".", cwd=clone)
        return python, clone
    wheels = tmp / "wheels"
    pip(python, "wheel", "--no-deps", "-w", str(wheels), ".", cwd=clone)
    [wheel] = wheels.glob("newsletters-*.whl")
    pip(python, "install", "--no-deps", str(wheel), cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, elsewhere


# --------------------------------------------------------------------------- the test


@pytest.fixture
def servers() -> Iterator[tuple[SMTPServer, FeedServer]]:
    from tests.conftest import ALLOWED_SMTP_PORTS

    smtp = SMTPServer().start()
    ALLOWED_SMTP_PORTS.add(smtp.port)
    feeds = FeedServer().start()
    try:
        yield smtp, feeds
    finally:
        ALLOWED_SMTP_PORTS.discard(smtp.port)
        smtp.stop()
        feeds.stop()


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the web app stopped"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the web app did not start")


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize("kind", ["pip install .", "pip install -e .", "wheel"])
def test_every_page_and_mail_is_in_the_readers_language_however_it_is_installed(
    kind: str, clone: Path, dependencies: Path, tmp_path: Path, servers
):
    smtp, feed_server = servers
    catalogue = Catalogue.load()
    python, cwd = _install(kind, clone, dependencies, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _clean_env() | {
        "NEWSLETTERS_SECRET_KEY": "install-test-" + "k" * 32,
        "NEWSLETTERS_PUBLIC_BASE_URL": base,
        "NEWSLETTERS_MAIL_SERVER": "127.0.0.1",
        "NEWSLETTERS_MAIL_PORT": str(smtp.port),
        "NEWSLETTERS_WORKER_IN_PROCESS": "false",
        "NEWSLETTERS_WORKER_POLL_SECONDS": "0.2",
        # The digest's feed is served on loopback, which the fetcher refuses by default.
        "NEWSLETTERS_FEEDS_ALLOW_PRIVATE": "true",
        "NEWSLETTERS_SESSION_COOKIE_SECURE": "false",
    }
    if kind != "wheel":
        # A wheel keeps its data where Flask puts an installed app's instance folder.
        env["NEWSLETTERS_INSTANCE_PATH"] = str(tmp_path / "instance")
    app = Deployment(python, cwd, env)

    where = app.flask("shell", stdin="import newsletters, wsgi; print(newsletters.__file__)")
    if kind == "wheel":
        assert str(tmp_path / "venv") in where, where  # the installed package, no clone
    app.flask("db", "upgrade")
    app.flask("seed")
    web = app.start("run", "--port", str(port), "--no-reload")
    worker = app.start("worker")
    try:
        _wait_for_port(port, web)
        _read_everything(app, base, smtp, feed_server, catalogue, kind)
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _read_everything(app, base, smtp, feed_server, catalogue: Catalogue, kind: str) -> None:
    problems: list[str] = []

    def check(what: str, text: str, language: str) -> None:
        leftovers = catalogue.english_in(text) if language == "da" else catalogue.danish_in(text)
        if leftovers:
            other = "English" if language == "da" else "Danish"
            problems.append(f"{kind}: {what} ({language}) shows {other}: " + "; ".join(leftovers))

    readers = {"da": "borgmester@odense.dk", "en": "reader@example.com"}
    for language, address in readers.items():
        browser = HttpClient()
        front = browser.get(f"{base}/?lang={language}")
        assert front.status == 200
        check("the front page", visible_text(front.text), language)
        if kind == "wheel":  # no node_modules beside an installed wheel: plain styling
            assert "dkfds.min.css" not in front.text and "/static/app.css" in front.text
        reply = browser.post_form(
            f"{base}/",
            [
                ("csrf_token", csrf_token(front.text)),
                ("email", address),
                ("newsletters", "bestyrelse"),
                ("newsletters", "kl-nyheder"),
            ],
        )
        assert reply.status == 303
        [confirm] = smtp.wait_for(1, address=address, timeout=30)
        check("the confirmation mail", mail_text(confirm), language)
        page = browser.get(confirm.link("/confirm/"))
        check("the confirm page", visible_text(page.text), language)
        done = browser.post_form(confirm.link("/confirm/"), {"csrf_token": csrf_token(page.text)})
        assert done.status == 200
        check("the subscribed page", visible_text(done.text), language)
        manage = browser.get(confirm.link("/manage/"))
        assert address in manage.text
        check("the preference centre", visible_text(manage.text), language)

        # A link by mail, and "you are already subscribed" for a second subscription.
        ask = browser.get(f"{base}/manage?lang={language}")
        browser.post_form(f"{base}/manage", {"csrf_token": csrf_token(ask.text), "email": address})
        front = browser.get(f"{base}/?lang={language}")
        browser.post_form(
            f"{base}/",
            [
                ("csrf_token", csrf_token(front.text)),
                ("email", address),
                ("newsletters", "bestyrelse"),
            ],
        )
        mails = smtp.wait_for(3, address=address, timeout=30)
        check("the manage-link mail", mail_text(mails[1]), language)
        check("the already-subscribed mail", mail_text(mails[2]), language)

    # Enrolled on a basis, with the welcome mail (the CLI import; Danish by default).
    roster = app.cwd / "borgmestre.csv"
    roster.write_text("email;name\nborgmester@aarhus.dk;Anders\n", encoding="utf-8")
    app.flask(
        "subscribers",
        "import",
        str(roster),
        "--newsletter",
        "bestyrelse",
        "--basis",
        "Borgmester efter kommunalvalget",
        "--welcome",
    )
    [welcome] = smtp.wait_for(1, address="borgmester@aarhus.dk", timeout=30)
    check("the welcome mail", mail_text(welcome), "da")

    # An edition, through the CLI and the worker.
    body = app.cwd / "edition.md"
    body.write_text("KL's bestyrelse har i dag **besluttet** at ...\n", encoding="utf-8")
    out = app.flask(
        "editions",
        "create",
        "--newsletter",
        "bestyrelse",
        "--subject",
        "Nyt fra bestyrelsesmødet",
        "--body-file",
        str(body),
    )
    app.flask("editions", "send", out.strip().splitlines()[-1])
    # A digest of a feed on loopback, through the CLI and the worker.
    feed_url = feed_server.serve("kl.xml", body=undated("rss20.xml"))
    app.flask("feeds", "add", "kl-nyheder", feed_url)
    app.flask("feeds", "fetch")
    app.flask("digests", "run", "--newsletter", "kl-nyheder")
    for language, address in readers.items():
        mails = smtp.wait_for(5, address=address, timeout=60)
        edition = next(m for m in mails if m.message["Subject"] == "Nyt fra bestyrelsesmødet")
        check("the edition", mail_text(edition), language)
        digest = next(m for m in mails if "kl-nyheder" in str(m.message["List-Id"]))
        check("the digest", mail_text(digest), language)
        web_version = HttpClient().get(edition.link("/editions/"))
        assert web_version.status == 200
        check("the edition's web version", visible_text(web_version.text), language)
    assert smtp.handler.rejected == []
    assert not problems, "\n".join(problems)
