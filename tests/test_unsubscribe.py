"""Unsubscribe: per-recipient link (GET shows, POST acts) and RFC 8058 one-click."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select

from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.subscriptions import links
from newsletters.subscriptions.models import ConsentEvent, Subscriber
from tests.support.flows import confirmed_subscriber, subscriptions_of


def _unsubscribe_path(app, address: str, slug: str | None = None) -> str:
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
        newsletter_id = newsletter_by_slug(slug).id if slug else None
        return urlsplit(links.unsubscribe_url(subscriber, newsletter_id)).path


def test_get_on_unsubscribe_link_changes_nothing(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    path = _unsubscribe_path(app, "a@example.dk", "momentum")
    for _ in range(3):
        page = client.get(path)
        assert page.status_code == 200
        assert 'method="post"' in page.get_data(as_text=True)
    assert subscriptions_of(app, "a@example.dk") == {
        "momentum": "confirmed",
        "bestyrelse": "confirmed",
    }


def test_unsubscribe_button_stops_one_newsletter_and_records_withdrawal(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    path = _unsubscribe_path(app, "a@example.dk", "momentum")
    client.environ_base.update(REMOTE_ADDR="203.0.113.5")
    response = client.post(path)
    assert response.status_code == 200
    assert subscriptions_of(app, "a@example.dk") == {
        "momentum": "unsubscribed",
        "bestyrelse": "confirmed",
    }
    with app.app_context():
        event = db.session.scalars(
            select(ConsentEvent).where(ConsentEvent.action == "withdrawn")
        ).one()
        assert (event.method, event.ip) == ("unsubscribe_page", "203.0.113.5")


def _one_click(app, path: str, **kwargs):
    """A mail provider's POST: a fresh client, so no cookies at all."""
    return app.test_client(use_cookies=False).post(path, **kwargs)


def test_one_click_urlencoded_without_cookies(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "bestyrelse"))
    response = _one_click(
        app,
        _unsubscribe_path(app, "a@example.dk", "bestyrelse"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert subscriptions_of(app, "a@example.dk") == {
        "momentum": "confirmed",
        "bestyrelse": "unsubscribed",
    }
    with app.app_context():
        event = db.session.scalars(
            select(ConsentEvent).where(ConsentEvent.action == "withdrawn")
        ).one()
        assert event.method == "one_click"


def test_one_click_multipart_without_cookies(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    response = _one_click(
        app,
        _unsubscribe_path(app, "a@example.dk", "momentum"),
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "unsubscribed"}


def test_one_click_answers_without_redirect_and_is_idempotent(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    path = _unsubscribe_path(app, "a@example.dk", "momentum")
    for _ in range(2):
        response = _one_click(app, path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert "Location" not in response.headers
    with app.app_context():
        assert (
            len(
                db.session.scalars(
                    select(ConsentEvent).where(ConsentEvent.action == "withdrawn")
                ).all()
            )
            == 1
        )


def test_unsubscribe_without_newsletter_stops_everything(client, app):
    confirmed_subscriber(client, app, "a@example.dk", ("momentum", "kl-nyheder"))
    _one_click(app, _unsubscribe_path(app, "a@example.dk"), data={"List-Unsubscribe": "One-Click"})
    assert set(subscriptions_of(app, "a@example.dk").values()) == {"unsubscribed"}


def test_unsubscribe_still_works_after_links_are_revoked(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    path = _unsubscribe_path(app, "a@example.dk", "momentum")
    with app.app_context():
        db.session.scalar(select(Subscriber)).token_version += 1
        db.session.commit()
    assert _one_click(app, path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "unsubscribed"}


def test_unsubscribe_for_an_erased_person_answers_calmly(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    path = _unsubscribe_path(app, "a@example.dk", "momentum")
    with app.app_context():
        from newsletters.subscriptions.erasure import erase

        erase(db.session.scalar(select(Subscriber.id)))
    assert client.get(path).status_code == 200
    assert _one_click(app, path, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_tampered_unsubscribe_link_gets_a_clear_page(client, app):
    confirmed_subscriber(client, app, "a@example.dk")
    path = _unsubscribe_path(app, "a@example.dk", "momentum")
    bad = path[:-2] + ("xy" if not path.endswith("xy") else "zz")
    assert client.get(bad).status_code == 400
    response = _one_click(app, bad, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert b"Traceback" not in response.data
    assert subscriptions_of(app, "a@example.dk") == {"momentum": "confirmed"}
