"""OPML, the feed readers' list of feeds: read safely, written plainly.

Pure functions (no database, no app). Reading refuses what an OPML file never needs and
an attacker would use: a DOCTYPE (so no entity can be declared, let alone expanded: no
"billion laughs", no external entities), processing beyond the outlines, more than
MAX_BYTES or MAX_FEEDS. Python's expat is driven directly, as defusedxml does, with the
declaration handlers raising; nothing is fetched.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

MAX_BYTES = 1_000_000
MAX_FEEDS = 1000
MAX_DEPTH = 20
MAX_ERRORS = 20


@dataclass(frozen=True)
class Problem:
    """One reason a file is refused: `code` and `params` for the pages (which say it in
    the reader's language), `text` in English for the CLI and the logs."""

    code: str
    text: str
    params: dict = field(default_factory=dict)


class OpmlError(ValueError):
    """The file is not an OPML file that can be read, or lists a bad feed: `problems`
    says why; `errors` is their English text (each a line)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.errors = [problem.text for problem in problems]
        super().__init__("; ".join(self.errors))


def refused(code: str, text: str, **params) -> OpmlError:
    """An OpmlError of one problem."""
    return OpmlError([Problem(code, text, params)])


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str = ""
    # The line of the file it is on (for errors).
    line: int = 0
    # The title of the outermost folder (an outline without xmlUrl) it is in, if any:
    # an export names each newsletter's folder so.
    folder: str = ""


class _Refused(Exception):
    def __init__(self, code: str, text: str, **params) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.params = params


def parse_opml(data: bytes) -> list[OpmlFeed]:
    """The feeds (outlines with an xmlUrl, at any depth) of an OPML document, in order.

    OpmlError if it is too large, not well-formed XML, has a DOCTYPE or an entity, is
    not OPML, nests too deep or lists too many feeds."""
    if len(data) > MAX_BYTES:
        raise refused(
            "too_large", f"the file is larger than {MAX_BYTES // 1000} KB", kb=MAX_BYTES // 1000
        )
    parser = xml.parsers.expat.ParserCreate()
    feeds: list[OpmlFeed] = []
    state = {"depth": 0, "root": None}
    # The folder titles of the open outlines (None for a feed's or another element).
    folders: list[str | None] = []

    def refuse(code: str, what: str):
        def handler(*_args):
            raise _Refused(code, what)

        return handler

    parser.StartDoctypeDeclHandler = refuse(
        "doctype", "a DOCTYPE (OPML needs none; entities are refused)"
    )
    parser.EntityDeclHandler = refuse("entity", "an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("entity", "an entity declaration")
    parser.ExternalEntityRefHandler = refuse("entity", "an external entity")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def start(name: str, attributes: dict[str, str]) -> None:
        state["depth"] += 1
        if state["root"] is None:
            state["root"] = name
            if name.lower() != "opml":
                raise _Refused(
                    "not_opml", f"the document is <{name[:40]}>, not <opml>", name=name[:40]
                )
        if state["depth"] > MAX_DEPTH:
            raise _Refused("too_deep", f"outlines nested deeper than {MAX_DEPTH}", depth=MAX_DEPTH)
        folder = None
        if name == "outline":
            url = attributes.get("xmlUrl") or attributes.get("xmlurl") or ""
            if not url:
                folder = " ".join((attributes.get("title") or attributes.get("text") or "").split())
            if url:
                if len(feeds) >= MAX_FEEDS:
                    raise _Refused("too_many", f"more than {MAX_FEEDS} feeds", count=MAX_FEEDS)
                title = attributes.get("title") or attributes.get("text") or ""
                feeds.append(
                    OpmlFeed(
                        url=url.strip(),
                        title=" ".join(title.split())[:300],
                        line=parser.CurrentLineNumber,
                        folder=next((f for f in folders if f is not None), "")[:300],
                    )
                )
        folders.append(folder)

    def end(_name: str) -> None:
        state["depth"] -= 1
        folders.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except _Refused as error:
        raise refused(error.code, f"refused: {error.text}", **error.params) from None
    except xml.parsers.expat.ExpatError as error:
        # The English detail (expat's words) is for the CLI and the logs; the pages say
        # where, in the reader's language.
        detail = str(error)[:200]
        raise refused(
            "not_xml",
            f"not well-formed XML: {detail}",
            detail=detail,
            line=error.lineno,
            column=error.offset + 1,
        ) from None
    if state["root"] is None:
        raise refused("empty", "the file is empty")
    return feeds


@dataclass(frozen=True)
class OpmlGroup:
    """A folder of the exported file: a newsletter and its feeds (url, title)."""

    title: str
    feeds: list[tuple[str, str]]


# What XML 1.0 cannot hold at all (not even as a character reference): a feed's title
# with one of these would make the export unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def write_opml(title: str, groups: list[OpmlGroup]) -> str:
    """An OPML 2.0 document: one folder outline per group, one rss outline per feed.
    Characters XML cannot hold (control characters) are left out of the titles."""
    groups = [
        OpmlGroup(_xml_text(g.title), [(_xml_text(u), _xml_text(t)) for u, t in g.feeds])
        for g in groups
    ]
    title = _xml_text(title)
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for group in groups:
        folder = ET.SubElement(body, "outline", text=group.title, title=group.title)
        for url, feed_title in group.feeds:
            ET.SubElement(
                folder,
                "outline",
                type="rss",
                text=feed_title or url,
                title=feed_title or url,
                xmlUrl=url,
            )
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
