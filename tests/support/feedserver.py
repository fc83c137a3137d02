"""A real HTTP server on loopback that serves feed documents the way publishers do.

Every document is served with an `ETag` and a `Last-Modified` and answers a matching
conditional GET with 304. Routes can be given a status (301, 410, 500...), a delay (a
slow server), a content type that lies about the encoding, or a body built on the fly
(a huge one). Requests are recorded (path and headers) so tests can see what the
fetcher sent.

Also runs alone, for the benchmark: `python -m tests.support.feedserver DIR PORT`
serves every file of DIR (a ThreadingHTTPServer, ETag support, until killed).
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEEDS_DIR = Path(__file__).resolve().parent.parent / "feeds"
# A fixed Last-Modified: the documents do not change unless a test changes them.
LAST_MODIFIED = formatdate(1_790_000_000, usegmt=True)

CONTENT_TYPES = {
    ".xml": "application/rss+xml",
    ".rss": "application/rss+xml",
    ".rdf": "application/rdf+xml",
    ".atom": "application/atom+xml",
}


def undated(file: str) -> bytes:
    """A document of tests/feeds without its items' dates: for tests on the real clock,
    whose digests must find the items new whatever day they run."""
    body = (FEEDS_DIR / file).read_bytes()
    return re.sub(rb"\s*<pubDate>[^<]*</pubDate>", b"", body)


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml"
    location: str | None = None
    delay: float = 0.0
    conditional: bool = True
    # Without Content-Length (the body ends when the connection closes): a size cap
    # must then stop reading on the way, not trust a header.
    stream: bool = False
    last_modified: str = LAST_MODIFIED
    headers: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]


class FeedServer:
    def __init__(self, root: Path = FEEDS_DIR, port: int = 0) -> None:
        self.root = root
        self.routes: dict[str, Route] = {}
        self.requests: list[SeenRequest] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ----------------------------------------------------------------- set-up

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def serve(self, path: str, file: str | None = None, **options) -> str:
        """Serve a file of tests/feeds (or `body=`) at /path; returns its URL."""
        if file is not None:
            options.setdefault("body", (self.root / file).read_bytes())
            options.setdefault("content_type", CONTENT_TYPES.get(Path(file).suffix, "text/xml"))
        with self.lock:
            self.routes["/" + path.lstrip("/")] = Route(**options)
        return self.url(path)

    def redirect(self, path: str, to: str, status: int = 301) -> str:
        return self.serve(path, status=status, location=to, conditional=False)

    def seen(self, path: str) -> list[SeenRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == "/" + path.lstrip("/")]

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    # ----------------------------------------------------------------- serving

    def _route(self, path: str) -> Route | None:
        with self.lock:
            route = self.routes.get(path)
        if route is not None:
            return route
        candidate = (self.root / path.lstrip("/")).resolve()
        if self.root.resolve() in candidate.parents and candidate.is_file():
            # Kept once read (the documents of a directory do not change while served),
            # so a 304 costs the server no file read and no hashing.
            route = Route(
                body=candidate.read_bytes(),
                content_type=CONTENT_TYPES.get(candidate.suffix, "text/xml"),
            )
            with self.lock:
                self.routes[path] = route
            return route
        return None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests.append(SeenRequest(path, dict(self.headers.items())))
                route = server._route(path)
                if route is None:
                    return self._send(404, b"not found", "text/plain")
                if route.delay:
                    time.sleep(route.delay)
                if route.location:
                    return self._send(route.status, b"", "text/plain", Location=route.location)
                if route.status != 200:
                    return self._send(route.status, b"", "text/plain", **route.headers)
                validators = {"ETag": route.etag, "Last-Modified": route.last_modified}
                if route.conditional and self._not_modified(route):
                    return self._send(304, b"", None, **validators)
                extra = validators if route.conditional else {}
                self._send(
                    200,
                    route.body,
                    route.content_type,
                    stream=route.stream,
                    **extra,
                    **route.headers,
                )

            def _not_modified(self, route: Route) -> bool:
                match = self.headers.get("If-None-Match")
                if match is not None:
                    return route.etag in [m.strip() for m in match.split(",")]
                since = self.headers.get("If-Modified-Since")
                if since:
                    try:
                        return parsedate_to_datetime(since) >= parsedate_to_datetime(
                            route.last_modified
                        )
                    except (TypeError, ValueError):
                        return False
                return False

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str | None,
                stream: bool = False,
                **headers,
            ):
                try:
                    self.send_response(status)
                    if content_type:
                        self.send_header("Content-Type", content_type)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if stream:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if body and self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a size cap, a timeout)

        return Handler


def main() -> None:
    root, port = Path(sys.argv[1]), int(sys.argv[2])
    server = FeedServer(root=root, port=port)
    print(f"serving {root} on {server.port}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
