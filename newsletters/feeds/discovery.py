"""Feed autodiscovery: the feeds a web page announces, as feed readers find them.

A page names its feeds in its head: `<link rel="alternate" type="application/rss+xml"
href="...">` (or atom+xml). The page is fetched as a feed is (fetching.fetch_one: the
guarded transport, so the same private-address rules; one deadline; the size cap) and
read with the standard library's tolerant HTML parser, which runs nothing and fetches
nothing. A page that is itself a feed is offered as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from newsletters.feeds.fetching import FetchRequest, FetchSettings, fetch_one, make_client
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
    nothing could be found (`error`)."""

    candidates: list[Candidate]
    error: str | None = None
    is_feed: bool = False


class _LinkFinder(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.found: list[Candidate] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if self.done:
            return
        if tag == "base":
            href = dict(attrs).get("href")
            if href:
                self.base = urljoin(self.base, href.strip())
        if tag != "link":
            if tag == "body":
                self.done = True  # the feeds are announced in the head
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").split(";")[0].strip().lower()
        href = values.get("href", "").strip()
        if "alternate" not in rels or kind not in FEED_TYPES or not href:
            return
        url = urljoin(self.base, href)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return
        if len(url) > MAX_URL_CHARS or any(c.isspace() for c in url):
            return
        if any(c.url == url for c in self.found):
            return
        self.found.append(Candidate(url=url, title=plain_text(values.get("title", ""))[:300]))
        if len(self.found) >= MAX_CANDIDATES:
            self.done = True


def find_feed_links(html: str, base: str) -> list[Candidate]:
    """The feeds a page's `<link rel="alternate">` announce, absolute, in order."""
    finder = _LinkFinder(base)
    try:
        finder.feed(html)
        finder.close()
    except Exception:  # html.parser is tolerant; whatever it still raises, keep what was found
        log.info("a page's HTML could not be read to its end", exc_info=True)
    return finder.found


def _text_of(body: bytes, headers: dict[str, str] | None) -> str:
    charset = "utf-8"
    content_type = (headers or {}).get("content-type", "")
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def discover(url: str, settings: FetchSettings) -> Discovery:
    """The feeds the page at `url` announces (fetched now); never raises."""
    with make_client(settings) as client:
        result = fetch_one(client, FetchRequest(0, url, None, None), settings)
    if result.error or result.body is None:
        return Discovery([], error=result.error or f"HTTP {result.status}")
    where = result.url_fetched or url
    parsed = parse_feed(result.body, url=where, headers=result.headers, summary_chars=50)
    if not parsed.error and parsed.items:
        return Discovery([Candidate(url=where, title=parsed.title)], is_feed=True)
    return Discovery(find_feed_links(_text_of(result.body, result.headers), where))
