"""Fetching feeds like a good citizen, many at once, without touching the database.

Each feed is one conditional GET (`If-None-Match` / `If-Modified-Since`; a 304 is not
parsed) with a timeout, a size cap (the body is streamed and dropped past the cap), a
User-Agent that says who we are, and redirects followed. One feed's failure is its own
result, never an exception that stops the others.

The threads only do HTTP, which waits on the network with the GIL released; the caller
parses each body as it arrives. Parsing (feedparser is pure Python) in the threads too
was measured slower: CPU-bound threads only fight over the GIL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial

import httpx

from newsletters.feeds.parsing import ParsedFeed, parse_feed

PERMANENT_REDIRECTS = {301, 308}
MAX_REDIRECTS = 5


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
    error: str | None = None
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
            self.error = parsed.error
        self.body = None


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = 20.0
    max_bytes: int = 5_000_000
    concurrency: int = 8
    user_agent: str = "KL-Nyhedsbreve/1.0"
    summary_chars: int = 400


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


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
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
        if time.monotonic() > deadline:
            # httpx's timeout is per read: a server dripping bytes would never trip it.
            raise httpx.ReadTimeout("the whole feed took too long")
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
        with client.stream("GET", request.url, headers=headers) as response:
            result.status = response.status_code
            if response.history and all(
                r.status_code in PERMANENT_REDIRECTS for r in response.history
            ):
                result.moved_to = str(response.url)
            if response.status_code == 304:
                result.etag = request.etag
                result.last_modified = request.last_modified
            elif response.status_code == 200:
                body = _read_capped(
                    response, settings.max_bytes, time.monotonic() + 2 * settings.timeout
                )
                result.etag = response.headers.get("etag")
                result.last_modified = response.headers.get("last-modified")
                result.body = body
                result.headers = dict(response.headers)
                result.url_fetched = str(response.url)
            else:
                result.error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                if response.status_code in (429, 503):
                    result.retry_after = _retry_after(response.headers.get("retry-after"))
    except TooLarge as error:
        result.error = f"the feed is too large ({error}; the limit is {settings.max_bytes})"
    except httpx.TimeoutException:
        result.error = f"no answer within {settings.timeout:g} seconds"
    except httpx.TooManyRedirects:
        result.error = f"more than {MAX_REDIRECTS} redirects"
    except httpx.HTTPError as error:
        result.error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    except Exception as error:  # a bug in one feed's handling must not stop the others
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    return result


def make_client(settings: FetchSettings) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={
            "User-Agent": settings.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/rdf+xml, "
            "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        },
        limits=httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        ),
    )


def fetch_all(requests: Iterable[FetchRequest], settings: FetchSettings) -> Iterator[FetchResult]:
    """Fetch every request, `settings.concurrency` at a time; results are yielded as
    they complete, so the caller parses and writes one while others are fetched. At
    most twice `concurrency` bodies wait in memory for the caller."""
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
            while pending and len(running) < window:
                running.add(pool.submit(fetch_one, client, pending.pop(), settings))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
