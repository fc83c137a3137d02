"""The operator CLI of PRODUCT.md: seed, subscribers import/export, worker."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletters.extensions import db
from newsletters.subscriptions.models import ConsentEvent, Subscriber
from tests.conftest import ROOT_DIR
from tests.support.flows import queued_mails, subscriptions_of

MAYORS = """email,name,municipality,role
borgmester@aarhus.dk,Anders Aarhus,Aarhus Kommune,borgmester
Borgmester@Ærø.dk,Birthe Ærø,Ærø,borgmester
borgmester@kk.dk,Carl København,Københavns Kommune,overborgmester
"""


def _csv(tmp_path: Path, text: str, name: str = "mayors.csv", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_seed_is_idempotent(runner, app):
    result = runner.invoke(args=["seed"])
    assert result.exit_code == 0
    assert "0 created, 4 already there" in result.output


def test_import_with_basis_enrols_without_mail(runner, app, tmp_path):
    result = runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, MAYORS),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "Borgmester efter kommunalvalget 2025 (KL's vedtægter)",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "3 enrolled" in result.output
    assert subscriptions_of(app, "borgmester@aarhus.dk") == {"bestyrelse": "confirmed"}
    assert queued_mails(app) == []
    with app.app_context():
        events = db.session.scalars(select(ConsentEvent)).all()
        assert {e.action.value for e in events} == {"enrolled"}
        assert {e.basis for e in events} == {
            "Borgmester efter kommunalvalget 2025 (KL's vedtægter)"
        }
        assert {e.method for e in events} == {"import_basis"}
        kk = db.session.scalar(select(Subscriber).where(Subscriber.email == "borgmester@kk.dk"))
        assert (kk.municipality, kk.role) == ("København", "overborgmester")
        # The address with an IDN domain was normalised, not refused.
        assert (
            db.session.scalar(select(Subscriber.email).where(Subscriber.name == "Birthe Ærø"))
            == "borgmester@ærø.dk"
        )


def test_import_with_basis_and_welcome_queues_welcome_mails(runner, app, tmp_path):
    result = runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, MAYORS),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "Borgmester",
            "--welcome",
        ]
    )
    assert result.exit_code == 0, result.output
    mails = queued_mails(app, kind="welcome")
    assert len(mails) == 3
    from tests.support.flows import header, mail_text

    assert "Borgmester" in mail_text(mails[0])
    assert header(mails[0], "List-Unsubscribe").startswith("<http://localhost/unsubscribe/")


def test_import_without_basis_invites_by_double_opt_in(runner, app, tmp_path):
    result = runner.invoke(
        args=["subscribers", "import", _csv(tmp_path, MAYORS), "--newsletter", "momentum"]
    )
    assert result.exit_code == 0, result.output
    assert "3 invited" in result.output
    assert subscriptions_of(app, "borgmester@aarhus.dk") == {"momentum": "pending"}
    assert len(queued_mails(app, kind="confirm")) == 3


def test_importing_the_same_file_again_changes_nothing(runner, app, tmp_path):
    path = _csv(tmp_path, MAYORS)
    for basis in (["--basis", "Borgmester"], []):
        slug = "bestyrelse" if basis else "momentum"
        runner.invoke(args=["subscribers", "import", path, "--newsletter", slug, *basis])
        mails, events = len(queued_mails(app)), _count(app, ConsentEvent)
        again = runner.invoke(args=["subscribers", "import", path, "--newsletter", slug, *basis])
        assert again.exit_code == 0
        assert "3 unchanged" in again.output
        assert (len(queued_mails(app)), _count(app, ConsentEvent)) == (mails, events)


def test_a_file_with_bad_rows_is_refused_whole_with_every_line_listed(runner, app, tmp_path):
    text = (
        "email;name;municipality\n"
        "ok@example.dk;OK;Odense\n"
        "not-an-address;Bad;Odense\n"
        ";Empty;\n"
        "ok@example.dk;Twice;Odense\n"
        "x@example.dk;Bad town;Atlantis\n"
    )
    result = runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, text),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "Borgmester",
        ]
    )
    assert result.exit_code == 1
    output = result.output
    assert "line 3:" in output and "not a valid email address" in output
    assert "line 4: email is empty" in output
    assert "line 5: ok@example.dk is already on line 2" in output
    assert "line 6: 'Atlantis' is not one of the 98 municipalities" in output
    assert "nothing was imported" in output
    assert _count(app, Subscriber) == 0


def test_dry_run_reports_and_changes_nothing(runner, app, tmp_path):
    result = runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, MAYORS),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "Borgmester",
            "--welcome",
            "--dry-run",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "3 enrolled" in result.output
    assert _count(app, Subscriber) == 0
    assert queued_mails(app) == []


def test_import_reads_windows_1252_from_danish_excel(runner, app, tmp_path):
    path = _csv(tmp_path, "email;name\nborgmester@ærø.dk;Søren Ærøskøbing\n", encoding="cp1252")
    result = runner.invoke(
        args=["subscribers", "import", path, "--newsletter", "bestyrelse", "--basis", "B"]
    )
    assert result.exit_code == 0, result.output
    assert "Windows-1252" in result.output
    with app.app_context():
        assert db.session.scalar(select(Subscriber.name)) == "Søren Ærøskøbing"


def test_import_refuses_unknown_newsletter_and_missing_email_column(runner, app, tmp_path):
    result = runner.invoke(
        args=["subscribers", "import", _csv(tmp_path, MAYORS), "--newsletter", "nope"]
    )
    assert result.exit_code == 1 and "no newsletter 'nope'" in result.output
    result = runner.invoke(
        args=["subscribers", "import", _csv(tmp_path, "name\nAnna\n"), "--newsletter", "momentum"]
    )
    assert result.exit_code == 1 and "no 'email' column" in result.output


def test_import_does_not_override_a_withdrawal(runner, app, tmp_path, client):
    from tests.support.flows import confirmed_subscriber

    confirmed_subscriber(client, app, "borgmester@aarhus.dk", ("bestyrelse",))
    with app.app_context():
        from newsletters.subscriptions.consent import RequestContext
        from newsletters.subscriptions.preferences import unsubscribe_subscriber

        unsubscribe_subscriber(
            db.session.scalar(select(Subscriber.id)), newsletter_ids=None, ctx=RequestContext()
        )
    result = runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, MAYORS),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "Borgmester",
        ]
    )
    assert result.exit_code == 0
    assert "skipped borgmester@aarhus.dk" in result.output
    assert subscriptions_of(app, "borgmester@aarhus.dk") == {"bestyrelse": "unsubscribed"}


def test_export_lists_confirmed_subscribers_and_defuses_formulas(runner, app, tmp_path):
    text = 'email,name,role\nok@example.dk,=1+1,=HYPERLINK("http://evil")\nb@example.dk,Bo,\n'
    runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, text),
            "--newsletter",
            "bestyrelse",
            "--basis",
            "B",
        ]
    )
    runner.invoke(
        args=[
            "subscribers",
            "import",
            _csv(tmp_path, "email\npending@example.dk\n", "p.csv"),
            "--newsletter",
            "bestyrelse",
        ]
    )
    result = runner.invoke(args=["subscribers", "export", "--newsletter", "bestyrelse"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["email"] for r in rows] == ["b@example.dk", "ok@example.dk"]
    assert rows[1]["name"] == "'=1+1"
    assert rows[1]["role"] == '\'=HYPERLINK("http://evil")'


def test_worker_once_delivers_what_is_due(runner, app, tmp_path):
    runner.invoke(
        args=["subscribers", "import", _csv(tmp_path, MAYORS), "--newsletter", "momentum"]
    )
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert {m.status.value for m in queued_mails(app)} == {"captured"}


@pytest.mark.e2e
def test_operator_commands_on_a_fresh_database(tmp_path):
    """`flask --app wsgi db upgrade`, `seed`, import and export, as an operator runs them."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")},
        "NEWSLETTERS_SECRET_KEY": "operator-test-secret-0123456789",
        "NEWSLETTERS_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTERS_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'op.db'}",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*flask, *args], cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=120
        )
        assert (done.returncode == 0) is ok, done.stdout + done.stderr
        return done

    run("db", "upgrade")
    assert "4 created" in run("seed").stdout
    assert "0 created" in run("seed").stdout
    mayors = _csv(tmp_path, MAYORS)
    assert (
        "3 enrolled"
        in run(
            "subscribers", "import", mayors, "--newsletter", "bestyrelse", "--basis", "Borgmester"
        ).stdout
    )
    bad = run(
        "subscribers",
        "import",
        _csv(tmp_path, "email\nnope\n", "bad.csv"),
        "--newsletter",
        "bestyrelse",
        ok=False,
    )
    assert "line 2" in bad.stderr
    export = run("subscribers", "export", "--newsletter", "bestyrelse").stdout
    assert export.count("\n") == 4
    # Without a secret key, outside debug, the app refuses to start.
    del env["NEWSLETTERS_SECRET_KEY"]
    refused = run("seed", ok=False)
    assert "NEWSLETTERS_SECRET_KEY" in refused.stderr
    # Said once, plainly: an operator's mistake is not a crash.
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith("newsletters: ")


@pytest.mark.e2e
def test_worker_runs_in_the_foreground_and_stops_on_sigterm(tmp_path, smtp_server):
    import signal
    import time

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")},
        "NEWSLETTERS_SECRET_KEY": "operator-test-secret-0123456789",
        "NEWSLETTERS_INSTANCE_PATH": str(tmp_path / "instance"),
        "NEWSLETTERS_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'worker.db'}",
        "NEWSLETTERS_MAIL_SERVER": "127.0.0.1",
        "NEWSLETTERS_MAIL_PORT": str(smtp_server.port),
        "NEWSLETTERS_WORKER_POLL_SECONDS": "0.2",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    for args in (["db", "upgrade"], ["seed"]):
        subprocess.run([*flask, *args], cwd=ROOT_DIR, env=env, check=True, capture_output=True)
    worker = subprocess.Popen(
        [*flask, "worker"],
        cwd=ROOT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Mail queued by another process (an import) is picked up by the running worker.
        subprocess.run(
            [*flask, "subscribers", "import", _csv(tmp_path, MAYORS), "--newsletter", "momentum"],
            cwd=ROOT_DIR,
            env=env,
            check=True,
            capture_output=True,
        )
        try:
            smtp_server.wait_for(3, timeout=20)
        except AssertionError:
            import sqlite3

            rows = (
                sqlite3.connect(tmp_path / "worker.db")
                .execute("select id, status, attempts, last_error, leased_by from outbox_messages")
                .fetchall()
            )
            worker.terminate()
            raise AssertionError(f"{rows}\n{worker.communicate(timeout=10)[0]}") from None
        time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert "stopped" in output


def test_every_command_says_in_flask_help_what_it_does(app):
    """`flask --app wsgi feeds --help` and the like list each command with a line of help."""
    import click

    def commands(group: click.Group, path: str):
        for name, command in group.commands.items():
            yield f"{path} {name}".strip(), command
            if isinstance(command, click.Group):
                yield from commands(command, f"{path} {name}")

    ours = {
        name: command
        for name, command in commands(app.cli, "")
        if (command.callback and command.callback.__module__.startswith("newsletters"))
        or isinstance(command, click.Group)
    }
    assert "feeds disable" in ours and "feeds enable" in ours
    silent = [name for name, command in ours.items() if not command.get_short_help_str().strip()]
    assert silent == []
