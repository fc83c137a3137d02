"""Feeds cannot be used to reach inside the network (issue 18, finding 6).

Nothing here connects anywhere but loopback. Loopback targets are spelt in every way the
system resolver reads them, next to an open loopback port that must see no connection.
Private, link-local and other internal addresses come from a stubbed resolver; the
public internet is a stubbed resolver too, whose one public address the stubbed
`socket.create_connection` carries to the feed server on loopback, and every
connection the fetcher opens is recorded, so a test sees that a refusal came before
any connection.
"""

from __future__ import annotations

import html
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from newsletters import outbound
from newsletters.extensions import db
from newsletters.feeds import services
from newsletters.feeds.fetching import unreachable
from newsletters.feeds.models import Feed
from newsletters.feeds.opml import OpmlError
from tests.support.drip import Listener
from tests.support.feedserver import FeedServer
from tests.test_editor import post_form
from tests.test_staff import ADMIN, login, make_staff

PUBLIC_IP = "93.184.215.14"  # a globally routable address; "the internet" is stubbed
REFUSED_DA = "Adressen fører til et internt netværk"


@dataclass
class Network:
    """The stubbed world outside: names and where connections to PUBLIC_IP go."""

    names: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    connections: list[tuple[str, int]] = field(default_factory=list)
    public_port: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    net = Network()
    real_lookup = outbound._getaddrinfo
    real_connect = socket.create_connection

    def lookup(host: str, port: int) -> list[str]:
        with net.lock:
            net.lookups.append(host)
            answer = net.names.get(host)
        if answer is None:
            if host.endswith(".example"):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real_lookup(host, port)  # loopback spellings: the real resolver
        return list(answer)

    def connect(address, timeout=None, source_address=None, **kwargs):
        host, port = address[0], address[1]
        with net.lock:
            net.connections.append((host, port))
        if host == PUBLIC_IP:
            # "The internet": our one public server is the feed server on loopback.
            return real_connect(("127.0.0.1", net.public_port or port), timeout)
        ip = ipaddress.ip_address(host)
        assert ip.is_loopback, f"a test tried to connect to {host}"
        return real_connect(address, timeout, source_address, **kwargs)

    monkeypatch.setattr(outbound, "_getaddrinfo", lookup)
    monkeypatch.setattr(socket, "create_connection", connect)
    return net


@pytest.fixture
def feed_server(network: Network) -> Iterator[FeedServer]:
    server = FeedServer().start()
    network.public_port = server.port
    yield server
    server.stop()


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener()
    yield sock
    sock.close()


@pytest.fixture
def guarded(make_app) -> Flask:
    """The app as installed: feeds on internal addresses refused."""
    return make_app(FEEDS_ALLOW_PRIVATE=False, FEEDS_PARSE_PROCESSES=0, FEEDS_TIMEOUT_SECONDS=2)


def feeds(app: Flask) -> list[Feed]:
    with app.app_context():
        rows = list(db.session.scalars(select(Feed).order_by(Feed.id)))
        db.session.expunge_all()
        return rows


def fetch(app: Flask) -> list[services.FetchOutcome]:
    with app.app_context():
        outcomes = services.fetch_feeds()
        db.session.remove()
        return outcomes


def public_url(server: FeedServer, path: str, name: str = "feeds.kl.example") -> str:
    return f"http://{name}:{server.port}/{path}"


# --------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.0.0.5", "172.16.3.4",  # noqa: S104
        "192.168.1.10",
        "169.254.169.254", "100.100.100.200", "100.64.0.1", "224.0.0.1", "239.255.255.250",
        "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
        "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::7f00:1",
        "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "2002:7f00:1::1",
    ],
)  # fmt: skip
def test_internal_and_reserved_addresses_are_refused(address):
    assert outbound.refused_reason(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address):
    assert outbound.refused_reason(ipaddress.ip_address(address)) is None


# --------------------------------------------------------------------------- adding a feed

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "LocalHost.",
    "feeds.localhost",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "0.0.0.0",  # noqa: S104 (a spelling of "this host", not a binding)
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::]",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_a_feed_on_loopback_is_refused_however_it_is_spelt(guarded, network, listener, host):
    url = f"http://{host}:{listener.port}/feed.xml"
    with guarded.app_context(), pytest.raises(services.RefusedFeedAddress):
        services.add_feed("kl-nyheder", url, by="test")
    assert feeds(guarded) == []
    assert network.connections == [] and listener.connections() == 0


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.5"],
        ["172.16.0.1"],
        ["192.168.1.10"],
        ["169.254.169.254"],
        ["100.100.100.200"],
        ["fd00:ec2::254"],
        ["fe80::1"],
        ["::ffff:10.0.0.1"],
        ["64:ff9b::a9fe:a9fe"],
        ["2002:a9fe:a9fe::1"],
        ["224.0.0.1"],
        ["240.0.0.1"],
        [PUBLIC_IP, "10.0.0.5"],  # one inside is enough
    ],
)
def test_a_feed_whose_name_resolves_inside_is_refused(guarded, network, addresses):
    network.names["intranet.kl.example"] = addresses
    with guarded.app_context(), pytest.raises(services.RefusedFeedAddress):
        services.add_feed("kl-nyheder", "https://intranet.kl.example/rss", by="test")
    assert feeds(guarded) == []
    assert network.connections == []


def test_the_staff_form_refuses_an_internal_address_in_danish(guarded, network, listener):
    client = guarded.test_client()
    make_staff(guarded, ADMIN, "admin")
    login(client, ADMIN)
    page = "/staff/newsletters/kl-nyheder/feeds"
    response = post_form(client, page, {"url": f"http://2130706433:{listener.port}/"})
    assert response.status_code == 422
    assert REFUSED_DA in html.unescape(response.get_data(as_text=True))
    assert feeds(guarded) == []
    assert network.connections == [] and listener.connections() == 0


def test_feeds_add_refuses_an_internal_address_in_danish(guarded, network, listener):
    runner = guarded.test_cli_runner()
    url = f"http://0x7f000001:{listener.port}/rss"
    result = runner.invoke(args=["feeds", "add", "kl-nyheder", url])
    assert result.exit_code == 1
    assert REFUSED_DA in result.output and "loopback" in result.output
    assert feeds(guarded) == []
    assert network.connections == [] and listener.connections() == 0


def test_feeds_allow_private_lets_an_operator_add_an_intranet_feed(make_app, network):
    app = make_app(FEEDS_ALLOW_PRIVATE=True)
    network.names["intranet.kl.example"] = ["10.0.0.5"]
    result = app.test_cli_runner().invoke(
        args=["feeds", "add", "kl-nyheder", "https://intranet.kl.example/rss"]
    )
    assert result.exit_code == 0, result.output
    assert [f.url for f in feeds(app)] == ["https://intranet.kl.example/rss"]


def _opml(urls: list[str]) -> bytes:
    outlines = "".join(f'<outline xmlUrl="{html.escape(u)}"/>\n' for u in urls)
    return f"<opml version='2.0'><body>\n{outlines}</body></opml>".encode()


def test_an_opml_import_looks_each_host_up_once(guarded, network):
    hosts = [f"n{i}.kl.example" for i in range(3)]
    for host in hosts:
        network.names[host] = [PUBLIC_IP]
    urls = [f"https://{host}/rss/{n}" for host in hosts for n in range(10)]
    with guarded.app_context():
        outcome = services.import_opml("kl-nyheder", _opml(urls))
    assert len(outcome.added) == 30
    assert sorted(network.lookups) == hosts


def test_an_opml_import_checks_its_addresses_within_a_bounded_time(guarded, network, monkeypatch):
    """A file of many names whose name server is slow (or never answers) cannot hold the
    request for their lookups one after another: a name not looked up in time is not
    refused here, as a name that does not resolve; every fetch checks it again. An
    address that needs no lookup is still refused."""
    stubbed = outbound._getaddrinfo
    asked: list[str] = []

    def slow(host: str, port: int) -> list[str]:
        asked.append(host)
        time.sleep(0.5)
        return stubbed(host, port)

    monkeypatch.setattr(outbound, "_getaddrinfo", slow)
    monkeypatch.setattr(services, "OPML_CHECK_SECONDS", 1.0, raising=False)
    urls = [f"https://slow{i}.kl.example/rss" for i in range(30)]
    for url in urls:
        network.names[urlsplit(url).hostname] = [PUBLIC_IP]
    started = time.monotonic()
    with guarded.app_context():
        with pytest.raises(OpmlError) as refused:
            services.import_opml("kl-nyheder", _opml([*urls, "http://127.0.0.1:8080/rss"]))
        assert time.monotonic() - started < 6  # the lookups one after another: 15 s
        assert [p.code for p in refused.value.problems] == ["refused_address"]
        # Once the time is up no lookup is started: abandoned ones would fill the
        # resolver's threads, which every fetch shares.
        time.sleep(0.2)
        assert len(asked) <= 4
        outcome = services.import_opml("kl-nyheder", _opml(urls))
    assert len(outcome.added) == 30


# --------------------------------------------------------------------------- fetching


@pytest.mark.e2e
def test_a_public_feed_is_fetched_from_the_address_that_was_checked(guarded, network, feed_server):
    # The name answers a public address once, then loopback (DNS rebinding): the fetch
    # connects to what it checked, and looks the name up once.
    answers = [[PUBLIC_IP]]
    network.names["feeds.kl.example"] = answers[0]
    url = public_url(feed_server, "kl.xml")
    feed_server.serve("kl.xml", "rss20.xml")
    with guarded.app_context():
        services.add_feed("kl-nyheder", url, by="test")
    network.names["feeds.kl.example"] = [PUBLIC_IP]
    network.lookups.clear()
    real = outbound._getaddrinfo

    def rebinding(host: str, port: int) -> list[str]:
        result = real(host, port)
        network.names["feeds.kl.example"] = ["127.0.0.1"]  # every later answer
        return result

    outbound._getaddrinfo = rebinding
    try:
        [outcome] = fetch(guarded)
    finally:
        outbound._getaddrinfo = real
    assert outcome.error is None and outcome.new == 3
    assert network.lookups == ["feeds.kl.example"]
    assert network.connections == [(PUBLIC_IP, feed_server.port)]
    [request] = feed_server.seen("kl.xml")
    assert request.headers["Host"] == f"feeds.kl.example:{feed_server.port}"


@pytest.mark.e2e
def test_a_feed_whose_name_now_resolves_inside_is_not_fetched(
    guarded, network, feed_server, listener
):
    network.names["feeds.kl.example"] = [PUBLIC_IP]
    feed_server.serve("kl.xml", "rss20.xml")
    with guarded.app_context():
        feed_id = services.add_feed("kl-nyheder", public_url(feed_server, "kl.xml")).id
    for inside in (["127.0.0.1"], ["169.254.169.254"], ["::1"], ["10.1.2.3"]):
        network.names["feeds.kl.example"] = inside
        [outcome] = fetch(guarded)
        assert outcome.error == unreachable(2)
    assert network.connections == [] and listener.connections() == 0
    assert feed_server.seen("kl.xml") == []
    [row] = feeds(guarded)
    assert row.id == feed_id and row.failures_in_a_row == 4 and row.last_error == unreachable(2)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/",
        "http://localhost:{listener}/feed.xml",
        "http://2130706433:{listener}/feed.xml",
        "http://[::ffff:7f00:1]:{listener}/feed.xml",
        "https://intranet.kl.example/rss",
    ],
)
@pytest.mark.parametrize("status", [301, 302, 308])
def test_a_redirect_to_an_internal_address_is_not_followed_or_stored(
    guarded, network, feed_server, listener, target, status
):
    network.names["feeds.kl.example"] = [PUBLIC_IP]
    network.names["intranet.kl.example"] = ["10.0.0.5"]
    feed_server.redirect("moved.xml", target.format(listener=listener.port), status=status)
    url = public_url(feed_server, "moved.xml")
    with guarded.app_context():
        services.add_feed("kl-nyheder", url, by="test")
    [outcome] = fetch(guarded)
    assert outcome.error == unreachable(2) and outcome.moved_to is None
    [row] = feeds(guarded)
    assert row.url == url  # a permanent redirect did not rewrite it
    assert network.connections == [(PUBLIC_IP, feed_server.port)]
    assert listener.connections() == 0


@pytest.mark.e2e
def test_a_permanent_redirect_to_a_public_address_still_moves_the_feed(
    guarded, network, feed_server
):
    network.names["feeds.kl.example"] = [PUBLIC_IP]
    network.names["nyt.kl.example"] = [PUBLIC_IP]
    new = public_url(feed_server, "new.xml", name="nyt.kl.example")
    feed_server.serve("new.xml", "rss20.xml")
    feed_server.redirect("old.xml", new, status=301)
    with guarded.app_context():
        services.add_feed("kl-nyheder", public_url(feed_server, "old.xml"), by="test")
    [outcome] = fetch(guarded)
    assert outcome.error is None and outcome.new == 3 and outcome.moved_to == new
    assert [f.url for f in feeds(guarded)] == [new]


# --------------------------------------------------------------------------- no port scan


class _Banner:
    """An open port that speaks something other than HTTP, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            client.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            client.close()


@pytest.mark.e2e
def test_staff_cannot_tell_an_open_port_from_a_closed_one(make_app, network, listener):
    # Even where internal addresses are allowed (an intranet installation), a failed
    # fetch says the same whether the port is closed, open and silent, or not HTTP.
    allowed = make_app(FEEDS_ALLOW_PRIVATE=True, FEEDS_TIMEOUT_SECONDS=1, FEEDS_PARSE_PROCESSES=0)
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    banner = _Banner()
    try:
        with allowed.app_context():
            for port in (closed_port, listener.port, banner.port):
                services.add_feed("kl-nyheder", f"http://127.0.0.1:{port}/rss", by="test")
        errors = {o.url: o.error for o in fetch(allowed)}
    finally:
        banner.sock.close()
    assert set(errors.values()) == {unreachable(1)}, errors
    # And where they are refused, the refusal reads the same as well.
    guarded = make_app(FEEDS_ALLOW_PRIVATE=False, FEEDS_TIMEOUT_SECONDS=1, FEEDS_PARSE_PROCESSES=0)
    assert {o.error for o in fetch(guarded)} == {unreachable(1)}


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_feed_server(network: Network, tmp_path) -> Iterator[tuple[FeedServer, list[str], str]]:
    """The feed server behind TLS with a certificate for feeds.kl.example only; the
    server names (SNI) clients asked for are recorded."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=feeds.kl.example"]
        + ["-addext", "subjectAltName=DNS:feeds.kl.example"],
        check=True,
        capture_output=True,
    )
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = FeedServer()
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    network.public_port = server.port
    yield server, names, str(cert)
    server.stop()


@pytest.mark.e2e
def test_https_keeps_the_feeds_name_for_sni_the_certificate_and_the_host_header(
    guarded, network, tls_feed_server, monkeypatch
):
    server, names, cert = tls_feed_server
    trusted = ssl.create_default_context(cafile=cert)
    monkeypatch.setattr(outbound.httpx, "create_ssl_context", lambda **kwargs: trusted)
    network.names["feeds.kl.example"] = [PUBLIC_IP]
    network.names["andet.kl.example"] = [PUBLIC_IP]  # same address, not on the certificate
    server.serve("kl.xml", "rss20.xml")
    with guarded.app_context():
        good = services.add_feed("kl-nyheder", f"https://feeds.kl.example:{server.port}/kl.xml")
        bad = services.add_feed("momentum", f"https://andet.kl.example:{server.port}/kl.xml")
        good_id, bad_id = good.id, bad.id
    outcomes = {o.feed_id: o for o in fetch(guarded)}
    assert outcomes[good_id].error is None and outcomes[good_id].new == 3
    assert outcomes[bad_id].error == unreachable(2)  # the certificate is for another name
    assert sorted(names) == ["andet.kl.example", "feeds.kl.example"]
    [request] = server.seen("kl.xml")
    assert request.headers["Host"] == f"feeds.kl.example:{server.port}"
    assert {host for host, _ in network.connections} == {PUBLIC_IP}
