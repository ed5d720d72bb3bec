"""Fetching a client's ``image_url`` without letting the client aim the server at its own network.

A URL a client names is a request the server makes from where it stands: to its loopback services, its private
network, a cloud metadata service at 169.254.169.254. So a fetch here:

- takes http(s) URLs only, without user names or passwords, and (with ``hosts``) only on the hosts listed;
- resolves the host once and refuses it unless every address it resolves to is public: not loopback, private,
  link-local, multicast, reserved, unspecified, shared (100.64/10) or documentation, IPv4 or IPv6, nor an IPv6
  form of such an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64); numeric hosts in any spelling inet_aton
  takes (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``) are read as the address they spell;
- connects to the address it checked (no second lookup that DNS rebinding could answer differently), with TLS
  still verified against the host name;
- follows redirects by hand, a few at most, each checked as the first URL was;
- has one deadline for the whole fetch (however slowly the headers or the body trickle in) and one byte limit;
- fails with one message whatever went wrong, so that it cannot be used to tell a closed port from an open one or
  a refused address from an unreachable one; the reason goes to the server's log.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Callable, Union
from urllib.parse import quote, urljoin, urlsplit

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Resolve = Callable[[str, int], Sequence[str]]  # (host, port) -> the addresses it resolves to
Connect = Callable[[str, int, float], socket.socket]  # (address, port, timeout) -> a connected socket

log = logging.getLogger(__name__)

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Ranges no client may reach through the server; ipaddress's flags cover most of them, but which ones differs
# between Python versions, so they are also listed here.
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches the host itself on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local: cloud metadata services
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMBER_PART = re.compile(r"(0x[0-9a-f]*|[0-9]+)\Z", re.IGNORECASE)
_resolver_pool: ThreadPoolExecutor | None = None
_resolver_lock = threading.Lock()


class FetchError(Exception):
    """A fetch refused or failed: ``str()`` is the message for the client (the same for every failure),
    ``reason`` what happened (for the server's log)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Failed(Exception):
    """Inside the fetcher: why this fetch fails (becomes a ``FetchError`` with the one client message)."""


def parse_numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric host spells the way inet_aton reads it (1 to 4 parts, each decimal, 0x-hex
    or 0-led octal, the last filling the remaining bytes: ``127.1``, ``2130706433``, ``0x7f.0.0.1``), else None."""
    parts = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER_PART.match(part) for part in parts):
        return None
    values = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part))
        except ValueError:  # 08, 09: not octal, and no resolver reads them as a number either
            return None
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> Address | None:
    """The address a host names literally (an IPv6 literal, or IPv4 in any inet_aton spelling), else None."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])  # a zone id names an interface: link-local anyway
        except ValueError:
            return None
    return parse_numeric_ipv4(host)


def normalise_host(name: str) -> str:
    """A host name as it is compared and looked up: IDNA (ASCII), lower case; ``UnicodeError`` if it cannot be."""
    return name.strip().encode("idna").decode("ascii").lower()


def is_public_address(address: Address) -> bool:
    """Whether a client may have the server connect to ``address`` (see the module's docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # the kernel connects to the IPv4 address itself
            return is_public_address(address.ipv4_mapped)
        embedded = [address.sixtofour, address.teredo[1] if address.teredo else None]
        if address in NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(inner is not None and not is_public_address(inner) for inner in embedded):
            return False
    flags = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
        getattr(address, "is_site_local", False),
    )
    if any(flags) or not address.is_global:
        return False
    return not any(address in network for network in BLOCKED_NETWORKS if network.version == address.version)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system's resolver, once)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def connect_to(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to exactly ``address`` (a checked IP address, never a name)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _Deadline:
    """One deadline for a whole fetch: reads and connects time out at it, and a timer shuts down the open socket
    when it passes, so a source sending a byte at a time cannot keep a fetch going read after read."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.expired = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0 or self.expired:
            raise _Failed("the deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:  # the plain socket call, also under TLS: a blocked read returns at once
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._timer.cancel()


@dataclass
class UrlFetcher:
    """``fetch(url)`` -> the bytes at ``url`` under the rules of the module's docstring, else ``FetchError``.

    ``hosts``: the only host names allowed (lower case; None: any host whose addresses are public).
    ``resolve``, ``connect`` and ``address_allowed`` are the resolver, the connection and the address check;
    tests replace them to reach servers on loopback as if they were public, without any network.
    ``tls_context``: the certificates https trusts (default: the system's), always checked against the host."""

    max_bytes: int
    timeout: float = 10.0
    hosts: frozenset[str] | None = None
    max_redirects: int = 3
    resolve: Resolve = resolve_host
    connect: Connect = connect_to
    address_allowed: Callable[[Address], bool] = is_public_address
    user_agent: str = "blip2-serve"
    tls_context: ssl.SSLContext | None = field(default=None, repr=False)  # None: the system's CAs

    @property
    def message(self) -> str:
        """What a client reads for every refused or failed fetch: the rules, never what happened."""
        where = "on the hosts this server allows" if self.hosts is not None else "of public addresses"
        return (
            f"image_url: could not fetch an image from this URL (this server fetches http(s) URLs {where} only, "
            f"answering 200 within {self.timeout:g} s with at most {self.max_bytes} bytes, "
            f"after at most {self.max_redirects} redirects)"
        )

    def fetch(self, url: str) -> bytes:
        deadline = _Deadline(self.timeout)
        try:
            for _ in range(self.max_redirects + 1):
                body, location = self._get(url, deadline)
                if location is None:
                    return body
                url = urljoin(url, location)
            raise _Failed(f"more than {self.max_redirects} redirects")
        except (_Failed, OSError, http.client.HTTPException, ValueError, UnicodeError, FutureTimeout) as error:
            reason = f"{type(error).__name__}: {error}" if not isinstance(error, _Failed) else str(error)
            if deadline.expired:
                reason = f"the deadline passed ({reason})"
            log.info("image_url refused: %s: %s", url, reason)
            raise FetchError(self.message, reason) from None
        finally:
            deadline.close()

    def _get(self, url: str, deadline: _Deadline) -> tuple[bytes, str | None]:
        """One request: (the body, None) for a 200, (b"", where to) for a redirect."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _Failed(f"scheme {scheme!r}")
        if parts.username is not None or parts.password is not None:
            raise _Failed("credentials in the URL")
        host = normalise_host(parts.hostname or "")
        if not host:
            raise _Failed("no host")
        port = parts.port or (443 if scheme == "https" else 80)
        if self.hosts is not None and host.rstrip(".") not in self.hosts:
            raise _Failed(f"host {host} is not in the allow list")
        connection_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        connection = connection_class(host, port, timeout=self.timeout)
        sock = self._open(host, port, deadline)
        try:
            if scheme == "https":
                # SNI and the certificate checked against the host name, on the connection to the checked address
                sock = self._tls_context().wrap_socket(sock, server_hostname=host.rstrip("."))
                deadline.watch(sock)
            connection.sock = sock  # http.client connects by name only when it has no socket
            path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (f"?{parts.query}" if parts.query else "")
            connection.request(
                "GET",
                path,
                headers={
                    "User-Agent": self.user_agent,
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status in REDIRECTS and location:
                return b"", location
            if response.status != 200:
                raise _Failed(f"HTTP {response.status}")
            return self._body(response, deadline), None
        finally:
            connection.close()
            sock.close()

    def _open(self, host: str, port: int, deadline: _Deadline) -> socket.socket:
        """A socket connected to an address of ``host``, after every address it resolves to passed the check."""
        literal = literal_address(host.rstrip("."))
        if literal is not None:
            addresses = [literal]
        else:
            future = _resolver().submit(self.resolve, host, port)
            names = future.result(timeout=deadline.left())  # a hung resolver costs its thread, not this request
            addresses = [ipaddress.ip_address(name.split("%", 1)[0]) for name in names]
        if not addresses:
            raise _Failed(f"{host} resolves to no address")
        refused = [str(address) for address in addresses if not self.address_allowed(address)]
        if refused:
            raise _Failed(f"{host} resolves to {', '.join(refused)}, not a public address")
        errors = []
        for address in addresses:
            try:
                sock = self.connect(str(address), port, deadline.left())
            except OSError as error:
                errors.append(f"{address}: {error}")
                continue
            deadline.watch(sock)
            return sock
        raise _Failed(f"cannot connect to {host}:{port} ({'; '.join(errors)})")

    def _body(self, response: http.client.HTTPResponse, deadline: _Deadline) -> bytes:
        declared = response.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise _Failed(f"Content-Length {declared} is over the limit")
        data = bytearray()
        while True:
            deadline.left()
            chunk = response.read(min(64 * 1024, self.max_bytes + 1 - len(data)))
            if not chunk:
                break
            data += chunk
            if len(data) > self.max_bytes:
                raise _Failed("the body is over the limit")
        deadline.left()  # a body cut short by the deadline is a failure, not a shorter image
        return bytes(data)

    def _tls_context(self) -> ssl.SSLContext:
        if self.tls_context is None:
            self.tls_context = ssl.create_default_context()
        return self.tls_context


def _resolver() -> ThreadPoolExecutor:
    """A few threads for name lookups, which have no timeout of their own."""
    global _resolver_pool
    with _resolver_lock:
        if _resolver_pool is None:
            _resolver_pool = ThreadPoolExecutor(4, thread_name_prefix="blip2-resolve")
        return _resolver_pool
