"""Issue 16's commands as an operator runs them (`python -m flask --app wsgi ...` in a
process of its own): what each prints, and a clear message on stderr with a non-zero
exit status on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT_DIR = Path(__file__).resolve().parent.parent

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><body>
  <outline text="KL's daglige nyhedsbreve">
    <outline type="rss" text="Ældre" xmlUrl="https://www.kl.dk/rss/aeldre"/>
  </outline>
  <outline text="Momentum">
    <outline type="rss" text="Momentum" xmlUrl="https://www.kl.dk/rss/momentum"/>
  </outline>
</body></opml>
"""


@pytest.mark.e2e
def test_feeds_commands_exit_non_zero_with_a_clear_message(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")},
        "NEWSLETTERS_SECRET_KEY": "operator-test-secret-0123456789",
        "NEWSLETTERS_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTERS_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'op.db'}",
        # The addresses are not resolved here (no network in tests): the rule that
        # refuses private addresses has its own tests.
        "NEWSLETTERS_FEEDS_ALLOW_PRIVATE": "true",
        "NEWSLETTERS_WORKER_IN_PROCESS": "false",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*flask, *args], cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=120
        )
        assert (done.returncode == 0) is ok, (args, done.stdout + done.stderr)
        if not ok:
            assert "Traceback" not in done.stderr, done.stderr
        return done

    run("db", "upgrade")
    run("seed")
    good = tmp_path / "feeds.opml"
    good.write_text(OPML, encoding="utf-8")
    imported = run("feeds", "import-opml", str(good)).stdout
    assert "2 feed(s) added, 0 already there" in imported
    assert "added to momentum: https://www.kl.dk/rss/momentum" in imported
    exported = run("feeds", "export-opml", "--newsletter", "kl-nyheder").stdout
    assert 'xmlUrl="https://www.kl.dk/rss/aeldre"' in exported and "momentum" not in exported
    feed_id = run("feeds", "list").stdout.splitlines()[0].split("\t")[0]
    shown = run("feeds", "filter", feed_id, "--include", '"KL",ældre').stdout
    assert 'include: "KL", ældre' in shown

    malformed = tmp_path / "malformed.opml"
    malformed.write_bytes(b"<opml><body><outline xmlUrl='https://kl.dk/a'>")
    for args, message in [
        (["feeds", "import-opml", str(tmp_path / "missing.opml")], "cannot read"),
        (["feeds", "import-opml", str(malformed)], "not well-formed XML"),
        (["feeds", "import-opml", str(good), "--newsletter", "nope"], "no newsletter 'nope'"),
        (["feeds", "export-opml", "--newsletter", "nope"], "no newsletter 'nope'"),
        (["feeds", "filter", feed_id, "--include", "ond\r\nord"], "control character"),
        (["feeds", "filter", feed_id, "--exclude", "nul\x01"], "control character"),
        (["feeds", "filter", "99999999999999", "--include", "x"], "no feed 99999999999999"),
        (["feeds", "position", feed_id, "10000"], "from 0 to 9999"),
        (["digests", "preview", "--newsletter", "nope"], "no newsletter 'nope'"),
        (["digests", "preview", "--newsletter", "bestyrelse"], "not made from feeds"),
    ]:
        refused = run(*args, ok=False)
        assert message in refused.stderr, (args, refused.stderr)
    # Nothing half-done: the filter is as it was set.
    assert (
        'include: "KL", ældre' in run("feeds", "filter", feed_id, "--include", '"KL",ældre').stdout
    )
