"""Personal links name a person by a random key, never by a (countable, reusable) row id.

Issue 18, findings 1 and 12: after the subscriber with the highest id was erased, SQLite
gave the next subscriber the same id and token version, and every old link of the erased
person opened, confirmed, exported and unsubscribed the new one.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, text

from newsletters.catalog.models import Newsletter
from newsletters.editions import sending
from newsletters.editions.models import Edition
from newsletters.extensions import db
from newsletters.staff.models import Staff
from newsletters.subscriptions import erasure, links
from newsletters.subscriptions.models import Subscriber, Subscription
from newsletters.timeutil import utcnow
from newsletters.tokens import LINK_KEY_PATTERN, Purpose, sign
from tests.conftest import TEST_SECRET
from tests.support.appclock import AppClock, controlled_clock
from tests.support.editions import confirmed_audience, draft
from tests.support.flows import (
    confirmed_subscriber,
    header,
    link_in,
    queued_mails,
    subscribe,
    subscriptions_of,
)
from tests.support.pages import csrf_token


@pytest.fixture
def clock() -> Iterator[AppClock]:
    yield from controlled_clock()


def _payload(token: str) -> dict:
    """What anyone can read from a token without the key (it is signed, not encrypted)."""
    body = token.split(".")[0] if not token.startswith(".") else token.split(".")[1]
    data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if token.startswith("."):
        data = zlib.decompress(data)
    return json.loads(data)


def _token(path: str) -> str:
    return urlsplit(path).path.rstrip("/").split("/")[2]


def _subscriber(app: Flask, address: str) -> Subscriber:
    with app.app_context():
        row = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
        db.session.expunge(row)
        db.session.remove()
        return row


def _manage_path(client, app, address: str) -> str:
    page = client.get("/manage")
    client.post("/manage", data={"csrf_token": csrf_token(page.data), "email": address})
    return link_in(queued_mails(app, address, kind="manage_link")[-1], "/manage/")


def _erase(app: Flask, address: str) -> int:
    with app.app_context():
        subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == address))
        erasure.erase(subscriber_id, never_again=False)
        db.session.remove()
        return subscriber_id


def _next_person_with_id(app: Flask, old_id: int, slugs=("momentum", "bestyrelse")) -> str:
    """W, pending for `slugs`, under the erased person's id and token version: what the
    old SQLite schema did to the next subscriber. Returns W's own confirm path."""
    with app.app_context():
        w = Subscriber(id=old_id, email="w@example.dk", name="Wilma Hansen", token_version=1)
        db.session.add(w)
        newsletters = db.session.scalars(select(Newsletter).where(Newsletter.slug.in_(slugs)))
        ids = []
        for newsletter in newsletters:
            db.session.add(Subscription(subscriber=w, newsletter=newsletter, requested_at=utcnow()))
            ids.append(newsletter.id)
        db.session.commit()
        path = urlsplit(links.confirm_url(w, ids)).path
        db.session.remove()
        return path


# --------------------------------------------------------------------------- finding 1


def test_an_erased_persons_links_never_act_on_the_next_person(client, app):
    # Z subscribes, confirms and keeps their mails, among them a confirm link for
    # bestyrelse that Z never used.
    confirmed_subscriber(client, app, "z@example.dk", ("momentum",))
    subscribe(client, "z@example.dk", ["bestyrelse"])
    confirm_path = link_in(queued_mails(app, "z@example.dk", kind="confirm")[-1], "/confirm/")
    assert client.get(confirm_path).status_code == 200
    manage_path = _manage_path(client, app, "z@example.dk")
    assert client.get(f"{manage_path}/data.json").status_code == 200
    unsubscribe_header = header(queued_mails(app, "z@example.dk")[-1], "List-Unsubscribe")
    unsubscribe_path = urlsplit(unsubscribe_header.strip("<>")).path
    z_id = _erase(app, "z@example.dk")

    # The next subscriber gets a new id now ...
    subscribe(client, "n@example.dk")
    assert _subscriber(app, "n@example.dk").id > z_id
    # ... but even if W had Z's id (as on the old schema), no link of Z's may reach W.
    own = _next_person_with_id(app, z_id)

    for path in (manage_path, f"{manage_path}/data.json", f"{manage_path}/delete", confirm_path):
        response = client.get(path)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, path
        assert "Linket virker ikke" in html
        assert "w@example.dk" not in html and "Wilma" not in html
        assert "nyt link" in html
    token = csrf_token(client.get("/").data)
    assert client.post(confirm_path, data={"csrf_token": token}).status_code == 400
    assert (
        client.post(f"{manage_path}/unsubscribe-all", data={"csrf_token": token}).status_code == 400
    )
    # The unsubscribe link never expires; it finds nobody now.
    page = client.get(unsubscribe_path)
    assert "w@example.dk" not in page.get_data(as_text=True)
    client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    assert subscriptions_of(app, "w@example.dk") == {"momentum": "pending", "bestyrelse": "pending"}

    # W's own links work.
    client.post(own, data={"csrf_token": csrf_token(client.get(own).data)})
    assert subscriptions_of(app, "w@example.dk") == {
        "momentum": "confirmed",
        "bestyrelse": "confirmed",
    }


def test_ids_are_never_handed_out_again(app):
    """Subscribers, staff, editions and newsletters: delete the newest, make another, and
    it gets a new id (SQLite AUTOINCREMENT; PostgreSQL sequences)."""
    with app.app_context():
        newsletter_id = db.session.scalar(
            select(Newsletter.id).where(Newsletter.slug == "momentum")
        )
        rows = {
            Subscriber: lambda n: {"email": f"p{n}@example.dk", "link_key": f"{n:022d}"},
            Staff: lambda n: {
                "email": f"s{n}@kl.dk",
                "role": "editor",
                "password_hash": "x",
                "session_version": 1,
            },
            Edition: lambda n: {"newsletter_id": newsletter_id, "subject": f"Nr. {n}"},
            Newsletter: lambda n: {"slug": f"ny-{n}", "name": f"Ny {n}"},
        }
        for model, values in rows.items():
            first = model(**values(1))
            db.session.add(first)
            db.session.commit()
            highest = first.id
            db.session.delete(first)
            db.session.commit()
            second = model(**values(2))
            db.session.add(second)
            db.session.commit()
            assert second.id > highest, model.__tablename__


# --------------------------------------------------------------------------- finding 12


def test_no_link_carries_a_row_id(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum",))
    subscriber = _subscriber(app, "a@example.dk")
    assert LINK_KEY_PATTERN.fullmatch(subscriber.link_key)
    mailed = [link_in(queued_mails(app, "a@example.dk", kind="confirm")[0], "/confirm/")]
    mailed += [
        urlsplit(header(mail, "List-Unsubscribe").strip("<>")).path
        for mail in queued_mails(app, "a@example.dk")
        if header(mail, "List-Unsubscribe")
    ]
    with app.app_context():
        momentum = db.session.scalar(select(Newsletter).where(Newsletter.slug == "momentum"))
        newsletter_ids = set(db.session.scalars(select(Newsletter.id)))
        bulk = links.BulkLinks()
        urls = [
            links.confirm_url(subscriber, [momentum.id]),
            links.manage_url(subscriber),
            links.unsubscribe_url(subscriber),
            links.unsubscribe_url(subscriber, momentum.id),
            links.join_url(subscriber, momentum.id),
            bulk.manage(subscriber.link_key, subscriber.token_version, "da"),
            bulk.unsubscribe(subscriber.link_key, subscriber.token_version, "da", momentum.id),
        ]
    paths = mailed + [urlsplit(url).path for url in urls]
    assert len(paths) >= 9
    for path in paths:
        payload = _payload(_token(path))
        assert set(payload) <= {"k", "v", "n"}, payload
        assert payload["k"] == subscriber.link_key
        # Nothing countable but the newsletters' own ids, which are public anyway.
        assert set(payload.get("n", [])) <= newsletter_ids


def test_links_in_a_sent_edition_name_the_person_by_key(mail_app, smtp_server):
    [address] = confirmed_audience(mail_app, 1)
    subscriber = _subscriber(mail_app, address)
    edition_id = draft(mail_app)
    with mail_app.app_context():
        sending.start_send(edition_id)
        sending.send_due("test-worker")
        db.session.remove()
    [mail] = smtp_server.wait_for(1)
    unsubscribe = urlsplit(mail.message["List-Unsubscribe"].strip("<>")).path
    manage = urlsplit(mail.link("/manage/")).path
    for path in (unsubscribe, manage):
        payload = _payload(_token(path))
        # "e": the edition whose link it is (public: its web version names it too).
        assert set(payload) <= {"k", "v", "n", "e"} and payload["k"] == subscriber.link_key
        assert payload.get("e", edition_id) == edition_id


def test_every_subscriber_gets_a_different_key(client, app):
    for n in range(20):
        subscribe(client, f"p{n}@example.dk")
    with app.app_context():
        keys = db.session.scalars(select(Subscriber.link_key)).all()
    assert len(keys) == 20 and len(set(keys)) == 20
    assert all(LINK_KEY_PATTERN.fullmatch(key) for key in keys)


@pytest.mark.parametrize(
    "payload",
    [
        {"k": "too-short", "v": 1},
        {"k": "A" * 21 + "!", "v": 1},
        {"k": None, "v": 1},
        {"k": 7, "v": 1},
        {"s": 10**30, "v": 1},
        {"s": -1, "v": 1},
        {"s": "1; DROP TABLE subscribers", "v": 1},
        {"v": 1},
    ],
)
def test_odd_signed_payloads_get_the_clear_page(client, app, payload):
    confirmed_subscriber(client, app, "a@example.dk")
    for purpose, prefix in ((Purpose.MANAGE, "/manage/"), (Purpose.CONFIRM, "/confirm/")):
        token = URLSafeTimedSerializer(TEST_SECRET, salt=f"newsletters.{purpose.value}").dumps(
            payload
        )
        response = client.get(prefix + token)
        assert response.status_code == 400
        assert "Linket virker ikke" in response.get_data(as_text=True)


# --------------------------------------------------------------------------- old links


def _legacy(purpose: Purpose, payload: dict) -> str:
    """A link as the code before migration 0008 made it: {"s": row id, ...}."""
    return sign(purpose, payload)


def test_old_links_work_for_the_person_they_were_mailed_to(client, app, clock):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    subscriber = _subscriber(app, "a@example.dk")
    clock.advance(days=2)
    with app.app_context():
        momentum = db.session.scalar(select(Newsletter.id).where(Newsletter.slug == "momentum"))
        manage = _legacy(Purpose.MANAGE, {"s": subscriber.id, "v": 1})
        unsubscribe = _legacy(Purpose.UNSUBSCRIBE, {"s": subscriber.id, "v": 1, "n": [momentum]})
    assert "a@example.dk" in client.get(f"/manage/{manage}").get_data(as_text=True)
    assert client.post(f"/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert subscriptions_of(app, "a@example.dk") == {
        "momentum": "unsubscribed",
        "bestyrelse": "confirmed",
    }


def test_old_links_signed_before_a_row_took_over_the_id_are_refused(client, app, clock):
    # Z's links were mailed on day 0; Z was erased; W signed up later under Z's old id.
    confirmed_subscriber(client, app, "z@example.dk", ("momentum",))
    z_id = _subscriber(app, "z@example.dk").id
    with app.app_context():
        momentum = db.session.scalar(select(Newsletter.id).where(Newsletter.slug == "momentum"))
        manage = _legacy(Purpose.MANAGE, {"s": z_id, "v": 1})
        unsubscribe = _legacy(Purpose.UNSUBSCRIBE, {"s": z_id, "v": 1})
        confirm = _legacy(Purpose.CONFIRM, {"s": z_id, "v": 1, "n": [momentum]})
    _erase(app, "z@example.dk")
    clock.advance(seconds=1)
    _next_person_with_id(app, z_id, ("momentum",))

    for path in (f"/manage/{manage}", f"/manage/{manage}/data.json", f"/confirm/{confirm}"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "w@example.dk" not in response.get_data(as_text=True)
    page = client.get(f"/unsubscribe/{unsubscribe}")
    assert page.status_code == 400 and "w@example.dk" not in page.get_data(as_text=True)
    response = client.post(f"/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    token = csrf_token(client.get("/").data)
    client.post(f"/confirm/{confirm}", data={"csrf_token": token})
    assert subscriptions_of(app, "w@example.dk") == {"momentum": "pending"}


def test_migration_gives_each_existing_subscriber_its_own_key(app):
    """Downgrade to 0007, add subscribers as the old code did, upgrade again."""
    with app.app_context():
        db.session.remove()
        downgrade(revision="0007")
        try:
            for n in range(1, 6):
                db.session.execute(
                    text(
                        "INSERT INTO subscribers (email, name, municipality, role, locale, "
                        "token_version, created_at, updated_at) VALUES (:email, '', '', '', "
                        "'da', 1, :at, :at)"
                    ),
                    {"email": f"old{n}@example.dk", "at": "2026-01-01 00:00:00"},
                )
            db.session.commit()
        finally:
            db.session.remove()
            upgrade()
        keys = db.session.scalars(select(Subscriber.link_key)).all()
        assert len(keys) == 5 and len(set(keys)) == 5
        assert all(LINK_KEY_PATTERN.fullmatch(key) for key in keys)
        db.session.remove()
