"""A feed's place in the digest: a refused place is told in the editor's language."""

from __future__ import annotations

import html

import pytest

from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.models import Feed
from tests.test_editor import post_form
from tests.test_staff import EDITOR, login, make_staff

PAGE = "/staff/newsletters/kl-nyheder/feeds"


@pytest.fixture
def editor_client(client, app):
    make_staff(app, EDITOR, "editor")
    assert login(client, EDITOR).status_code == 303
    return client


@pytest.fixture
def feed_id(app) -> int:
    with app.app_context():
        return services.add_feed("kl-nyheder", "https://www.kl.dk/rss").id


@pytest.mark.parametrize("bad", ["-1", "10000", "abc", "1e9", "", "5\r\n6"])
@pytest.mark.parametrize(
    ("lang", "said"),
    [(None, "Angiv et helt tal fra 0 til 9999."), ("en", "Enter a whole number from 0 to 9999.")],
)
def test_a_refused_place_is_told_in_the_editors_language(
    editor_client, app, feed_id, bad, lang, said
):
    if lang:
        editor_client.get(f"{PAGE}?lang={lang}")
    refused = post_form(editor_client, f"/staff/feeds/{feed_id}/position", {"position": bad}, PAGE)
    assert refused.status_code == 303
    page = html.unescape(editor_client.get(PAGE).get_data(as_text=True))
    assert said in page
    # Said once, and nothing of WTForms' own English.
    assert page.count(said) == 1
    for english in ("Not a valid", "This field is required", "Number must be"):
        assert english not in page
    with app.app_context():
        assert db.session.get(Feed, feed_id).position == 0
