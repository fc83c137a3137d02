"""Reading what publishers really serve: feedparser for the bytes, nh3 for the HTML.

Pure functions without a database or an app, so they run in the fetcher's threads and
in the benchmark alike. feedparser copes with RSS 0.9x/1.0/2.0 and Atom, wrong or
missing encodings and malformed XML it can still read (`bozo`); a document it cannot
read at all becomes an error, never an exception.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import nh3

# The HTML an item keeps: text structure and links. No images at all (a feed's <img>
# is as often a tracking pixel as an illustration, and a digest shows no pictures),
# no scripts, no event handlers, no styles.
ALLOWED_TAGS = {
    "p", "br", "strong", "b", "em", "i", "a", "ul", "ol", "li", "blockquote",
    "h2", "h3", "h4", "code", "pre",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Raw HTML longer than this is cut before it is cleaned (nh3 closes what the cut opens).
MAX_HTML_CHARS = 20_000
# Items read from one document; a feed with more is a dump, not news.
MAX_ITEMS_PER_FEED = 500
MAX_TITLE_CHARS = 500
MAX_FIELD_CHARS = 2000
MAX_CATEGORIES = 20
MAX_CATEGORY_CHARS = 100

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ParsedItem:
    key: str
    guid: str
    link: str
    title: str
    summary_html: str
    summary_text: str
    author: str
    published_at: datetime | None
    content_hash: str
    # RSS <category> and Atom category terms, as text (at most MAX_CATEGORIES).
    categories: tuple[str, ...] = ()


@dataclass
class ParsedFeed:
    title: str = ""
    items: list[ParsedItem] = field(default_factory=list)
    # What feedparser forgave (a bozo document it could still read), for the health page.
    warning: str | None = None
    # Set when the document could not be read as a feed at all.
    error: str | None = None


def sanitise_html(raw: str, base: str | None = None) -> str:
    """Feed HTML made safe to store and render: no scripts, handlers, styles, images or
    javascript: links; relative links made absolute against `base`."""

    def absolute(element: str, attribute: str, value: str) -> str | None:
        if attribute == "href" and base:
            return urljoin(base, value)
        return value

    return nh3.clean(
        (raw or "")[:MAX_HTML_CHARS],
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        # Their content too, not only the tags: a script's text is not the article's.
        clean_content_tags={"script", "style"},
        attribute_filter=absolute if base else None,
    )


def plain_text(raw: str) -> str:
    """Text without any markup, entities decoded, whitespace collapsed."""
    raw = raw or ""
    if "<" not in raw and "&" not in raw:
        return _SPACE.sub(" ", raw).strip()  # most titles: nothing to clean
    text = nh3.clean(
        (raw or "")[:MAX_HTML_CHARS], tags=set(), clean_content_tags={"script", "style"}
    )
    return _SPACE.sub(" ", html.unescape(text)).strip()


# Tags that end a block of text become a space; inline ones (a, b, em...) nothing, so
# "<a>link</a>." stays "link.".
_BLOCK_TAG = re.compile(r"</?(?:p|br|li|ul|ol|h[2-4]|blockquote|pre)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def text_of_clean_html(clean: str) -> str:
    """The text of HTML that sanitise_html has already cleaned (well-formed, no scripts
    or styles left), without a second pass through the cleaner."""
    if "<" not in clean and "&" not in clean:
        return _SPACE.sub(" ", clean).strip()
    text = _TAG.sub("", _BLOCK_TAG.sub(" ", clean))
    return _SPACE.sub(" ", html.unescape(text)).strip()


def summarise(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _http_link(candidate: str, base: str) -> str:
    """An absolute http(s) link, relative ones resolved against the feed; else ""."""
    candidate = (candidate or "").strip()
    if not candidate:
        return ""
    absolute = urljoin(base, candidate)
    parts = urlsplit(absolute)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return absolute[:MAX_FIELD_CHARS]


def _when(entry: Any) -> datetime | None:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(name)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _entry_html(entry: Any, base: str) -> tuple[str, str]:
    """The entry's HTML and the base its relative links resolve against (xml:base)."""
    # Atom <content> (or RSS content:encoded) is the article; the summary its teaser.
    # The teaser is what a digest wants; the content when there is no teaser.
    summary = entry.get("summary") or ""
    if summary:
        detail = entry.get("summary_detail") or {}
        return summary, urljoin(base, detail.get("base") or "")
    for content in entry.get("content") or ():
        if content.get("value"):
            return content["value"], urljoin(base, content.get("base") or "")
    return "", base


def parse_feed(
    body: bytes, *, url: str, headers: dict[str, str] | None = None, summary_chars: int = 400
) -> ParsedFeed:
    """The items of a feed document; `headers` (the HTTP response's) tell the encoding."""
    # Not given a Content-Location: feedparser would then resolve every link and GUID
    # against it (a sixth of the parse time); relative links are made absolute here,
    # against the document's xml:base (which feedparser applies) or its URL.
    response_headers = {
        k.lower(): v for k, v in (headers or {}).items() if k.lower() != "content-location"
    }
    try:
        parsed = feedparser.parse(
            body,
            response_headers=response_headers,
            # nh3 cleans (below) and resolves relative links as it goes; feedparser's
            # own passes over the HTML would do both again, slower (measured: a third
            # of the parse time with a base URL).
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as error:  # feedparser promises not to raise; a bug must not crash us
        return ParsedFeed(error=f"could not be parsed: {type(error).__name__}: {error}")
    warning = None
    if parsed.get("bozo"):
        exception = parsed.get("bozo_exception")
        warning = f"{type(exception).__name__}: {exception}"[:500] if exception else "malformed"
    if not parsed.get("version") and not parsed.entries:
        return ParsedFeed(error=f"not an RSS or Atom feed ({warning or 'unknown format'})")

    title = plain_text(parsed.feed.get("title", ""))[:300]
    items: list[ParsedItem] = []
    seen: set[str] = set()
    for entry in parsed.entries[:MAX_ITEMS_PER_FEED]:
        item = _item(entry, url, summary_chars)
        if item is None or item.key in seen:
            continue
        seen.add(item.key)
        items.append(item)
    return ParsedFeed(title=title, items=items, warning=warning)


def _item(entry: Any, base: str, summary_chars: int) -> ParsedItem | None:
    link = _http_link(entry.get("link", ""), base)
    guid = (entry.get("id") or "").strip()[:MAX_FIELD_CHARS]
    raw_html, html_base = _entry_html(entry, base)
    summary_html = sanitise_html(raw_html, html_base)
    text = text_of_clean_html(summary_html)
    title = plain_text(entry.get("title", ""))[:MAX_TITLE_CHARS]
    if not title:
        title = summarise(text, 120)
    if not (title or link or text):
        return None
    content_hash = _digest(title, link, summary_html)
    if guid:
        key = _digest("guid", guid)
    elif link:
        key = _digest("link", link)
    else:
        # Nothing identifies it but what it says: an edit makes it a new item.
        key = _digest("hash", content_hash)
    return ParsedItem(
        key=key,
        guid=guid,
        link=link,
        title=title,
        summary_html=summary_html,
        summary_text=summarise(text, summary_chars),
        author=plain_text(entry.get("author", ""))[:300],
        published_at=_when(entry),
        content_hash=content_hash,
        categories=_categories(entry),
    )


def _categories(entry: Any) -> tuple[str, ...]:
    """The entry's category terms (or labels), plain text, without duplicates."""
    found: list[str] = []
    for tag in entry.get("tags") or ():
        name = plain_text(tag.get("term") or tag.get("label") or "")[:MAX_CATEGORY_CHARS]
        if name and name not in found:
            found.append(name)
        if len(found) >= MAX_CATEGORIES:
            break
    return tuple(found)


def watch_parent(parent_pid: int, interval: float = 0.25) -> None:
    """In a parser process (the pool's initializer): exit as soon as the process that
    started it is gone, however it ended (SIGTERM without clean-up, SIGKILL, a crash).

    A pool's processes wait on a queue whose writing end they hold themselves, so they
    would never see their parent die; left running with parent 1, they would also keep
    multiprocessing's resource tracker alive.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
