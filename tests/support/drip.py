"""Hostile servers on loopback, for the fetcher's deadline and address checks.

`DripServer` answers every request with a valid HTTP response, one byte at a time,
`interval` seconds apart, starting with the status line: a fetcher whose timeout is per
read never gives up on it. `Listener` accepts nothing and only counts who connected:
a target that must never be reached.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/rss+xml\r\n"
    b"X-Padding: " + b"x" * 400 + b"\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


class DripServer:
    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self.connections = 0
        self.bytes_sent = 0
        self._clients: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str = "feed.xml") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> DripServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.sock.close()
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self._clients.append(client)
            self.connections += 1
            self.connected.set()
            threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        try:
            client.recv(65536)  # the request
            for n in range(len(RESPONSE)):
                if self._stopping.is_set():
                    return
                client.sendall(RESPONSE[n : n + 1])
                self.bytes_sent += 1
                time.sleep(self.interval)
        except OSError:
            return


class Listener:
    """A loopback port that is open, and that nothing may connect to."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, 0), family=family)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                client, _ = self.sock.accept()
            except BlockingIOError:
                return count
            client.close()
            count += 1

    def close(self) -> None:
        self.sock.close()
