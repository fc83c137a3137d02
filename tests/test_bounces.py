"""Bounces: parsing a varied set of real-format DSNs (tests/bounces/), attributing each to
its delivery, stopping mail to addresses that bounce, the suppression list, and reading
a Maildir and an IMAP folder."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletters.bounces.models import Bounce, BounceKind
from newsletters.bounces.parsing import parse
from newsletters.editions import sending
from newsletters.editions.models import Delivery
from newsletters.extensions import db
from newsletters.subscriptions import suppression
from newsletters.subscriptions.models import Subscriber, Suppression, SuppressionReason
from tests.support.editions import confirmed_audience, draft
from tests.support.imap import IMAPServer

SAMPLES = Path(__file__).parent / "bounces"
DOMAIN = "nyhedsbreve.kl.dk"

# file -> (address, kind) it reports; None: not a bounce (auto-reply, warning, reply).
EXPECTED: dict[str, tuple[str, BounceKind] | None] = {
    "postfix_user_unknown.eml": ("borgmester@ukendt-kommune.dk", BounceKind.HARD),
    "exim_no_such_user.eml": ("raadmand@kommune.dk", BounceKind.HARD),
    "o365_recipient_not_found.eml": ("direktoer@kommune.dk", BounceKind.HARD),
    "gmail_address_not_found.eml": ("laeser.der.ikke.findes@gmail.com", BounceKind.HARD),
    "qmail_nonstandard.eml": ("forladt@lilleby.dk", BounceKind.HARD),
    "exim_plain_x_failed.eml": ("tidligere.borgmester@gammel.kommune.dk", BounceKind.HARD),
    "postfix_mailbox_full.eml": ("fuld@kommune.dk", BounceKind.SOFT),
    "sendmail_gave_up_4xx.eml": ("langsom@region.dk", BounceKind.SOFT),
    "postfix_delayed_warning.eml": None,
    "outlook_automatic_reply.eml": None,
    "vacation_out_of_office.eml": None,
    "human_reply.eml": None,
}


def sample(name: str, edition: int = 7, delivery: int = 42, n: int = 0) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    return (
        raw.replace(b"{EDITION}", str(edition).encode())
        .replace(b"{DELIVERY}", str(delivery).encode())
        .replace(b"{N}", str(n).encode())
    )


def test_every_sample_file_is_covered():
    assert sorted(p.name for p in SAMPLES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parsing_finds_the_bounced_address_and_its_kind(name: str):
    parsed = parse(sample(name), mail_domain=DOMAIN)
    expected = EXPECTED[name]
    if expected is None:
        assert not parsed.is_bounce
    else:
        assert [(r.address, r.kind) for r in parsed.recipients] == [expected]


@pytest.mark.parametrize("name", ["outlook_automatic_reply.eml", "vacation_out_of_office.eml"])
def test_auto_replies_are_recognised_and_never_count_as_bounces(name: str):
    parsed = parse(sample(name), mail_domain=DOMAIN)
    assert parsed.auto_reply and not parsed.recipients


def test_a_delay_warning_is_not_a_bounce():
    parsed = parse(sample("postfix_delayed_warning.eml"), mail_domain=DOMAIN)
    assert parsed.warning_only and not parsed.is_bounce


@pytest.mark.parametrize(
    "name",
    [
        "postfix_user_unknown.eml",  # X-Newsletters-Delivery in text/rfc822-headers
        "exim_no_such_user.eml",  # Message-ID in the returned message/rfc822
        "o365_recipient_not_found.eml",  # In-Reply-To of the report itself
        "gmail_address_not_found.eml",
        "qmail_nonstandard.eml",  # quoted inline below the error text
        "postfix_mailbox_full.eml",
    ],
)
def test_the_returned_message_names_its_delivery(name: str):
    assert parse(sample(name, 12, 3456), mail_domain=DOMAIN).delivery == (12, 3456)


def test_a_message_id_of_another_domain_names_no_delivery():
    raw = sample("exim_no_such_user.eml").replace(b"@nyhedsbreve.kl.dk>", b"@example.org>")
    assert parse(raw, mail_domain=DOMAIN).delivery is None


def test_garbage_is_not_a_bounce():
    parsed = parse(b"\x00\xff not a mail at all \r\n\r\n\x80", mail_domain=DOMAIN)
    assert not parsed.is_bounce


# --------------------------------------------------------------------------- recording


@pytest.fixture
def sent_edition(app: Flask) -> dict[str, int]:
    """An edition started to the addresses of the samples: address -> delivery id."""
    addresses = [e[0] for e in EXPECTED.values() if e is not None]
    addresses.append("borgmester@kommune.dk")
    _audience(app, addresses)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
        rows = db.session.execute(
            select(Subscriber.email, Delivery.id).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
        db.session.remove()
    return {"edition": edition_id, **dict(rows)}


def _audience(app: Flask, addresses: list[str]) -> None:
    from sqlalchemy import insert

    from newsletters.catalog.services import newsletter_by_slug
    from newsletters.subscriptions.models import Subscription, SubscriptionStatus
    from newsletters.timeutil import utcnow

    with app.app_context():
        newsletter = newsletter_by_slug("bestyrelse")
        now = utcnow()
        for address in addresses:
            subscriber = Subscriber(email=address)
            db.session.add(subscriber)
            db.session.flush()
            db.session.execute(
                insert(Subscription).values(
                    subscriber_id=subscriber.id,
                    newsletter_id=newsletter.id,
                    status=SubscriptionStatus.CONFIRMED,
                    requested_at=now,
                    confirmed_at=now,
                )
            )
        db.session.commit()
        db.session.remove()


def write_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(str(path), create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return path


def bounces(app: Flask) -> list[tuple[str, str, str, int | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(Subscriber.email, Bounce.kind, Bounce.source, Bounce.delivery_id)
            .join(Subscriber, Subscriber.id == Bounce.subscriber_id)
            .order_by(Bounce.id)
        ).all()
        db.session.remove()
    return [(e, k.value, s, d) for e, k, s, d in rows]


def suppressed(app: Flask) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(select(Suppression.email, Suppression.reason)).all()
        db.session.remove()
    return {e: r.value for e, r in rows}


def test_processing_a_maildir_records_each_bounce_against_its_delivery(
    app, runner, sent_edition, tmp_path
):
    edition = sent_edition["edition"]
    messages = [
        sample(name, edition, sent_edition.get(expected[0], 0) if expected else 0)
        for name, expected in EXPECTED.items()
    ]
    maildir = write_maildir(tmp_path / "bounces", messages)

    result = runner.invoke(args=["bounces", "process", "--maildir", str(maildir)])

    assert result.exit_code == 0, result.output
    assert "12 message(s) read: 6 hard bounce(s), 2 soft bounce(s), 6 address(es) stopped" in (
        result.output
    )
    assert "2 auto-reply(ies), 1 delay warning(s)" in result.output
    recorded = bounces(app)
    hard = {e for e, k, _, _ in recorded if k == "hard"}
    assert hard == {e[0] for e in EXPECTED.values() if e and e[1] is BounceKind.HARD}
    by_address = {e: d for e, _, _, d in recorded}
    # Attributed to the delivery wherever the bounce quoted the message.
    assert (
        by_address["borgmester@ukendt-kommune.dk"] == sent_edition["borgmester@ukendt-kommune.dk"]
    )
    assert by_address["raadmand@kommune.dk"] == sent_edition["raadmand@kommune.dk"]
    # The auto-reply's sender is not touched.
    assert "borgmester@kommune.dk" not in by_address
    stopped = suppressed(app)
    assert set(stopped) == hard and set(stopped.values()) == {"hard_bounce"}
    with app.app_context():
        assert db.session.scalar(
            select(func.count()).where(Subscriber.hard_bounced_at.is_not(None))
        ) == len(hard)


def test_reading_the_mailbox_again_records_nothing_twice(app, runner, sent_edition, tmp_path):
    edition = sent_edition["edition"]
    raw = sample("postfix_user_unknown.eml", edition, sent_edition["borgmester@ukendt-kommune.dk"])
    maildir = write_maildir(tmp_path / "bounces", [raw])
    first = runner.invoke(args=["bounces", "process", "--maildir", str(maildir)])
    second = runner.invoke(args=["bounces", "process", "--maildir", str(maildir)])
    assert "1 message(s) read" in first.output
    assert "0 message(s) read" in second.output  # marked seen
    # Even a second copy of the same message (another reader) is recorded once.
    write_maildir(maildir, [raw])
    third = runner.invoke(args=["bounces", "process", "--maildir", str(maildir)])
    assert "1 already recorded" in third.output
    assert len(bounces(app)) == 1
    box = mailbox.Maildir(str(maildir), create=False)
    assert all("S" in box.get_message(k).get_flags() for k in box.keys())  # noqa: SIM118 (Maildir iterates messages)


def test_soft_bounces_stop_mail_only_after_the_limit_within_the_window(make_app, tmp_path):
    app = make_app(BOUNCE_SOFT_LIMIT=3, BOUNCE_SOFT_WINDOW_DAYS=30)
    runner = app.test_cli_runner()
    _audience(app, ["fuld@kommune.dk"])
    for n in range(3):
        maildir = write_maildir(tmp_path / f"b{n}", [sample("postfix_mailbox_full.eml", 1, 1, n=n)])
        result = runner.invoke(args=["bounces", "process", "--maildir", str(maildir)])
        assert result.exit_code == 0, result.output
        assert suppressed(app) == ({"fuld@kommune.dk": "soft_bounces"} if n == 2 else {})
    with app.app_context():
        entry = db.session.scalar(select(Suppression))
        assert entry.bounce_count == 3


def test_a_bounced_address_gets_no_further_edition(app, sent_edition, tmp_path):
    runner = app.test_cli_runner()
    raw = sample(
        "postfix_user_unknown.eml",
        sent_edition["edition"],
        sent_edition["borgmester@ukendt-kommune.dk"],
    )
    runner.invoke(
        args=["bounces", "process", "--maildir", str(write_maildir(tmp_path / "m", [raw]))]
    )
    next_edition = draft(app)
    with app.app_context():
        sending.start_send(next_edition)
        recipients = set(
            db.session.scalars(
                select(Subscriber.email)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.edition_id == next_edition)
            )
        )
    assert "borgmester@ukendt-kommune.dk" not in recipients
    assert "raadmand@kommune.dk" in recipients


def test_a_suppressed_address_is_left_out_of_a_send_even_without_a_bounce(app):
    addresses = confirmed_audience(app, 5)
    with app.app_context():
        suppression.suppress(addresses[0], SuppressionReason.MANUAL)
        db.session.commit()
    edition_id = draft(app)
    with app.app_context():
        assert sending.start_send(edition_id) == 4


def test_lifting_a_suppression_lets_mail_go_again(app, sent_edition, tmp_path):
    runner = app.test_cli_runner()
    raw = sample("exim_no_such_user.eml", sent_edition["edition"], 0)
    runner.invoke(
        args=["bounces", "process", "--maildir", str(write_maildir(tmp_path / "m", [raw]))]
    )
    with app.app_context():
        entry_id = db.session.scalar(select(Suppression.id))
        suppression.lift(entry_id, by_staff_id=None)
        subscriber = db.session.scalar(
            select(Subscriber).where(Subscriber.email == "raadmand@kommune.dk")
        )
        assert subscriber.hard_bounced_at is None
        assert not suppression.is_suppressed("Raadmand@Kommune.dk")


def test_the_suppression_hash_matches_any_spelling_of_the_address(app):
    with app.app_context():
        assert suppression.address_hash("Borgmester@Aarhus.DK ") == suppression.address_hash(
            "borgmester@aarhus.dk"
        )
        assert suppression.address_hash("a@aarhus.dk") != suppression.address_hash("b@aarhus.dk")


def test_without_a_mailbox_the_command_says_what_is_missing(runner):
    result = runner.invoke(args=["bounces", "process"])
    assert result.exit_code == 2
    assert "no bounce mailbox" in result.output


def test_a_folder_that_is_not_a_maildir_is_refused(runner, tmp_path):
    result = runner.invoke(args=["bounces", "process", "--maildir", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a Maildir" in result.output


# --------------------------------------------------------------------------- IMAP


@pytest.fixture
def imap_server() -> Iterator[IMAPServer]:
    server = IMAPServer().start()
    yield server
    server.stop()


@pytest.mark.e2e
def test_processing_an_imap_folder_marks_what_it_read_as_seen(
    app, runner, sent_edition, imap_server
):
    imap_server.add(
        sample(
            "o365_recipient_not_found.eml",
            sent_edition["edition"],
            sent_edition["direktoer@kommune.dk"],
        )
    )
    imap_server.add(sample("outlook_automatic_reply.eml"))
    args = [
        "bounces", "process", "--imap", "127.0.0.1", "--imap-port", str(imap_server.port),
        "--no-ssl", "--imap-user", "bounces", "--imap-password-stdin",
    ]  # fmt: skip
    result = runner.invoke(args=args, input="hemmeligt-kodeord\n")
    assert result.exit_code == 0, result.output
    assert "2 message(s) read: 1 hard bounce(s)" in result.output
    assert bounces(app) == [
        ("direktoer@kommune.dk", "hard", "dsn", sent_edition["direktoer@kommune.dk"])
    ]
    assert all("\\Seen" in m.flags for m in imap_server.folders["INBOX"])
    # BODY.PEEK: nothing was marked seen before it was recorded.
    assert any("BODY.PEEK[]" in c for c in imap_server.commands)
    again = runner.invoke(args=args, input="hemmeligt-kodeord\n")
    assert "0 message(s) read" in again.output


@pytest.mark.e2e
def test_a_refused_imap_login_is_a_clear_error(runner, imap_server):
    result = runner.invoke(
        args=[
            "bounces",
            "process",
            "--imap",
            "127.0.0.1",
            "--imap-port",
            str(imap_server.port),
            "--no-ssl",
            "--imap-user",
            "bounces",
            "--imap-password-stdin",
        ],  # fmt: skip
        input="forkert\n",
    )
    assert result.exit_code == 2
    assert "refused the login" in result.output
