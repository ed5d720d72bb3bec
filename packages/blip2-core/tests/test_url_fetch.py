"""blip2-serve's image_url fetcher cannot be turned against the host: every spelling of an inside address, names
that resolve inside, redirects to inside, slow sources, oversized bodies, one message for every failure.

Every server here listens on 127.0.0.1. A "public" host is a made-up name that the injected resolver maps to a
public address and the injected connection lands on a loopback server: the real address check runs, and nothing
is ever sent to any address but loopback (a connection to anything else fails the test).
"""

import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from blip2_core.serve.url_fetch import FetchError, UrlFetcher, is_public_address, literal_address

PUBLIC = "93.184.215.14"  # a public address; never contacted: connections to it land on a loopback server


class Site:
    """A loopback HTTP server answering from ``routes`` (path -> (status, headers, body)); counts its requests."""

    def __init__(self, routes=None) -> None:
        self.routes = routes or {}
        self.requests: list[tuple[str, dict]] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                site.requests.append((self.path, dict(self.headers)))
                status, headers, body = site.routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    sites = []

    def make(routes=None) -> Site:
        sites.append(Site(routes))
        return sites[-1]

    yield make
    for one in sites:
        one.close()


def public_fetcher(ports: dict, names: dict | None = None, **kwargs) -> UrlFetcher:
    """A fetcher whose resolver knows ``names`` (host -> addresses) and whose connections to the addresses in
    ``ports`` land on those loopback ports; any other connection fails the test."""
    names = names or {}

    def resolve(host, port):
        host = host.rstrip(".")
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return names[host]

    def connect(address, port, timeout):
        assert address in ports, f"the fetcher tried to connect to {address}"
        return socket.create_connection(("127.0.0.1", ports[address]), timeout)

    return UrlFetcher(**{"max_bytes": 10_000, "timeout": 5.0, "resolve": resolve, "connect": connect, **kwargs})


def refused(fetcher: UrlFetcher, url: str) -> str:
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(url)
    assert str(caught.value) == fetcher.message  # the one message, whatever happened
    return caught.value.reason


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0X7F000001",
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",
    "127.1",  # short
    "127.0.1",
    "127.0.0.1.",  # with the root's dot
    "0",  # 0.0.0.0: the host itself on Linux
    "0.0.0.0",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "localhost",  # a name that resolves inside (the system's resolver: /etc/hosts)
    "LOCALHOST",
]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused_before_connecting(site, spelling):
    server = site({"/secret": (200, {}, b"loopback-only data")})
    fetcher = UrlFetcher(max_bytes=10_000, timeout=5.0)  # the real resolver and connection
    reason = refused(fetcher, f"http://{spelling}:{server.port}/secret")
    assert server.requests == [], reason  # nothing reached the server
    assert "not a public address" in reason


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",  # cloud metadata
        "0xa9fea9fe",  # the same, hex
        "2852039166",  # the same, decimal
        "0251.0376.0251.0376",  # the same, octal
        "10.0.0.1",
        "10.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # shared (carrier-grade NAT)
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "198.18.0.1",
        "192.0.0.8",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[ff02::1]",
        "[fec0::1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[2002:7f00:1::]",  # 6to4 around 127.0.0.1
        "[2002:a9fe:a9fe::]",  # 6to4 around 169.254.169.254
        "[64:ff9b::a9fe:a9fe]",  # NAT64 around 169.254.169.254
        "[64:ff9b::7f00:1]",
        "[::127.0.0.1]",  # IPv4-compatible (deprecated)
        "[2001:db8::1]",
        "[100::1]",
    ],
)
def test_inside_addresses_are_refused_without_any_traffic(host):
    fetcher = public_fetcher({})  # any connection fails the test
    reason = refused(fetcher, f"http://{host}/latest/meta-data/")
    assert "not a public address" in reason


def test_the_address_check():
    inside = [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "100.127.255.255",
        "0.0.0.0",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "2002:c0a8:101::1",
        "64:ff9b::a00:1",
        "224.0.0.251",
    ]
    outside = [PUBLIC, "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "100.128.0.1"]
    assert [a for a in inside if is_public_address(ipaddress.ip_address(a))] == []
    assert [a for a in outside if not is_public_address(ipaddress.ip_address(a))] == []
    # inet_aton's spellings are read as the address they spell, not looked up as names
    spelled = {
        "2130706433": "127.0.0.1",
        "0x7f000001": "127.0.0.1",
        "0177.0.0.1": "127.0.0.1",
        "127.1": "127.0.0.1",
        "10.1.2": "10.1.0.2",
        "0x7f.1": "127.0.0.1",
        "1.2.3.4.": "1.2.3.4",
    }
    assert {text: str(literal_address(text)) for text in spelled} == spelled
    for name in ("example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1..2", "+1", "1_0", "１２７.0.0.1"):
        assert literal_address(name) is None, name


def test_a_name_is_refused_if_any_address_it_resolves_to_is_inside(site):
    server = site({"/a.png": (200, {}, b"image")})
    names = {
        "inside.example": ["10.0.0.7"],
        "mixed.example": [PUBLIC, "127.0.0.1"],  # one public address is not enough: a client may choose
        "metadata.example": ["169.254.169.254"],
        "v6.example": ["::1"],
        "good.example": [PUBLIC],
    }
    fetcher = public_fetcher({PUBLIC: server.port}, names)
    for host in ("inside.example", "mixed.example", "metadata.example", "v6.example"):
        assert "not a public address" in refused(fetcher, f"http://{host}/a.png")
    assert server.requests == []
    assert fetcher.fetch("http://good.example/a.png") == b"image"
    path, headers = server.requests[0]
    assert path == "/a.png" and headers["Host"] == "good.example"  # the checked address, under its name


def test_redirects_are_followed_by_hand_and_each_checked(site):
    inside = site({"/secret": (200, {}, b"loopback-only data")})
    to = f"{inside.port}/secret"
    public = site(
        {
            "/to-loopback": (302, {"Location": f"http://127.0.0.1:{to}"}, b""),
            "/to-localhost": (301, {"Location": f"http://localhost:{to}"}, b""),
            "/to-decimal": (307, {"Location": f"http://2130706433:{to}"}, b""),
            "/to-mapped": (308, {"Location": f"http://[::ffff:127.0.0.1]:{to}"}, b""),
            "/to-metadata": (303, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-inside-name": (302, {"Location": "http://inside.example/secret"}, b""),
            "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/relative": (302, {"Location": "/image.png"}, b""),
            "/elsewhere": (302, {"Location": "http://cdn.example/image.png"}, b""),
            "/image.png": (200, {}, b"the image"),
            "/loop": (302, {"Location": "/loop"}, b""),
        }
    )
    names = {
        "public.example": [PUBLIC],
        "cdn.example": [PUBLIC],
        "inside.example": ["192.168.0.10"],
        "localhost": ["127.0.0.1", "::1"],  # as /etc/hosts has it
    }
    fetcher = public_fetcher({PUBLIC: public.port}, names, max_redirects=3)
    for path in ("/to-loopback", "/to-localhost", "/to-decimal", "/to-mapped", "/to-metadata", "/to-inside-name"):
        assert "not a public address" in refused(fetcher, f"http://public.example{path}")
    refused(fetcher, "http://public.example/to-file")
    assert inside.requests == []  # never reached, however the redirect spelled it
    assert fetcher.fetch("http://public.example/relative") == b"the image"
    assert fetcher.fetch("http://public.example/elsewhere") == b"the image"
    before = len(public.requests)
    assert "more than 3 redirects" in refused(fetcher, "http://public.example/loop")
    assert len(public.requests) - before == 4  # the first request and 3 redirects, no more


def test_one_deadline_for_the_whole_fetch_however_slowly_the_source_sends():
    """A source sending a byte at a time (headers or body) is cut at the deadline, not at each read's timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle(connection, data):
        with connection:
            connection.recv(65536)
            for byte in data:
                if stop.is_set():
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    def serve():
        bodies = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + b"x" * 400,  # slow body
            b"HTTP/1.1 200 OK\r\nX-Padding: " + b"y" * 400 + b"\r\n\r\n",  # slow headers
        ]
        for body in bodies:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(connection, body), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    fetcher = public_fetcher({PUBLIC: listener.getsockname()[1]}, {"slow.example": [PUBLIC]}, timeout=1.0)
    try:
        for _ in range(2):
            started = time.monotonic()
            reason = refused(fetcher, "http://slow.example/image.png")
            assert time.monotonic() - started < 2.5, reason  # 400 bytes at 20/s would take 20 s
            assert "deadline" in reason
    finally:
        stop.set()
        listener.close()


def test_the_byte_limit_holds_with_or_without_a_content_length(site):
    class Streaming(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"z" * 1000)  # no length: sent until the connection closes

        def log_message(self, *args):
            pass

    streaming = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    threading.Thread(target=streaming.serve_forever, daemon=True).start()
    declared = site({"/big": (200, {}, b"z" * 5000), "/small": (200, {}, b"z" * 1000)})
    try:
        ports = {PUBLIC: declared.port, "93.184.215.15": streaming.server_address[1]}
        names = {"declared.example": [PUBLIC], "streaming.example": ["93.184.215.15"]}
        fetcher = public_fetcher(ports, names, max_bytes=2000)
        assert "Content-Length 5000" in refused(fetcher, "http://declared.example/big")
        assert "over the limit" in refused(fetcher, "http://streaming.example/any")
        assert fetcher.fetch("http://declared.example/small") == b"z" * 1000
    finally:
        streaming.shutdown()
        streaming.server_close()


def test_every_failure_reads_the_same_to_the_client(site):
    """A closed port, an open one that is refused, a 404, a bad scheme, an unknown name: one message, so the
    fetcher cannot map what answers where."""
    server = site({"/ok.png": (200, {}, b"fine")})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once the probe is closed
    ports = {PUBLIC: server.port, "93.184.215.16": closed_port}
    fetcher = public_fetcher(ports, {"open.example": [PUBLIC], "closed.example": ["93.184.215.16"]})
    reasons = [
        refused(fetcher, url)
        for url in (
            "http://closed.example/a.png",  # a closed port
            f"http://127.0.0.1:{server.port}/ok.png",  # an open port, refused
            f"http://127.0.0.1:{closed_port}/ok.png",  # a closed port, refused
            "http://open.example/missing.png",  # 404
            "http://nowhere.example/a.png",  # no such name
            "ftp://open.example/a.png",
            "file:///etc/passwd",
            "http://user:secret@open.example/ok.png",
            "http://open.example:99999/ok.png",
            "not a url",
        )
    ]
    # the server's log tells them apart (the client cannot); an inside address is refused before any connection,
    # so even the log cannot tell its open ports from its closed ones
    assert len(set(reasons)) == len(reasons) - 1 and reasons[1] == reasons[2]
    assert fetcher.fetch("http://open.example/ok.png") == b"fine"


def test_an_allow_list_of_hosts(site):
    server = site({"/a.png": (200, {}, b"image")})
    names = {"a.example": [PUBLIC], "b.example": [PUBLIC], "c.example": [PUBLIC], "inside.example": ["10.0.0.1"]}
    fetcher = public_fetcher({PUBLIC: server.port}, names, hosts=frozenset({"a.example", "inside.example"}))
    assert fetcher.fetch("http://a.example/a.png") == b"image"
    assert fetcher.fetch("http://A.Example./a.png") == b"image"
    assert "allow list" in refused(fetcher, "http://c.example/a.png")
    assert "not a public address" in refused(fetcher, "http://inside.example/a.png")  # listed, still inside
    server.routes["/hop"] = (302, {"Location": "http://b.example/a.png"}, b"")
    assert "allow list" in refused(fetcher, "http://a.example/hop")  # redirects stay on the list too
    assert "on the hosts this server allows" in fetcher.message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_goes_to_the_checked_address_and_verifies_the_host_name(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=images.example",
         "-addext", "subjectAltName=DNS:images.example", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server_names = []
    server_context.sni_callback = lambda sock, name, context: server_names.append(name)
    site = Site({"/a.png": (200, {}, b"tls image")})
    site.server.socket = server_context.wrap_socket(site.server.socket, server_side=True)
    client_context = ssl.create_default_context(cafile=str(cert))
    names = {"images.example": [PUBLIC], "other.example": [PUBLIC]}
    try:
        fetcher = public_fetcher({PUBLIC: site.port}, names, tls_context=client_context)
        assert fetcher.fetch("https://images.example/a.png") == b"tls image"
        assert server_names == ["images.example"]  # SNI names the host, though the connection went by address
        assert "certificate" in refused(fetcher, "https://other.example/a.png").lower()  # the name is checked
        untrusting = public_fetcher({PUBLIC: site.port}, names)  # the system's CAs: a self-signed cert fails
        assert "certificate" in refused(untrusting, "https://images.example/a.png").lower()
    finally:
        site.close()
