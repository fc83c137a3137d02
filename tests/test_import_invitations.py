"""The invitations of an import (issue 17): rendered once per language and assembled per
person (subscriptions.mails.ConfirmationMails), each the very mail the old way renders
for that person but for their own links, Date, Message-ID and MIME boundary; and each
person's links act on that person only."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from flask import Flask, current_app
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select

from newsletters.catalog.models import Newsletter
from newsletters.extensions import db
from newsletters.mailing import outbox
from newsletters.mailing.addresses import ascii_address
from newsletters.mailing.compose import PersonalTemplate, RenderedMail, render_mail
from newsletters.mailing.models import OutboxMessage
from newsletters.subscriptions import links, mails
from newsletters.subscriptions.models import Subscriber
from newsletters.tokens import Purpose, SubscriberLink, verify
from tests.conftest import deliver
from tests.support.flows import subscriptions_of
from tests.support.pages import csrf_token

PEOPLE = {
    "anna@kommune.dk": "da",
    "bo.hansen@kommune.dk": "da",
    "emma@kommune.dk": "en",
    "o'brien+nyt=ja@kommune.dk": "en",
    # Long enough that its links and header are near the line limits.
    ("x" * 60 + "@" + "a" * 60 + ".kommune.dk"): "da",
    # An IDN domain: its row is built in Python (the database cannot write xn--).
    "borgmester@ærø.dk": "da",
}


def import_people(app: Flask, tmp_path: Path):
    with app.app_context():
        for address, locale in PEOPLE.items():
            if locale != "da":  # known already, in English (no subscription yet)
                db.session.add(Subscriber(email=address, locale=locale))
        db.session.commit()
        db.session.remove()
    path = tmp_path / "import.csv"
    path.write_text("email,name\n" + "".join(f"{a},Navn\n" for a in PEOPLE), encoding="utf-8")
    result = app.test_cli_runner().invoke(
        args=["subscribers", "import", str(path), "--newsletter", "momentum"]
    )
    assert result.exit_code == 0, result.output


def parts(raw: str) -> list[str]:
    message = email.message_from_string(raw, policy=email.policy.default)
    return [part.get_content() for part in message.iter_parts()]


def links_in(raw: str) -> dict[str, str]:
    """{"confirm"/"manage"/"unsubscribe": the URL} of a mail (text part and header)."""
    text, _html = parts(raw)
    found = {kind: url for url, kind in re.findall(r"(https?://\S+/(confirm|manage)/\S+)", text)}
    header = email.message_from_string(raw, policy=email.policy.default)["List-Unsubscribe"]
    found["unsubscribe"] = str(header).strip("<>")
    return found


def normalised(raw: str) -> str:
    """Without what differs between two renderings of one mail for one person."""
    boundary = re.search(r'boundary="([^"]+)"', raw).group(1)
    raw = raw.replace(boundary, "BOUNDARY")
    raw = re.sub(r"\r\nDate: [^\r]*\r\n", "\r\nDate: DATE\r\n", raw)
    return re.sub(r"\r\nMessage-ID: [^\r]*\r\n", "\r\nMessage-ID: ID\r\n", raw)


def old_way(subscriber: Subscriber, newsletter: Newsletter, found: dict[str, str]) -> dict:
    """`mails.confirmation_mail_row` (render and build the whole mail) with these links."""
    mail = render_mail(
        "confirm",
        locale=subscriber.locale,
        newsletters=[newsletter],
        confirm_url=found["confirm"],
        manage_url=found["manage"],
        max_age_days=current_app.config["CONFIRM_MAX_AGE_DAYS"],
    )
    return outbox.message_row(
        kind="confirm",
        to=subscriber.email,
        mail=mail,
        subscriber_id=subscriber.id,
        unsubscribe_url=found["unsubscribe"],
    )


def test_each_invitation_is_the_mail_the_old_way_renders_for_that_person(make_app, tmp_path, clock):
    app = make_app(CONFIRM_MAX_AGE_DAYS=30)
    import_people(app, tmp_path)
    with app.app_context():
        newsletter = db.session.scalar(select(Newsletter).where(Newsletter.slug == "momentum"))
        messages = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "confirm")
        ).all()
        assert sorted(m.to_address for m in messages) == sorted(map(ascii_address, PEOPLE))
        languages = set()
        for message in messages:
            subscriber = db.session.get(Subscriber, message.subscriber_id)
            assert ascii_address(subscriber.email) == message.to_address
            found = links_in(message.raw)
            row = old_way(subscriber, newsletter, found)
            assert normalised(message.raw) == normalised(row["raw"])
            assert message.subject == row["subject"]
            assert message.envelope_from == row["envelope_from"]
            # The links the old way signs for this person say the same (only the
            # signature's time may differ).
            assert verify(
                Purpose.CONFIRM, found["confirm"].split("/confirm/")[1].split("?")[0]
            ) == (
                SubscriberLink(
                    subscriber.link_key, subscriber.token_version, (newsletter.id,)
                ).payload()
            )
            for kind, url in (
                ("confirm", links.confirm_url(subscriber, [newsletter.id])),
                ("manage", links.manage_url(subscriber)),
                ("unsubscribe", links.unsubscribe_url(subscriber)),
            ):
                purpose = Purpose(kind)
                token, ours = url.split(f"/{kind}/")[1], found[kind].split(f"/{kind}/")[1]
                assert verify(purpose, ours.split("?")[0]) == verify(purpose, token.split("?")[0])
                assert ("?lang=en" in ours) == (subscriber.locale == "en")
            languages.add(subscriber.locale)
            greeting = {"da": "Hej\r\n", "en": "Hello\r\n"}[subscriber.locale]
            assert parts(message.raw)[0].startswith(greeting)
        assert languages == {"da", "en"}
        db.session.remove()


def test_each_persons_links_act_on_that_person_only(make_app, tmp_path, clock):
    app = make_app()
    import_people(app, tmp_path)
    client = app.test_client()
    with app.app_context():
        raw = {
            m.to_address: m.raw
            for m in db.session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "confirm")
            )
        }
        db.session.remove()
    anna, bo, emma = "anna@kommune.dk", "bo.hansen@kommune.dk", "emma@kommune.dk"

    path = links_in(raw[anna])["confirm"].removeprefix("http://localhost")
    page = client.get(path)
    assert page.status_code == 200
    client.post(path, data={"csrf_token": csrf_token(page.data)})
    assert subscriptions_of(app, anna) == {"momentum": "confirmed"}
    assert subscriptions_of(app, bo) == {"momentum": "pending"}
    assert subscriptions_of(app, emma) == {"momentum": "pending"}

    # Emma's one-click unsubscribe (header) takes Emma out, and nobody else.
    url = links_in(raw[emma])["unsubscribe"].removeprefix("http://localhost")
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert subscriptions_of(app, emma) == {"momentum": "unsubscribed"}
    assert subscriptions_of(app, anna) == {"momentum": "confirmed"}
    assert subscriptions_of(app, bo) == {"momentum": "pending"}

    # Bo's manage link opens Bo's preference centre, not another row's.
    page = client.get(links_in(raw[bo])["manage"].removeprefix("http://localhost"))
    assert page.status_code == 200
    assert bo.encode() in page.data and anna.encode() not in page.data

    # Another person's token spliced into one's mail is still that other person's.
    forged = links_in(raw[bo])["confirm"].split("/confirm/")[1]
    with app.app_context():
        owner, _ = links.verified_subscriber(Purpose.CONFIRM, forged.split("?")[0])
        assert owner.email == bo
        db.session.remove()


def test_a_template_gives_back_the_mail_it_was_cut_from_for_hostile_values(app):
    marks = ("NLxPERSONALxAxURL", "NLxPERSONALxBxURL")
    text = (
        "Æble ø å " * 20 + "\n.dot line NLxPERSONALxAxURL\nend with space \n"
        "NLxPERSONALxBxURL\tand trailing tab\t\n\fform feed\x0bvt line\n"
    )
    html = '<p>NLxPERSONALxAxURL</p><a href="NLxPERSONALxBxURL">x</a>\n<p>ø' + "é" * 80 + "</p>\n"
    mail = RenderedMail(subject="Emne med æøå og =?utf-8?q?x?=", text=text, html=html)
    from newsletters.mailing.compose import build_message

    with app.app_context():
        template = PersonalTemplate(mail, marks=marks, unsubscribe_mark="NLxPERSONALxBxURL")
        for to, a, b in [
            ("someone@kommune.dk", "https://x.dk/a?x=1&y=<2>", "https://x.dk/" + "b" * 300),
            ('"odd person"@kommune.dk', "=3D=\r\n.", "https://x.dk/b?lang=en"),
            ("x" * 64 + "@" + "d" * 180 + ".dk", "ø" * 100, "https://x.dk/" + "=" * 80),
            ("=?utf-8?q?x?=@kommune.dk", "\x00nul", "https://x.dk/b\x00"),
            ("a@kommune.dk.", "x" * 5000, "https://x.dk/" + "y" * 1200),
        ]:
            fast = template.message(to=to, values={marks[0]: a, marks[1]: b})
            a_html, b_html = (
                v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for v in (a, b)
            )
            slow = build_message(
                to=to,
                subject=mail.subject,
                text=text.replace(marks[0], a).replace(marks[1], b),
                html=html.replace(marks[0], a_html).replace(marks[1], b_html),
                unsubscribe_url=b,
            ).decode("ascii")
            assert normalised(fast) == normalised(slow)


@pytest.mark.parametrize("locale", ["da", "en"])
def test_confirmation_mails_match_confirmation_mail_row(app, locale, clock):
    with app.app_context():
        newsletter = db.session.scalar(select(Newsletter).where(Newsletter.slug == "momentum"))
        person = Subscriber(email="p@kommune.dk", locale=locale)
        db.session.add(person)
        db.session.flush()
        fast = mails.ConfirmationMails([newsletter]).row(person)
        slow = mails.confirmation_mail_row(person, [newsletter])
        assert "raw" not in fast and len(fast["fills"]) < 400
        fast_raw = OutboxMessage(**fast).raw  # written now, as the worker writes it
        assert normalised(fast_raw) == normalised(
            old_way(person, newsletter, links_in(fast_raw))["raw"]
        )
        for key in ("kind", "subscriber_id", "to_address", "envelope_from", "subject", "status"):
            assert fast[key] == slow[key]
        db.session.rollback()
        db.session.remove()


def test_a_personal_line_is_encoded_as_the_whole_line_is_at_every_break():
    """Quoted-printable breaks a line every 76 octets, never inside an "=XX", and quotes
    whitespace at its end: a line with a link is encoded per person from its part before
    the link encoded once, and must give what encoding the whole line gives, wherever
    the link, an escape or the line's end falls."""
    from newsletters.mailing.compose import _PersonalLine, _qp_line

    marks = ("NLxPERSONALxAxURL", "NLxPERSONALxBxURL")
    random = __import__("random").Random(17)
    alphabet = ["a", "=", "ø", " ", "\t", ".", "é", "<", "æble"]
    values = ["", "x", "=", "https://x.dk/confirm/abc.def?lang=en", "a " * 40, "ø=" * 30]
    for _ in range(3000):
        prefix = "".join(random.choice(alphabet) for _ in range(random.randrange(0, 200)))
        middle = "".join(random.choice(alphabet) for _ in range(random.randrange(0, 8)))
        suffix = "".join(random.choice(alphabet) for _ in range(random.randrange(0, 90)))
        source = prefix + marks[0] + middle + marks[1] + suffix
        a = random.choice(values) + "x" * random.randrange(0, 80) + random.choice(["", " ", "="])
        b = random.choice(values)
        line = _PersonalLine(source, marks)
        whole = prefix + a + middle + b + suffix
        assert line.encode({marks[0]: a, marks[1]: b}) == _qp_line(whole), whole
    # A value with a line break makes two lines, as in the whole body.
    line = _PersonalLine("x" * 100 + marks[0], marks)
    assert line.encode({marks[0]: "a\r\nb"}) == _qp_line("x" * 100 + "a\r\nb")


@pytest.mark.parametrize(
    "link",
    [
        SubscriberLink("A" * 22, 1),
        SubscriberLink("abc_DEF-0123456789abcd", 7, (3, 1), edition_id=12),
        SubscriberLink("abc_DEF-0123456789abcd", 0, (), edition_id=None),
        SubscriberLink('quote"and\\back', 1),  # not a link key: json.dumps writes it
        SubscriberLink("A" * 22, True),  # a bool is not an int to JSON
        SubscriberLink("A" * 22, 2, (True,)),
    ],
)
def test_a_links_payload_is_encoded_as_sign_encodes_it(app, link):
    from newsletters.tokens import BulkSigner, encode_payload

    assert link.encoded() == encode_payload(link.payload())
    with app.app_context():
        token = BulkSigner(Purpose.MANAGE).sign_encoded(link.encoded())
        assert verify(Purpose.MANAGE, token) == link.payload()


# --------------------------------------------------------------------------- written when sent


def test_an_invitation_is_stored_small_and_written_when_the_worker_sends_it(
    make_app, smtp_server, tmp_path, clock
):
    """An import's invitation row holds what is personal in it, not 6.7 kB of message
    (mailing.deferred); the worker writes the message and the SMTP server gets it whole,
    the same bytes on a retry, its links good."""
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    import_people(app, tmp_path)
    with app.app_context():
        rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "confirm"))
        written = {}
        for row in rows:
            assert row.stored_raw is None and len(row.fills) < 400
            assert row.raw == row.raw  # the same message on every call (a retry)
            written[row.to_address] = row.raw
        db.session.remove()
    assert deliver(app).sent == len(PEOPLE)
    received = {m.rcpt_to: m for m in smtp_server.wait_for(len(PEOPLE))}
    assert set(received) == set(map(ascii_address, PEOPLE))
    for address, message in received.items():
        # What the server got is what `raw` wrote (unstuffed), CRLF ended.
        assert message.raw.rstrip(b"\r\n") == written[address].encode("ascii").rstrip(b"\r\n")
        parsed = message.message
        assert parsed["To"].addresses[0].addr_spec == address
        assert parsed["Message-ID"] and parsed["Date"]
    anna = received["anna@kommune.dk"].raw.decode("ascii")
    client = app.test_client()
    path = links_in(anna)["confirm"].removeprefix("http://localhost")
    page = client.get(path)
    assert page.status_code == 200 and "Bekræft".encode() in page.data
    client.post(path, data={"csrf_token": csrf_token(page.data)})
    assert subscriptions_of(app, "anna@kommune.dk") == {"momentum": "confirmed"}


def test_fills_with_characters_json_must_escape_still_give_a_good_mail(app, clock):
    """A link key or language that is not plain (none of ours is; an old row might be)
    is JSON-encoded, not written into the fills as it is."""
    with app.app_context():
        newsletter = db.session.scalar(select(Newsletter).where(Newsletter.slug == "momentum"))
        person = Subscriber(email="p@kommune.dk", locale="da", link_key='k"\\\n}{,"x')
        db.session.add(person)
        db.session.flush()
        row = mails.ConfirmationMails([newsletter]).row(person)
        assert json.loads(row["fills"])["key"] == 'k"\\\n}{,"x'
        raw = OutboxMessage(**row).raw
        token = links_in(raw)["manage"].split("/manage/")[1].split("?")[0]
        assert (
            verify(Purpose.MANAGE, token)
            == SubscriberLink(person.link_key, person.token_version).payload()
        )
        db.session.rollback()
        db.session.remove()


def test_an_invitation_whose_newsletter_is_gone_fails_alone(make_app, smtp_server, tmp_path):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    import_people(app, tmp_path)
    with app.app_context():
        first = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        fills = json.loads(first.fills)
        fills["newsletters"] = [987654]
        first.fills = json.dumps(fills)
        db.session.commit()
        gone = first.id
        db.session.remove()
    stats = deliver(app)
    assert stats.sent == len(PEOPLE) - 1 and stats.failed == 1
    with app.app_context():
        message = db.session.get(OutboxMessage, gone)
        assert message.status.value == "failed" and "gone" in message.last_error
        db.session.remove()


def test_migration_0031_keeps_waiting_invitations_from_a_downgrade(app, tmp_path, capfd):
    import_people(app, tmp_path)
    with app.app_context():
        db.session.remove()
        with pytest.raises(SystemExit):  # flask_migrate's way of saying the error
            downgrade(revision="0030")
        err = capfd.readouterr().err
        assert f"{len(PEOPLE)} outbox message(s) are written only when they are sent" in err
        db.session.remove()
        assert all(m.fills for m in db.session.scalars(select(OutboxMessage)))
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == len(PEOPLE)
        db.session.remove()
        # The later migrations were undone on the way down to 0031 (SQLite has no
        # transactional DDL): back to the head for the tests that follow.
        upgrade()
        db.session.remove()
