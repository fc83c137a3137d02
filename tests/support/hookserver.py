"""A webhook receiver on loopback that checks every call as a real receiver would.

Each POST's signature is verified with `standardwebhooks` (the receivers' own library)
against the secret the test gives; the calls are recorded with the verdict. What the
server answers is a script: a list of actions used one per call ("200", "500", "drop"
to close the connection without an answer, "hang:SECONDS" to answer 200 that late),
then `then` for every further call.

Also runs alone, for the benchmark and the worker-kill test:
`python -m tests.support.hookserver PORT` answers 204 to everything, quickly.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str = ""

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class HookServer:
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.calls: list[Call] = []
        self.script: list[str] = []
        self.then = "200"
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> HookServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, *actions: str, then: str = "200") -> None:
        with self.lock:
            self.script = list(actions)
            self.then = then

    def wait_for(self, count: int, timeout: float = 10) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.calls)} call(s) arrived, not {count}")
                self.arrived.wait(left)
            return list(self.calls)

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[bool, str]:
        if self.secret is None:
            return False, "no secret"
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as error:
            return False, str(error)
        return True, ""

    def _next_action(self) -> str:
        with self.lock:
            return self.script.pop(0) if self.script else self.then

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified, error = server._verify(body, headers)
                action = server._next_action()
                with server.arrived:
                    server.calls.append(Call(self.path, headers, body, verified, error))
                    server.arrived.notify_all()
                if action == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                status = 200
                if action.startswith("hang:"):
                    time.sleep(float(action.split(":", 1)[1]))
                else:
                    status = int(action)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        return Handler


class _Quick(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    httpd = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Quick)
    httpd.daemon_threads = True
    httpd.serve_forever()
