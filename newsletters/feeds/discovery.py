"""Feed autodiscovery: the feeds a web page announces, as feed readers find them.

A page names its feeds in its head: `<link rel="alternate" type="application/rss+xml"
href="...">` (or atom+xml). The page is fetched as a feed is (fetching.fetch_one: the
guarded transport, so the same private-address rules; one deadline; the size cap). A
page that is itself a feed is offered as it is.

The page may be hostile. Python's HTMLParser (and feedparser's loose parser) take
quadratic time on some inputs (measured: 200 KB of "<a" took 69 s), so neither reads
the page: one linear scan finds the `<link>` and `<base>` tags of the head (skipping
comments, scripts and styles, stopping at `<body>`, within MAX_HEAD_CHARS), and only
each such tag, at most MAX_TAG_CHARS long, is given to HTMLParser for its attributes.
feedparser reads the body only when its start says it is a feed. Nothing is run or
fetched.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from newsletters.feeds.fetching import (
    FetchErrorKind,
    FetchRequest,
    FetchSettings,
    fetch_one,
    make_client,
)
from newsletters.feeds.parsing import parse_feed, plain_text

log = logging.getLogger(__name__)

FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/rdf+xml"}
MAX_CANDIDATES = 20
MAX_URL_CHARS = 2000


@dataclass(frozen=True)
class Candidate:
    url: str
    title: str


@dataclass
class Discovery:
    """What a page offers: its feeds (or the page itself when it is a feed), or why
    nothing could be found (`error`, in English; `error_kind` and `error_params` for the
    pages, as a fetch's)."""

    candidates: list[Candidate]
    error: str | None = None
    is_feed: bool = False
    error_kind: FetchErrorKind | None = None
    error_params: dict[str, int | float] = field(default_factory=dict)


# How much of a page is scanned for its head's links, and the longest tag read.
MAX_HEAD_CHARS = 500_000
MAX_TAG_CHARS = 4000
MAX_LINK_TAGS = 1000
# Elements whose content is not markup: a "<link" inside them is text.
_RAW_ELEMENTS = ("script", "style", "template", "textarea", "title", "noscript")


class _TagReader(HTMLParser):
    """The attributes of one start tag (entities decoded as a browser would)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tag: str | None = None
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs) -> None:
        if self.tag is None:
            self.tag = tag
            self.attrs = {k.lower(): (v or "") for k, v in attrs}

    handle_startendtag = handle_starttag


def _attributes(tag_text: str) -> dict[str, str]:
    reader = _TagReader()
    try:
        reader.feed(tag_text)
        reader.close()
    except Exception:  # html.parser is tolerant; whatever it still raises: no attributes
        return {}
    return reader.attrs


def _head_tags(html: str) -> Iterator[tuple[str, str]]:
    """(name, source) of each `<link>` and `<base>` tag of the head, in order: a linear
    scan (every search moves on from where the last one ended)."""
    text = html[:MAX_HEAD_CHARS]
    low = text.lower()
    i = low.find("<")
    while i != -1:
        if low.startswith("<!--", i):
            end = low.find("-->", i + 4)
            if end == -1:
                return
            i = low.find("<", end + 3)
            continue
        j = i + 1
        while j < len(low) and j - i <= 12 and (low[j].isalnum() or low[j] == "-"):
            j += 1
        name = low[i + 1 : j]
        if name in ("body", "frameset") or low.startswith("</head", i):
            return  # the feeds are announced in the head
        if name in _RAW_ELEMENTS:
            end = low.find(f"</{name}", j)
            if end == -1:
                return
            i = low.find("<", end + 2)
            continue
        if name in ("link", "base"):
            end = low.find(">", j, i + MAX_TAG_CHARS)
            if end != -1:
                yield name, text[i : end + 1]
                i = low.find("<", end + 1)
                continue
        i = low.find("<", i + 1)


def find_feed_links(html: str, base: str) -> list[Candidate]:
    """The feeds a page's `<link rel="alternate">` announce, absolute, in order."""
    found: list[Candidate] = []
    for seen, (name, source) in enumerate(_head_tags(html)):
        if seen >= MAX_LINK_TAGS:
            break
        values = _attributes(source)
        if name == "base":
            href = values.get("href", "").strip()
            if href:
                base = urljoin(base, href)
            continue
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").split(";")[0].strip().lower()
        href = values.get("href", "").strip()
        if "alternate" not in rels or kind not in FEED_TYPES or not href:
            continue
        try:
            url = urljoin(base, href)
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:  # a malformed address ("http://[::1")
            continue
        if parts.scheme not in ("http", "https") or not hostname:
            continue
        if len(url) > MAX_URL_CHARS or any(c.isspace() for c in url):
            continue
        if any(c.url == url for c in found):
            continue
        found.append(Candidate(url=url, title=plain_text(values.get("title", ""))[:300]))
        if len(found) >= MAX_CANDIDATES:
            break
    return found


# What the start of a feed looks like (after an XML declaration, comments, a BOM).
_FEED_ROOTS = (b"<rss", b"<feed", b"<rdf:rdf", b"<rdf")


def looks_like_a_feed(body: bytes) -> bool:
    """Whether the body is worth giving to feedparser: an RSS, Atom or RDF root
    element in its first 2 KB, and no <html> (whatever the server calls it)."""
    start = body[:2048].lower()
    return b"<html" not in start and any(root in start for root in _FEED_ROOTS)


# The HTML standard's prescan (13.2.3.2, simplified): the encoding a browser would read
# the page in. Its BOM first, then the HTTP header, then a <meta> in the first 1024
# bytes; a label a browser reads as windows-1252 is decoded so (ISO-8859-1 pages use
# 0x80-0x9F for its quotes and dashes); UTF-7 and UTF-16 labels in a <meta> are not
# believed. Without any, UTF-8 if the bytes are UTF-8, else windows-1252.
_META_CHARSET = re.compile(
    rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)
_AS_WINDOWS_1252 = {
    "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii",
    "iso_8859-1", "cp819", "ibm819", "windows-1252", "cp1252", "x-cp1252",
}  # fmt: skip


def _codec(label: str) -> str | None:
    label = label.strip().strip("\"'").lower()
    if label in _AS_WINDOWS_1252:
        return "cp1252"
    if not label or label.startswith("utf-7") or label in ("utf7", "x-user-defined"):
        return None
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _charset_of_header(headers: dict[str, str] | None) -> str | None:
    content_type = (headers or {}).get("content-type", "")
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return _codec(value)
    return None


def _text_of(body: bytes, headers: dict[str, str] | None) -> str:
    """The page as text, in the encoding a browser would read it in."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace")
    codec = _charset_of_header(headers)
    if codec is None:
        declared = _META_CHARSET.search(body[:1024])
        if declared is not None:
            codec = _codec(declared.group(1).decode("ascii"))
            if codec is not None and codec.startswith("utf-16"):
                codec = "utf-8"  # a page that could declare it in ASCII is not UTF-16
    if codec is None:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            codec = "cp1252"
    return body.decode(codec, errors="replace")


def discover(url: str, settings: FetchSettings) -> Discovery:
    """The feeds the page at `url` announces (fetched now); never raises."""
    with make_client(settings) as client:
        result = fetch_one(client, FetchRequest(0, url, None, None), settings)
    if result.error:
        return Discovery(
            [], error=result.error, error_kind=result.error_kind, error_params=result.error_params
        )
    if result.body is None:  # an answer without a body (a 304 nobody asked for)
        return Discovery(
            [],
            error=f"HTTP {result.status}",
            error_kind=FetchErrorKind.HTTP_STATUS,
            error_params={"status": result.status or 0},
        )
    where = result.url_fetched or url
    if looks_like_a_feed(result.body):
        parsed = parse_feed(result.body, url=where, headers=result.headers, summary_chars=50)
        if not parsed.error and parsed.items:
            return Discovery([Candidate(url=where, title=parsed.title)], is_feed=True)
    return Discovery(find_feed_links(_text_of(result.body, result.headers), where))
