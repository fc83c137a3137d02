"""Imports in chunks (issue 17): the whole file is checked before anything is written,
then the rows are written in short transactions, chunk by chunk, keeping every promise
of the import: a bad file refused whole, re-import changes nothing, withdrawals and the
suppression list respected, consent recorded, one invitation per new address within
the per-address limit, and an interrupted import completed by running it again."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.compose import RenderedMail
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions import importing, suppression
from newsletters.subscriptions.models import (
    ConsentAction,
    ConsentDayCount,
    ConsentEvent,
    Subscriber,
    Subscription,
    SuppressionReason,
)
from newsletters.timeutil import utcnow
from tests.support.flows import confirmed_subscriber, subscriptions_of

HEADER = "email,name,municipality,role\n"


def rows(count: int, start: int = 0) -> str:
    return "".join(
        f"person{n:03d}@kommune.dk,Person {n},Aarhus,medarbejder\n"
        for n in range(start, start + count)
    )


@pytest.fixture
def chunked(make_app) -> Flask:
    """Chunks of three rows, so that a small file crosses several chunk boundaries."""
    return make_app(IMPORT_CHUNK_ROWS=3)


def import_file(app: Flask, tmp_path: Path, text: str | bytes, *args: str):
    path = tmp_path / "import.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return app.test_cli_runner().invoke(args=["subscribers", "import", str(path), *args])


def count(app: Flask, model, *where) -> int:
    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model).where(*where))
        db.session.remove()
        return value


def two_at_once(app: Flask) -> bool:
    """Whether this app's imports write two chunks at once (PostgreSQL)."""
    with app.app_context():
        return db.engine.dialect.name == "postgresql"


def confirm_mails(app: Flask, address: str | None = None) -> int:
    where = [OutboxMessage.kind == "confirm"]
    if address:
        where.append(OutboxMessage.to_address == address)
    return count(app, OutboxMessage, *where)


def test_an_import_interrupted_between_chunks_is_completed_by_running_it_again(
    chunked, tmp_path, monkeypatch
):
    text = HEADER + rows(10)
    original = importing._Plan.run
    calls = {"n": 0}

    def dies_at_the_third_chunk(self, chunk):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or a killed process
        return original(self, chunk)

    monkeypatch.setattr(importing._Plan, "run", dies_at_the_third_chunk)
    first = import_file(chunked, tmp_path, text, "--newsletter", "bestyrelse", "--basis", "B")
    assert first.exit_code != 0
    # The two chunks before the interruption are in, each whole; the third is not. On
    # PostgreSQL the fourth (one row) may have been written beside it, whole too.
    written = count(chunked, Subscriber)
    assert written in ((6, 7) if two_at_once(chunked) else (6,))
    assert count(chunked, ConsentEvent) == written
    monkeypatch.setattr(importing._Plan, "run", original)
    again = import_file(chunked, tmp_path, text, "--newsletter", "bestyrelse", "--basis", "B")
    assert again.exit_code == 0, again.output
    assert f"{10 - written} new subscriber(s)" in again.output
    assert f"{10 - written} enrolled" in again.output
    assert f"{written} unchanged" in again.output
    assert count(chunked, Subscriber) == 10
    assert count(chunked, ConsentEvent, ConsentEvent.action == ConsentAction.ENROLLED) == 10


def test_invitations_interrupted_after_the_people_are_written_are_sent_once_on_rerun(
    chunked, tmp_path, monkeypatch
):
    text = HEADER + rows(7)
    original = importing._insert_subscriptions
    calls = {"n": 0}

    def dies_in_the_second_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return original(*args, **kwargs)

    monkeypatch.setattr(importing, "_insert_subscriptions", dies_in_the_second_write)
    assert import_file(chunked, tmp_path, text, "--newsletter", "momentum").exit_code != 0
    if two_at_once(chunked):
        # Chunks 1 and 2 were written side by side: one of them failed after its people
        # were committed; the other, and chunk 3, may be in, each whole.
        assert count(chunked, Subscriber) >= 6
        sent = confirm_mails(chunked)
        assert sent in (3, 4)
    else:
        # Chunk 2's people were committed, their subscriptions and mails were not.
        assert count(chunked, Subscriber) == 6
        sent = confirm_mails(chunked)
        assert sent == 3
    assert count(chunked, Subscription) == sent  # a subscription exactly with its mail
    assert count(chunked, ConsentEvent) == sent
    monkeypatch.setattr(importing, "_insert_subscriptions", original)
    again = import_file(chunked, tmp_path, text, "--newsletter", "momentum")
    assert again.exit_code == 0, again.output
    assert f"{7 - sent} invited" in again.output and f"{sent} unchanged" in again.output
    assert confirm_mails(chunked) == 7
    for n in range(7):
        assert confirm_mails(chunked, f"person{n:03d}@kommune.dk") == 1
    assert count(chunked, ConsentEvent, ConsentEvent.action == ConsentAction.REQUESTED) == 7
    assert import_file(chunked, tmp_path, text, "--newsletter", "momentum").exit_code == 0
    assert confirm_mails(chunked) == 7


def test_a_duplicate_far_down_the_file_refuses_it_whole_before_anything_is_written(
    chunked, tmp_path
):
    text = HEADER + rows(8) + "PERSON001@Kommune.dk,Igen,Aarhus,medarbejder\n" + rows(3, 20)
    result = import_file(chunked, tmp_path, text, "--newsletter", "momentum")
    assert result.exit_code == 1
    assert "line 10: person001@kommune.dk is already on line 3" in result.output
    assert count(chunked, Subscriber) == 0
    assert confirm_mails(chunked) == 0


@pytest.mark.parametrize(
    "before, bad_row, reason",
    [
        (4, 'evil@kommune.dk,"Anna\r\nBcc: x@evil.example",Aarhus,\n', "must be on one line"),
        # Deep down, where the check for a binary file at the start does not look.
        (2000, "nul@kommune.dk,Anna\x00Nul,Aarhus,\n", "a character that is not allowed"),
        (4, "long@kommune.dk," + "A" * 100_000 + ",Aarhus,\n", "too long"),
        (4, "x" * 10_000 + "@kommune.dk,Anna,Aarhus,\n", "not a valid email address"),
        (4, "tab@kommune.dk,Anna,Aarhus,\tchef\n", None),  # stripped: fine
    ],
)
def test_hostile_cells_are_named_by_line_and_nothing_is_imported(
    chunked, tmp_path, before, bad_row, reason
):
    text = HEADER + rows(before) + bad_row + rows(2, 2100)
    result = import_file(chunked, tmp_path, text, "--newsletter", "momentum")
    if reason is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1
    assert f"line {before + 2}:" in result.output and reason in result.output
    assert len(result.output) < 2_000  # a huge cell is not echoed back whole
    assert count(chunked, Subscriber) == 0


def test_a_file_that_turns_out_not_to_be_utf8_deep_down_is_read_again_as_windows_1252(
    chunked, tmp_path
):
    # The first 64 KB are plain ASCII; the Danish letters come much later.
    text = HEADER + rows(2000) + "soeren@kommune.dk,Søren Ærø,Ærø,borgmester\n"
    result = import_file(
        chunked, tmp_path, text.encode("cp1252"), "--newsletter", "bestyrelse", "--basis", "B"
    )
    assert result.exit_code == 0, result.output
    assert "Windows-1252" in result.output and "2001 enrolled" in result.output
    with chunked.app_context():
        assert (
            db.session.scalar(
                select(Subscriber.name).where(Subscriber.email == "soeren@kommune.dk")
            )
            == "Søren Ærø"
        )


def test_withdrawn_and_suppressed_people_are_not_invited_in_any_chunk(chunked, tmp_path):
    client = chunked.test_client()
    confirmed_subscriber(client, chunked, "person004@kommune.dk", ("momentum",))
    with chunked.app_context():
        from newsletters.subscriptions.consent import RequestContext
        from newsletters.subscriptions.preferences import unsubscribe_subscriber

        unsubscribe_subscriber(
            db.session.scalar(
                select(Subscriber.id).where(Subscriber.email == "person004@kommune.dk")
            ),
            newsletter_ids=None,
            ctx=RequestContext(),
        )
        suppression.suppress("person007@kommune.dk", SuppressionReason.MANUAL)
        db.session.commit()
    mails_before = confirm_mails(chunked, "person004@kommune.dk")
    result = import_file(chunked, tmp_path, HEADER + rows(9), "--newsletter", "momentum")
    assert result.exit_code == 0, result.output
    assert "7 invited" in result.output and "2 skipped" in result.output
    assert subscriptions_of(chunked, "person004@kommune.dk") == {"momentum": "unsubscribed"}
    assert confirm_mails(chunked, "person004@kommune.dk") == mails_before
    assert subscriptions_of(chunked, "person007@kommune.dk") == {}
    assert confirm_mails(chunked, "person007@kommune.dk") == 0


def test_an_address_at_its_mail_limit_is_invited_without_another_mail(chunked, tmp_path):
    limit = chunked.config["ADDRESS_MAILS_PER_HOUR"]
    with chunked.app_context():
        for _ in range(limit):
            db.session.add(
                outbox.enqueue(
                    kind="confirm",
                    to="person002@kommune.dk",
                    mail=RenderedMail(subject="Bekræft", text="x\n", html="<p>x</p>"),
                )
            )
        db.session.commit()
    result = import_file(chunked, tmp_path, HEADER + rows(5), "--newsletter", "momentum")
    assert result.exit_code == 0, result.output
    assert "5 invited" in result.output
    assert confirm_mails(chunked, "person002@kommune.dk") == limit
    assert confirm_mails(chunked) == limit + 4
    assert subscriptions_of(chunked, "person002@kommune.dk") == {"momentum": "pending"}


def test_an_idn_address_at_its_mail_limit_is_invited_without_another_mail(chunked, tmp_path):
    """The database queues the usual person's invitation and counts their limit; an
    address with an IDN domain is read and counted here, by its ASCII form."""
    limit = chunked.config["ADDRESS_MAILS_PER_HOUR"]
    with chunked.app_context():
        for _ in range(limit):
            outbox.enqueue(
                kind="confirm",
                to="borgmester@ærø.dk",
                mail=RenderedMail(subject="Bekræft", text="x\n", html="<p>x</p>"),
            )
        db.session.commit()
    text = HEADER + rows(2) + "borgmester@ærø.dk,B,Ærø,borgmester\nanne@æbleø.dk,A,,\n"
    result = import_file(chunked, tmp_path, text, "--newsletter", "momentum")
    assert result.exit_code == 0, result.output
    assert "4 invited" in result.output
    assert confirm_mails(chunked, "borgmester@xn--r-3fa9c.dk") == limit
    assert confirm_mails(chunked, "anne@xn--ble-xla7g.dk") == 1
    assert confirm_mails(chunked) == limit + 3


def test_an_old_mail_does_not_count_against_the_limit(chunked, tmp_path):
    with chunked.app_context():
        for _ in range(chunked.config["ADDRESS_MAILS_PER_HOUR"]):
            message = outbox.enqueue(
                kind="confirm",
                to="person000@kommune.dk",
                mail=RenderedMail(subject="Bekræft", text="x\n", html="<p>x</p>"),
            )
            message.created_at = utcnow() - timedelta(hours=2)
        db.session.commit()
    assert (
        import_file(chunked, tmp_path, HEADER + rows(1), "--newsletter", "momentum").exit_code == 0
    )
    assert confirm_mails(chunked, "person000@kommune.dk") == 4


def test_a_dry_run_in_chunks_reports_what_the_import_then_does(chunked, tmp_path):
    client = chunked.test_client()
    confirmed_subscriber(client, chunked, "person001@kommune.dk", ("bestyrelse",))
    text = HEADER + rows(8)
    args = ("--newsletter", "bestyrelse", "--basis", "B", "--welcome")
    dry = import_file(chunked, tmp_path, text, *args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    before = (
        count(chunked, Subscriber),
        count(chunked, ConsentEvent),
        count(chunked, OutboxMessage),
    )
    real = import_file(chunked, tmp_path, text, *args)
    figures = real.output.splitlines()[-1].removeprefix("imported ")
    assert dry.output.splitlines()[-1].endswith(figures)
    assert "7 enrolled" in figures and "7 welcome mail(s)" in figures
    assert "1 updated" in figures and "1 unchanged" in figures
    assert before[0] == 1  # the dry run wrote nothing
    assert count(chunked, OutboxMessage, OutboxMessage.kind == "welcome") == 7


def test_a_file_read_from_a_pipe_is_imported(chunked):
    # `flask subscribers import /dev/stdin ...`: a stream that cannot seek back for the
    # second pass.
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        writer.write((HEADER + rows(3)).encode())
    with os.fdopen(read_end, "rb") as pipe, chunked.app_context():
        assert not pipe.seekable()
        report = importing.import_subscribers(
            pipe, newsletter_slug="bestyrelse", basis="B", file_name="stdin"
        )
        db.session.remove()
    assert report.enrolled == 3
    assert count(chunked, Subscriber) == 3


def test_an_enrolment_counts_its_consent_records_per_day_like_the_records_themselves(
    chunked, tmp_path
):
    """The daily consent counts (reports) are kept by a trigger on consent records; on
    PostgreSQL an enrolment writes a chunk's subscriptions and their consent records in
    one statement, and the trigger must still find each record's newsletter."""
    result = import_file(
        chunked, tmp_path, HEADER + rows(7), "--newsletter", "bestyrelse", "--basis", "Borgmester"
    )
    assert result.exit_code == 0, result.output
    with chunked.app_context():
        recounted = db.session.execute(
            select(Subscription.newsletter_id, ConsentEvent.action, func.count())
            .join(Subscription, Subscription.id == ConsentEvent.subscription_id)
            .group_by(Subscription.newsletter_id, ConsentEvent.action)
        ).all()
        kept = db.session.execute(
            select(
                ConsentDayCount.newsletter_id,
                ConsentDayCount.action,
                func.sum(ConsentDayCount.count),
            ).group_by(ConsentDayCount.newsletter_id, ConsentDayCount.action)
        ).all()
        db.session.remove()
    assert sorted((n, str(a), c) for n, a, c in recounted) == sorted(
        (n, str(a), c) for n, a, c in kept
    )
    assert sum(c for *_, c in kept) == 7


def test_when_both_chunks_in_flight_fail_the_second_error_is_logged_too(
    chunked, tmp_path, monkeypatch, caplog
):
    if not two_at_once(chunked):
        pytest.skip("one chunk at a time on SQLite")
    original = importing._Plan.run
    both_running = threading.Barrier(2, timeout=10)

    def every_chunk_fails(self, chunk):
        both_running.wait()  # the two chunks are in flight at once, then both fail
        raise RuntimeError(f"chunk starting {chunk[0].email} failed")

    monkeypatch.setattr(importing._Plan, "run", every_chunk_fails)
    with caplog.at_level("ERROR", logger="newsletters.subscriptions.importing"):
        result = import_file(
            chunked, tmp_path, HEADER + rows(6), "--newsletter", "bestyrelse", "--basis", "B"
        )
    monkeypatch.setattr(importing._Plan, "run", original)
    assert result.exit_code != 0
    assert "person000@kommune.dk" in str(result.exception)
    logged = [r for r in caplog.records if "beside the failed one" in r.getMessage()]
    assert len(logged) == 1
    assert "person003@kommune.dk" in str(logged[0].exc_info[1])
    assert count(chunked, Subscriber) == 0
