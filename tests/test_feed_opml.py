"""OPML: feeds exported for feed readers, and imported safely (no entities, a size
limit, every address checked as when added by hand, a bad file refused whole)."""

from __future__ import annotations

import html

import pytest
from flask import Flask
from sqlalchemy import func, select

from newsletters.catalog.services import newsletter_by_slug
from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.models import Feed
from newsletters.feeds.opml import MAX_BYTES, OpmlError, OpmlGroup, parse_opml, write_opml

GOOD = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Mine feeds</title></head>
  <body>
    <outline text="Kommuner">
      <outline type="rss" text="KL nyheder" xmlUrl="https://www.kl.dk/rss/nyheder"/>
      <outline type="rss" title="&#xC6;ldre &amp; sundhed" xmlUrl="https://www.kl.dk/rss/aeldre"/>
    </outline>
    <outline type="rss" text="Ingen titel" xmlUrl="https://example.org/feed.xml"/>
    <outline text="a folder without feeds"/>
  </body>
</opml>
"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<opml version="2.0"><body><outline text="&lol4;" xmlUrl="https://kl.dk/&lol4;"/></body></opml>
"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body><outline text="&xxe;" xmlUrl="https://kl.dk/x"/></body></opml>
"""


def _feed_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Feed.id)))


# --------------------------------------------------------------------------- reading


def test_the_feeds_of_a_file_are_read_at_any_depth():
    feeds = parse_opml(GOOD)
    assert [(f.url, f.title) for f in feeds] == [
        ("https://www.kl.dk/rss/nyheder", "KL nyheder"),
        ("https://www.kl.dk/rss/aeldre", "Ældre & sundhed"),
        ("https://example.org/feed.xml", "Ingen titel"),
    ]
    assert [f.folder for f in feeds] == ["Kommuner", "Kommuner", ""]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (LAUGHS, "DOCTYPE"),
        (EXTERNAL, "DOCTYPE"),
        (b'<opml><body><outline text="&undefined;" xmlUrl="https://a.dk"/></body></opml>', "XML"),
        (b"<html><body>not opml</body></html>", "not <opml>"),
        (b"", "not well-formed"),
        (b"\x00\x01garbage", "not well-formed"),
        (b"<opml>" + b"<outline>" * 30 + b"</outline>" * 30 + b"</opml>", "deeper"),
        (
            b"<opml><body>" + b'<outline xmlUrl="https://a.dk/x"/>' * 1001 + b"</body></opml>",
            "more than",
        ),
        (b"<opml>" + b" " * (MAX_BYTES + 1) + b"</opml>", "larger than"),
    ],
)
def test_hostile_files_are_refused_with_a_reason(data, reason):
    with pytest.raises(OpmlError) as refused:
        parse_opml(data)
    assert reason in str(refused.value)


# --------------------------------------------------------------------------- import and export


def test_import_adds_every_feed_once_and_export_gives_them_back(app):
    with app.app_context():
        outcome = services.import_opml("kl-nyheder", GOOD, by="test")
        assert len(outcome.added) == 3 and outcome.already == []
        again = services.import_opml("kl-nyheder", GOOD, by="test")
        assert again.added == [] and len(again.already) == 3
        exported = services.export_opml("kl-nyheder")
    assert _feed_count(app) == 3
    back = parse_opml(exported.encode())
    assert [(f.url, f.title) for f in back] == [
        ("https://www.kl.dk/rss/nyheder", "KL nyheder"),
        ("https://www.kl.dk/rss/aeldre", "Ældre & sundhed"),
        ("https://example.org/feed.xml", "Ingen titel"),
    ]


def test_a_whole_export_round_trips_into_each_newsletter_by_its_folder(app, runner, tmp_path):
    """export-opml (every newsletter, a folder each) then import-opml FILE without
    --newsletter into an installation without feeds: every feed back where it was."""
    with app.app_context():
        services.import_opml("kl-nyheder", GOOD, by="test")
        services.add_feed("momentum", "https://www.kl.dk/rss/momentum", title="Momentum")
        services.add_feed("bestyrelse", "https://www.kl.dk/rss/nyheder", title="Også her")
        before = _feeds_by_newsletter()
    exported = runner.invoke(args=["feeds", "export-opml"])
    assert exported.exit_code == 0, exported.output
    path = tmp_path / "alle.opml"
    path.write_text(exported.output, encoding="utf-8")
    with app.app_context():
        for feed in db.session.scalars(select(Feed)).all():
            services.remove_feed(feed.id)
    assert _feed_count(app) == 0
    result = runner.invoke(args=["feeds", "import-opml", str(path)])
    assert result.exit_code == 0, result.output
    assert "5 feed(s) added, 0 already there" in result.output
    with app.app_context():
        assert _feeds_by_newsletter() == before
    again = runner.invoke(args=["feeds", "import-opml", str(path)])
    assert again.exit_code == 0 and "0 feed(s) added, 5 already there" in again.output
    # A folder that names no newsletter: the whole file is refused, nothing added.
    stray = tmp_path / "stray.opml"
    stray.write_text(exported.output.replace("Momentum", "Ukendt"), encoding="utf-8")
    with app.app_context():
        services.remove_feed(db.session.scalar(select(Feed.id).where(Feed.url.like("%momentum"))))
    refused = runner.invoke(args=["feeds", "import-opml", str(stray)])
    assert refused.exit_code == 1 and "'Ukendt' names no newsletter" in refused.output
    assert _feed_count(app) == 4


def test_an_export_leaves_out_what_xml_cannot_hold():
    written = write_opml(
        "KL", [OpmlGroup("KL\x0b", [("https://kl.dk/a?x=1&y=2", "Æ\x00\x1f<b> & \ufffe")])]
    )
    [feed] = parse_opml(written.encode())
    assert (feed.url, feed.title, feed.folder) == ("https://kl.dk/a?x=1&y=2", "Æ<b> &", "KL")


def _feeds_by_newsletter() -> set[tuple[str, str, str]]:
    return {
        (feed.newsletter.slug, feed.url, feed.title) for feed in db.session.scalars(select(Feed))
    }


def test_a_file_with_one_bad_feed_is_refused_whole(make_app):
    app = make_app(FEEDS_ALLOW_PRIVATE=False, FEEDS_TIMEOUT_SECONDS=2)
    bad = GOOD.replace(
        b"</body>",
        b'<outline xmlUrl="http://127.0.0.1:8080/feed"/>'
        b'<outline xmlUrl="javascript:alert(1)"/>'
        b'<outline xmlUrl="https://kl.dk/a&#13;&#10;b"/></body>',
    )
    with app.app_context(), pytest.raises(OpmlError) as refused:
        services.import_opml("kl-nyheder", bad, by="test")
    errors = refused.value.errors
    assert len(errors) == 3
    assert "loopback" in errors[0] and "line" in errors[0]
    assert "not an http(s) address" in errors[1]
    assert "spaces" in errors[2] or "not an http(s)" in errors[2]
    assert _feed_count(app) == 0


def test_cli_exports_and_imports_with_clear_errors(runner, app, tmp_path):
    good = tmp_path / "good.opml"
    good.write_bytes(GOOD)
    result = runner.invoke(args=["feeds", "import-opml", str(good), "--newsletter", "kl-nyheder"])
    assert result.exit_code == 0, result.output
    assert "3 feed(s) added, 0 already there" in result.output
    exported = runner.invoke(args=["feeds", "export-opml"])
    assert exported.exit_code == 0 and 'xmlUrl="https://www.kl.dk/rss/aeldre"' in exported.output
    assert "<opml" in exported.output

    laughs = tmp_path / "laughs.opml"
    laughs.write_bytes(LAUGHS)
    malformed = tmp_path / "malformed.opml"
    malformed.write_bytes(b"<opml><body><outline xmlUrl='https://kl.dk/a'></body>")
    html_file = tmp_path / "page.opml"
    html_file.write_bytes(b"<html><body>no feeds</body></html>")
    empty = tmp_path / "empty.opml"
    empty.write_bytes(b"")
    nul = tmp_path / "nul.opml"
    nul.write_bytes(b"<opml><body><outline xmlUrl='https://kl.dk/\x00'/></body></opml>")
    crlf = tmp_path / "crlf.opml"
    crlf.write_bytes(
        b"<opml><body><outline xmlUrl='https://kl.dk/a&#13;&#10;Bcc: x'/></body></opml>"
    )
    huge = tmp_path / "huge.opml"
    huge.write_bytes(b"<opml>" + b" " * (5 * MAX_BYTES) + b"</opml>")
    for args, message in [
        ([str(laughs), "--newsletter", "kl-nyheder"], "DOCTYPE"),
        ([str(huge), "--newsletter", "kl-nyheder"], "larger than"),
        ([str(good), "--newsletter", "nope"], "no newsletter 'nope'"),
        ([str(tmp_path / "missing.opml"), "--newsletter", "kl-nyheder"], "missing.opml"),
        ([str(good)], "names no newsletter (give --newsletter SLUG)"),
        ([str(malformed), "--newsletter", "kl-nyheder"], "not well-formed"),
        ([str(html_file), "--newsletter", "kl-nyheder"], "not <opml>"),
        ([str(empty), "--newsletter", "kl-nyheder"], "no element found"),
        ([str(nul), "--newsletter", "kl-nyheder"], "not well-formed"),
        ([str(crlf), "--newsletter", "kl-nyheder"], "spaces"),
        ([str(tmp_path), "--newsletter", "kl-nyheder"], "is a directory"),
    ]:
        bad = runner.invoke(args=["feeds", "import-opml", *args])
        assert bad.exit_code != 0 and message in bad.output, (args, bad.output)
    bad = runner.invoke(args=["feeds", "export-opml", "--newsletter", "nope"])
    assert bad.exit_code == 1 and "no newsletter" in bad.output
    assert _feed_count(app) == 3


@pytest.fixture
def admin_client(client, app):
    from tests.test_staff import ADMIN, login, make_staff

    make_staff(app, ADMIN, "admin")
    assert login(client, ADMIN).status_code == 303
    return client


def _upload(client, data: bytes, name="feeds.opml"):
    import io

    from tests.test_editor import csrf_token

    token = csrf_token(client.get("/staff/newsletters/kl-nyheder/feeds").data)
    return client.post(
        "/staff/newsletters/kl-nyheder/feeds/opml",
        data={"csrf_token": token, "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_the_feeds_page_downloads_and_uploads_opml(admin_client, app):
    assert _upload(admin_client, GOOD).status_code == 303
    assert _feed_count(app) == 3
    download = admin_client.get("/staff/newsletters/kl-nyheder/feeds.opml")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    assert len(parse_opml(download.data)) == 3

    refused = _upload(admin_client, LAUGHS)
    assert refused.status_code == 422
    page = html.unescape(refused.get_data(as_text=True))
    assert 'data-field="opml-errors"' in page and "DOCTYPE" in page
    # In the reader's language (Danish first), not the CLI's English.
    assert "Filen har en DOCTYPE-erklæring" in page and "refused" not in page
    bad_line = _upload(
        admin_client,
        b"<opml version='2.0'><body>\n<outline xmlUrl='ftp://kl.dk/x'/>\n"
        b"<outline xmlUrl='https://kl.dk/ok'/></body></opml>",
    )
    assert bad_line.status_code == 422
    shown = html.unescape(bad_line.get_data(as_text=True))
    assert "Linje 2: ftp://kl.dk/x er ikke en adresse" in shown
    assert "Filen blev afvist; intet feed er tilføjet." in shown
    assert (
        _upload(admin_client, b"<opml>" + b" " * (MAX_BYTES + 10) + b"</opml>").status_code == 422
    )
    assert _feed_count(app) == 3
    no_token = admin_client.post(
        "/staff/newsletters/kl-nyheder/feeds/opml", data={}, content_type="multipart/form-data"
    )
    assert no_token.status_code in (400, 422)
    assert admin_client.get("/staff/newsletters/nope/feeds.opml").status_code == 404
    with app.app_context():
        assert newsletter_by_slug("kl-nyheder") is not None


def test_a_malformed_address_in_a_file_is_a_reason_not_a_crash(app):
    data = (
        b"<opml version='2.0'><body>\n<outline xmlUrl='http://[::1'/>\n"
        b"<outline xmlUrl='https://kl.dk:99999/x'/>\n"
        b"<outline xmlUrl='https://kl.dk/ok'/></body></opml>"
    )
    with app.app_context(), pytest.raises(OpmlError) as refused:
        services.import_opml("kl-nyheder", data)
    assert [(p.code, p.params["line"]) for p in refused.value.problems] == [
        ("bad_url", 2),
        ("bad_url", 3),
    ]
    assert _feed_count(app) == 0


def test_an_address_with_a_control_character_is_refused(app):
    # XML holds DEL and the C1 controls as they are; no feed address does.
    data = (
        b"<opml version='2.0'><body>\n<outline xmlUrl='https://kl.dk/&#x7f;x'/>\n"
        b"<outline xmlUrl='https://kl.dk/&#x85;y'/></body></opml>"
    )
    with app.app_context():
        with pytest.raises(OpmlError) as refused:
            services.import_opml("kl-nyheder", data)
        assert [p.code for p in refused.value.problems] == ["bad_url", "bad_url"]
        with pytest.raises(services.BadFeedURL):
            services.add_feed("kl-nyheder", "https://kl.dk/\x01rss")
    assert _feed_count(app) == 0


def test_a_malformed_file_says_where_in_the_readers_language_not_expats_english(admin_client):
    malformed = b"<opml version='2.0'><body>\n<outline xmlUrl='https://kl.dk/x'>\n</opml>"
    shown = html.unescape(_upload(admin_client, malformed).get_data(as_text=True))
    assert "Filen er ikke velformet XML (linje 3, kolonne 3)." in shown
    assert "mismatched tag" not in shown

    admin_client.get("/staff/newsletters/kl-nyheder/feeds?lang=en")
    shown = html.unescape(_upload(admin_client, malformed).get_data(as_text=True))
    assert "The file is not well-formed XML (line 3, column 3)." in shown
    assert "mismatched tag" not in shown


def test_the_cli_keeps_the_xml_parsers_detail(app):
    with app.app_context(), pytest.raises(OpmlError) as refused:
        services.import_opml("kl-nyheder", b"<opml>\n<body></opml>")
    [problem] = refused.value.problems
    assert problem.params["line"] == 2 and "mismatched tag" in problem.text


@pytest.mark.parametrize(
    ("lang", "unknown", "folder"),
    [
        (None, "Filen kan ikke importeres.", 'Linje 4: feedets mappe "Nyt" svarer ikke til'),
        ("en", "The file cannot be imported.", 'Line 4: the feed\'s folder "Nyt" names no'),
    ],
)
def test_every_opml_problem_is_told_in_the_readers_language(app, lang, unknown, folder):
    from newsletters.feeds.opml import Problem
    from newsletters.feeds.routes import opml_problem

    with app.test_request_context("/", query_string={"lang": lang} if lang else None):
        # A reason the page has no text of its own for: never the CLI's English.
        assert opml_problem(Problem("new_reason", "an English reason", {})) == unknown
        shown = opml_problem(Problem("unknown_folder", "line 4: ...", {"line": 4, "folder": "Nyt"}))
        assert shown.startswith(folder)
