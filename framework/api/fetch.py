"""Downloading an image from a URL a caller gave, without letting the API reach what it must not (SSRF).

Every address the host name resolves to is checked before anything connects; the connection
then goes to an address that was checked (a second DNS answer cannot swap in another), and
each redirect is checked the same way. Loopback, private, link-local, shared, reserved and
multicast addresses are refused unless SPOTBOT_API_FETCH_ALLOW_NETWORKS names their network.
The size and the content type of a download are bounded, and so is its total time: one deadline
for the whole of it (resolving, connecting, TLS, the status line and headers, the body, every
redirect). A socket timeout bounds each wait only, so a server sending a byte of its headers
now and then would hold a thread for ever; at the deadline a watchdog shuts the connection's
socket, which ends whatever read is under way. The image's header is then read for its size in
pixels (formats.require_image), never its pixels.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
import urllib3.connection

from ..errors import ConfigError, ImageRefused
from ..settings import Settings
from .formats import CONTENT_TYPES, EXTENSIONS, media_type, require_image, url_extension

log = logging.getLogger("spotbot.api.fetch")

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
READ_SIZE = 64 * 1024
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Deadline:
    """One download's deadline: the sockets it opens are shut when it passes (at once, if it has).

    It keeps a duplicate of each socket's descriptor: a shutdown through it ends the connection
    whichever object holds it by then (TLS wraps the plain socket in a new one), and the number
    cannot have been given to another file meanwhile.
    """

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.passed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return max(0.1, self.at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock.dup())
            if self.passed:
                _shut(self._sockets[-1])

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()  # the duplicates only: the connections' own sockets are their pools'
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    try:  # shutdown, not close: it wakes a thread blocked in recv on the connection at once
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


class _Watched:
    """A connection whose plain socket its download's Deadline watches from the moment it is connected,
    so a TLS handshake or headers that trickle in are cut off too."""

    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self.deadline.watch(sock)
        return sock


class WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    format: str  # a key of formats.FORMATS, from the bytes


def parse_networks(text: str) -> list[Network]:
    """SPOTBOT_API_FETCH_ALLOW_NETWORKS as networks; a bad entry is a ConfigError naming the setting."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{item!r} is not a network like 127.0.0.1/32 or 10.0.0.0/8",
                              field="SPOTBOT_API_FETCH_ALLOW_NETWORKS") from None
    return networks


def forbidden(address: Address, allowed: list[Network]) -> str:
    """Why the API may not connect to this address ('' when it may)."""
    if isinstance(address, ipaddress.IPv6Address):
        # an IPv6 form that carries an IPv4 address reaches that IPv4 address: judge that one
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return forbidden(embedded, allowed)
    if any(address in network for network in allowed):
        return ""
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "" if address.is_global else "non-public"


class ImageFetcher:
    """Downloads images for the API within the limits its settings set."""

    def __init__(self, settings: Settings):
        self.max_bytes = settings.api_fetch_max_bytes
        self.max_pixels = settings.api_max_pixels
        self.timeout = settings.api_fetch_timeout
        self.allowed = parse_networks(settings.api_fetch_allow_networks)

    def fetch(self, url: str, *, field: str = "url", require_extension: bool = False) -> FetchedImage:
        """The image at url (HTTP 200, an image content type, at most max_bytes, within timeout), or ImageRefused."""
        if require_extension and url_extension(url) not in EXTENSIONS:
            raise ImageRefused(f"must name a file ending in .{', .'.join(EXTENSIONS)}", field=field, url=url)
        deadline = Deadline(self.timeout)
        try:
            return self._follow(url, field, deadline)
        except ImageRefused:
            if deadline.passed:  # whatever broke off (a read, a connection), the deadline did it
                raise self._too_slow(field, url) from None
            raise
        finally:
            deadline.cancel()

    def _follow(self, url: str, field: str, deadline: Deadline) -> FetchedImage:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._get(current, field, deadline)
            try:
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise ImageRefused(f"answered HTTP {response.status} without a Location", field=field, url=url)
                    current = urljoin(current, location)
                    continue
                return self._image(response, field, url, deadline)
            finally:
                response.release_conn()
                response.close()
        raise ImageRefused(f"redirected more than {MAX_REDIRECTS} times", field=field, url=url)

    def _too_slow(self, field: str, url: str) -> ImageRefused:
        return ImageRefused(f"took longer than {self.timeout:g} s to download (SPOTBOT_API_FETCH_TIMEOUT)",
                            field=field, url=url)

    def _get(self, url: str, field: str, deadline: Deadline) -> urllib3.BaseHTTPResponse:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ImageRefused(f"is not a valid URL: {exc}", field=field, url=url) from None
        if parts.scheme not in ("http", "https"):
            raise ImageRefused("must be an http:// or https:// URL", field=field, url=url)
        host = parts.hostname
        if not host:
            raise ImageRefused("has no host name", field=field, url=url)
        if parts.username is not None or parts.password is not None:
            raise ImageRefused("must not carry a user name or password", field=field, url=url)
        port = port or (443 if parts.scheme == "https" else 80)
        address = self._checked_address(host, port, field, url, deadline)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        left = deadline.left()
        timeout = urllib3.Timeout(connect=left, read=left)
        if parts.scheme == "https":
            # connect to the checked address, but verify the certificate for the name the caller gave
            pool: urllib3.HTTPConnectionPool = WatchedHTTPSPool(
                str(address), port, timeout=timeout, retries=False, cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(), assert_hostname=host, server_hostname=host, deadline=deadline)
        else:
            pool = WatchedPool(str(address), port, timeout=timeout, retries=False, deadline=deadline)
        headers = {"Host": parts.netloc, "User-Agent": "spotbot-api", "Accept": ", ".join(CONTENT_TYPES),
                   "Accept-Encoding": "identity"}  # a compressed body could expand past the size limit unseen
        try:
            return pool.urlopen("GET", target, headers=headers, redirect=False, preload_content=False,
                                assert_same_host=False, release_conn=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageRefused(f"could not be fetched from {parts.netloc}: {_reason(exc)}", field=field, url=url) from None

    def _checked_address(self, host: str, port: int, field: str, url: str, deadline: Deadline) -> Address:
        """An address of host to connect to, after every address it resolves to was checked."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._resolve(host, port, field, url, deadline)
        for address in addresses:
            why = forbidden(address, self.allowed)
            if why:
                log.info("refused to fetch from %s (%s address %s)", host, why, address)
                where = f"{host} is a {why} address" if host.strip("[]") == str(address) else \
                    f"{host} resolves to a {why} address ({address})"
                raise ImageRefused(f"refused: {where}; the API fetches only from public addresses unless "
                                   "SPOTBOT_API_FETCH_ALLOW_NETWORKS names the network", field=field, url=url)
        return addresses[0]

    def _resolve(self, host: str, port: int, field: str, url: str, deadline: Deadline) -> list[Address]:
        # getaddrinfo has no timeout of its own: it runs on a daemon thread, and the caller waits at most the time left
        answer: list = []

        def resolve() -> None:
            try:
                answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except (OSError, UnicodeError) as exc:
                answer.append(exc)

        thread = threading.Thread(target=resolve, name="spotbot-resolve", daemon=True)
        thread.start()
        thread.join(timeout=deadline.left())
        if not answer:
            raise ImageRefused(f"host {host} did not resolve within {self.timeout:g} s", field=field, url=url)
        infos = answer[0]
        if isinstance(infos, Exception):
            raise ImageRefused(f"host {host} does not resolve", field=field, url=url)
        found: list[Address] = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if address not in found:
                found.append(address)
        if not found:
            raise ImageRefused(f"host {host} does not resolve", field=field, url=url)
        return found

    def _image(self, response: urllib3.BaseHTTPResponse, field: str, url: str, deadline: Deadline) -> FetchedImage:
        if response.status != 200:
            raise ImageRefused(f"answered HTTP {response.status}, not 200", field=field, url=url)
        kind = media_type(response.headers.get("Content-Type"))
        if kind not in CONTENT_TYPES:
            raise ImageRefused(f"answered with Content-Type {kind or 'none'!r}, not an image type "
                               f"({', '.join(CONTENT_TYPES)})", field=field, url=url, status=415)
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise self._too_large(field, url)
        data = bytearray()
        try:
            while True:
                if deadline.passed:
                    raise self._too_slow(field, url)
                piece = response.read1(READ_SIZE, decode_content=False)  # returns what one receive brought
                if not piece:
                    break
                data += piece
                if len(data) > self.max_bytes:
                    raise self._too_large(field, url)
        except urllib3.exceptions.HTTPError as exc:
            raise ImageRefused(f"download broke off: {_reason(exc)}", field=field, url=url) from None
        if deadline.passed:  # the watchdog's shutdown reads as the end of a body sent without a length
            raise self._too_slow(field, url)
        return FetchedImage(bytes(data), require_image(bytes(data), field=field, url=url, max_pixels=self.max_pixels))

    def _too_large(self, field: str, url: str) -> ImageRefused:
        return ImageRefused(f"is larger than {self.max_bytes} bytes (SPOTBOT_API_FETCH_MAX_BYTES)", field=field,
                            url=url, status=413)


def _reason(exc: Exception) -> str:
    """A short reason for a failed download, without the pool's internals."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(reason, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(reason, urllib3.exceptions.SSLError):
        return f"TLS failed ({reason})"
    return type(reason).__name__
