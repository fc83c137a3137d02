"""Outbound HTTP that reaches only the public internet, within one deadline.

Whoever can make the application fetch a URL (an administrator adding a feed, a
publisher's redirect) must not be able to make it fetch from inside the network: the
loopback interface, private networks, link-local addresses (169.254.169.254 is a cloud's
metadata service), or any other address that is not globally routable. So:

- `refused_reason(ip)` is the policy: the address itself, IPv4 inside IPv6 (mapped,
  NAT64, 6to4) unwrapped first.
- `resolve_public(host, port)` resolves a name once (the system resolver, so odd numeric
  forms such as 2130706433, 0x7f000001 or 0177.0.0.1 are read the way a connection would
  read them) and refuses the name if any of its addresses is refused.
- `GuardedTransport` is an httpx transport whose connections are opened to exactly the
  addresses that were checked, never by resolving the name again: no window for a DNS
  answer that changes between the check and the connection (rebinding). The Host header
  and the TLS server name stay the URL's, so virtual hosts and certificates work as usual.
  Every redirect opens its connection through the same check.
- `deadline(seconds)` bounds a whole exchange, however many connections, TLS handshakes,
  redirects and reads it takes: every socket operation of the thread gets at most the
  time that is left (httpx's own timeouts are per operation, so a server that drips
  one byte at a time would otherwise never trip them).

Foundation: no app, no database. `allow_private` lifts the address policy (tests serve
their documents on loopback; an intranet installation may need it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedAddress(httpcore.ConnectError):
    """The host is, or resolves to, an address that outbound requests may not reach.

    A ConnectError, so httpx reports it like any other failure to connect (the callers
    show all of them with one message: a refusal must not be told from a closed port).
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


def refused_reason(ip: IPAddress) -> str | None:
    """Why a request may not go to `ip` (loopback, private, link-local, ...); None if public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refused_reason(embedded)
            return f"{inner} (inside {ip})" if inner else None
    for flag, reason in (
        ("is_unspecified", "unspecified address"),
        ("is_loopback", "loopback address"),
        ("is_link_local", "link-local address (such as a cloud metadata service)"),
        ("is_multicast", "multicast address"),
        ("is_private", "private network address"),
        ("is_reserved", "reserved address"),
    ):
        if getattr(ip, flag):
            return f"{reason} {ip}"
    if not ip.is_global:  # shared (carrier-grade NAT) space, documentation ranges...
        return f"non-public address {ip}"
    return None


# Name lookups run here so that a resolver that does not answer cannot outlast the
# deadline (getaddrinfo itself has no timeout); a lookup abandoned at its deadline
# finishes on its own in the background.
_resolver = ThreadPoolExecutor(max_workers=8, thread_name_prefix="outbound-dns")


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of `host` as a connection would use them (tests stub this)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]  # a literal: nothing to look up
    if timeout is not None and timeout <= 0:
        # No time left: no lookup is started (abandoned, it would hold one of the
        # resolver's threads, which every fetch shares, until the name server answers).
        raise httpcore.ConnectTimeout(f"{host}: no time left to look the name up")
    future = _resolver.submit(_getaddrinfo, host, port)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise httpcore.ConnectTimeout(f"{host}: no answer from the name server") from None
    except (OSError, UnicodeError) as error:
        raise httpcore.ConnectError(f"{host}: {error}") from None


def resolve_public(
    host: str, port: int, *, allow_private: bool = False, timeout: float | None = None
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses to connect to for `host`; RefusedAddress if any of them is refused."""
    host = host.strip("[]")
    name = host.lower().rstrip(".")
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        # Loopback by definition (RFC 6761), whatever a resolver answers or fails to.
        raise RefusedAddress(host, "loopback name")
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port, timeout)]
    if not addresses:
        raise httpcore.ConnectError(f"{host}: no address")
    if not allow_private:
        for address in addresses:
            reason = refused_reason(address)
            if reason:
                raise RefusedAddress(host, reason)
    return addresses


# ----------------------------------------------------------------- one deadline

_deadline: ContextVar[float | None] = ContextVar("outbound_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Everything outbound in this block (this thread) ends within `seconds`."""
    until = time.monotonic() + seconds
    token = _deadline.set(until)
    try:
        yield until
    finally:
        _deadline.reset(token)


def time_left(timeout: float | None, exc: type[Exception] = httpcore.ReadTimeout) -> float | None:
    """`timeout` cut to what is left of the deadline; `exc` when nothing is left."""
    until = _deadline.get()
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise exc("the deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the deadline of the thread using it."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host (httpcore passes it), not the address
        # connected to: SNI and certificate checks are those of the name.
        return _DeadlineStream(
            self._stream.start_tls(
                ssl_context, server_hostname, time_left(timeout, httpcore.ConnectTimeout)
            )
        )

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Opens each connection to an address checked by `resolve_public`, by the deadline."""

    def __init__(self, *, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        self._sync = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_public(
            host,
            port,
            allow_private=self.allow_private,
            timeout=time_left(timeout, httpcore.ConnectTimeout),
        )
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._sync.connect_tcp(
                    str(address),
                    port,
                    timeout=time_left(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failed:
                error = failed
                continue
            return _DeadlineStream(stream)
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> typing.NoReturn:
        raise httpcore.ConnectError("unix sockets are not reachable from outside")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport, its connections opened by a GuardedBackend; no proxies."""

    def __init__(self, *, allow_private: bool = False, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        super().__init__(limits=limits, trust_env=False)
        # The pool httpx builds, with the backend it does not let us pass (same
        # settings: verified TLS with the system's certificates, HTTP/1.1).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def host_refusal(url: str, *, allow_private: bool = False, timeout: float = 5.0) -> str | None:
    """Why `url`'s host may not be fetched (its addresses, looked up now); None if it may.

    For checks before anything is fetched (adding a feed). A name that does not resolve
    now is not refused here: every fetch checks again, and a name may exist later.
    """
    if allow_private:
        return None
    # urllib, not httpx: httpx rejects some numeric hosts (0177.0.0.1) that the system
    # resolver reads as loopback; they must be refused, not let through as unreadable.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    try:
        resolve_public(host, port, timeout=timeout)
    except RefusedAddress as refused:
        return refused.reason
    except (httpcore.ConnectError, httpcore.ConnectTimeout, ValueError):
        return None
    return None
