"""Fetching feeds like a good citizen, many at once, without touching the database.

Each feed is one conditional GET (`If-None-Match` / `If-Modified-Since`; a 304 is not
parsed) with a size cap (the body is streamed and dropped past the cap), a User-Agent
that says who we are, and redirects followed. One deadline (FEEDS_TIMEOUT_SECONDS)
bounds the whole fetch: name lookup, connecting, TLS, the headers, the body and every
redirect, so a server that drips its answer holds a fetcher thread no longer than that.
Connections go only to public addresses (`newsletters.outbound`), checked for the feed's
host and for every redirect, unless FEEDS_ALLOW_PRIVATE. One feed's failure is its own
result, never an exception that stops the others.

What staff see of a failed connection is one message, whatever the reason (refused
address, closed port, silence, a port that does not speak HTTP): the feed page must
not be a port scanner of the network the fetcher stands in. The reason goes to the log.

A failure is an English `error` (the log, the CLI, the feed's stored last error) and an
`error_kind` with its `error_params`, which the pages say in the reader's language.

The threads only do HTTP, which waits on the network with the GIL released; the caller
parses each body as it arrives. Parsing (feedparser is pure Python) in the threads too
was measured slower: CPU-bound threads only fight over the GIL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import partial

import httpx

from newsletters import outbound
from newsletters.feeds.parsing import ParsedFeed, parse_feed

log = logging.getLogger(__name__)

PERMANENT_REDIRECTS = {301, 308}
MAX_REDIRECTS = 5


class FetchErrorKind(StrEnum):
    """Why a fetch brought no feed, as the pages tell it (each with its params)."""

    # No HTTP answer in full within the deadline, whatever the reason (see the module's
    # doc): a refused (private) address, DNS, a closed port, silence. {"seconds"}
    UNREACHABLE = "unreachable"
    # An answer other than 200/304. {"status"}
    HTTP_STATUS = "http_status"
    # The body is larger than the cap. {"limit"} (bytes)
    TOO_LARGE = "too_large"
    # {"count"}
    TOO_MANY_REDIRECTS = "too_many_redirects"
    # The document is no RSS or Atom feed that can be read.
    NOT_A_FEED = "not_a_feed"
    # Anything else (a bug in one feed's handling).
    FAILED = "failed"
    # The publisher has removed the feed (410 Gone): a feed's stored kind, once disabled.
    GONE = "gone"


@dataclass(frozen=True)
class FetchRequest:
    feed_id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class FetchResult:
    feed_id: int
    url: str
    # None when no HTTP answer came (timeout, refused, DNS...).
    status: int | None = None
    # Where the feed now lives, when every redirect on the way was permanent.
    moved_to: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    # The document (a 200) and the response headers (its encoding), until parsed.
    body: bytes | None = None
    headers: dict[str, str] | None = None
    parsed: ParsedFeed | None = None
    # Why it failed: English, for the log and the CLI; the kind and its params, for pages.
    error: str | None = None
    error_kind: FetchErrorKind | None = None
    error_params: dict[str, int | float] = field(default_factory=dict)
    # A server that asks us to come back later (429/503 Retry-After), in seconds.
    retry_after: float | None = None
    seconds: float = 0.0
    # Where the document came from after redirects (relative links resolve against it).
    url_fetched: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def parse(self, summary_chars: int = 400) -> None:
        """Parse the body fetched (if any) into `parsed`, here, then let the bytes go."""
        if self.body is None:
            return
        self.set_parsed(self.parse_job(summary_chars)())

    def parse_job(self, summary_chars: int = 400) -> partial[ParsedFeed]:
        """The parse of the body as a picklable call, for a worker process."""
        return partial(
            parse_feed,
            self.body or b"",
            url=self.url_fetched or self.url,
            headers=self.headers,
            summary_chars=summary_chars,
        )

    @property
    def gone(self) -> bool:
        return self.status == 410

    def set_parsed(self, parsed: ParsedFeed) -> None:
        self.parsed = parsed
        if parsed.error:
            self.fail(FetchErrorKind.NOT_A_FEED, parsed.error)
        self.body = None

    def fail(self, kind: FetchErrorKind, error: str, **params: int | float) -> None:
        """Record why the fetch brought no feed."""
        self.error = error
        self.error_kind = kind
        self.error_params = params


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = 20.0
    max_bytes: int = 5_000_000
    concurrency: int = 8
    user_agent: str = "KL-Nyhedsbreve/1.0"
    summary_chars: int = 400
    # Fetch from loopback and private networks too (FEEDS_ALLOW_PRIVATE).
    allow_private: bool = False


def unreachable(timeout: float) -> str:
    """The one message of every failure to get an HTTP answer (see the module's doc)."""
    return f"the server could not be reached, or did not answer in full within {timeout:g} seconds"


class TooLarge(Exception):
    pass


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"{int(declared)} bytes")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            # Stop reading: closing the response drops the rest of the transfer.
            raise TooLarge(f"more than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_one(client: httpx.Client, request: FetchRequest, settings: FetchSettings) -> FetchResult:
    """One conditional GET and, for a 200, the document's bytes. Never raises."""
    started = time.perf_counter()
    result = FetchResult(feed_id=request.feed_id, url=request.url)
    headers = {}
    if request.etag:
        headers["If-None-Match"] = request.etag
    if request.last_modified:
        headers["If-Modified-Since"] = request.last_modified
    try:
        with (
            outbound.deadline(settings.timeout),
            client.stream("GET", request.url, headers=headers) as response,
        ):
            result.status = response.status_code
            if response.history and all(
                r.status_code in PERMANENT_REDIRECTS for r in response.history
            ):
                result.moved_to = str(response.url)
            if response.status_code == 304:
                result.etag = request.etag
                result.last_modified = request.last_modified
            elif response.status_code == 200:
                body = _read_capped(response, settings.max_bytes)
                result.etag = response.headers.get("etag")
                result.last_modified = response.headers.get("last-modified")
                result.body = body
                result.headers = dict(response.headers)
                result.url_fetched = str(response.url)
            else:
                result.fail(
                    FetchErrorKind.HTTP_STATUS,
                    f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                    status=response.status_code,
                )
                if response.status_code in (429, 503):
                    result.retry_after = _retry_after(response.headers.get("retry-after"))
    except TooLarge as error:
        result.fail(
            FetchErrorKind.TOO_LARGE,
            f"the feed is too large ({error}; the limit is {settings.max_bytes})",
            limit=settings.max_bytes,
        )
    except httpx.TooManyRedirects:
        result.fail(
            FetchErrorKind.TOO_MANY_REDIRECTS,
            f"more than {MAX_REDIRECTS} redirects",
            count=MAX_REDIRECTS,
        )
    except (httpx.TransportError, httpx.StreamError) as error:
        # Refused address, DNS, refused or reset connection, timeout, not HTTP: one
        # message for staff, the reason for the operator's log.
        result.fail(
            FetchErrorKind.UNREACHABLE, unreachable(settings.timeout), seconds=settings.timeout
        )
        log.warning(
            "feed %s (%s): %s: %s", request.feed_id, request.url, type(error).__name__, error
        )
    except httpx.HTTPError as error:
        result.fail(
            FetchErrorKind.FAILED,
            f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
        )
    except Exception as error:  # a bug in one feed's handling must not stop the others
        result.fail(FetchErrorKind.FAILED, f"{type(error).__name__}: {error}")
    result.seconds = time.perf_counter() - started
    return result


def make_client(settings: FetchSettings) -> httpx.Client:
    limits = httpx.Limits(
        max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
    )
    return httpx.Client(
        # Each step gets at most what is left of the fetch's one deadline (fetch_one).
        timeout=httpx.Timeout(settings.timeout),
        transport=outbound.GuardedTransport(allow_private=settings.allow_private, limits=limits),
        # No proxy from the environment: it would connect on our behalf, unchecked.
        trust_env=False,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={
            "User-Agent": settings.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/rdf+xml, "
            "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        },
    )


def fetch_all(
    requests: Iterable[FetchRequest],
    settings: FetchSettings,
    stop: threading.Event | None = None,
) -> Iterator[FetchResult]:
    """Fetch every request, `settings.concurrency` at a time; results are yielded as
    they complete, so the caller parses and writes one while others are fetched. At
    most twice `concurrency` bodies wait in memory for the caller.

    Once `stop` is set no further fetch starts; those running end by their deadline.
    The requests never started are not yielded."""
    pending = list(requests)
    pending.reverse()
    if not pending:
        return
    window = max(1, settings.concurrency) * 2
    with (
        make_client(settings) as client,
        ThreadPoolExecutor(
            max_workers=max(1, min(settings.concurrency, len(pending))),
            thread_name_prefix="feed-fetch",
        ) as pool,
    ):
        running: set[Future[FetchResult]] = set()
        while pending or running:
            if stop is not None and stop.is_set():
                pending.clear()
            while pending and len(running) < window:
                running.add(pool.submit(fetch_one, client, pending.pop(), settings))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
