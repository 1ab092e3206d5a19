"""URL fetching: no SSRF (loopback, private, link-local refused, every address and redirect checked), and bounded
size, time and content type. Real downloads from a real HTTP server on 127.0.0.1; refused addresses are never
connected to, so nothing leaves the machine."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib

import pytest

from framework.api.fetch import ImageFetcher
from framework.errors import ImageRefused
from framework.settings import Settings

from .conftest import Page, photo

PNG = photo("chelsea", "PNG")


def fetcher(**settings) -> ImageFetcher:
    return ImageFetcher(Settings(**settings))


def refused(fetch: ImageFetcher, url: str, **kwargs) -> ImageRefused:
    with pytest.raises(ImageRefused) as caught:
        fetch.fetch(url, **kwargs)
    return caught.value


def test_loopback_private_and_link_local_addresses_are_refused_before_connecting(photos):
    photos.pages["/cat.png"] = Page(PNG)
    fetch = fetcher()
    for url, kind in [
        (photos.url("/cat.png"), "loopback"),
        (photos.url("/cat.png", host="localhost"), "loopback"),
        (photos.url("/cat.png", host="[::1]"), "loopback"),
        (photos.url("/cat.png", host="[::ffff:127.0.0.1]"), "loopback"),
        (photos.url("/cat.png", host="0.0.0.0"), "private"),
        ("http://10.1.2.3/cat.png", "private"),
        ("http://192.168.0.1/cat.png", "private"),
        ("http://172.16.5.4:8080/cat.png", "private"),
        ("http://169.254.169.254/latest/meta-data/cat.png", "link-local"),
        ("http://[fe80::1]/cat.png", "link-local"),
        ("http://100.64.0.1/cat.png", "non-public"),
        ("http://[fc00::1]/cat.png", "private"),
        ("http://224.0.0.1/cat.png", "multicast"),
    ]:
        error = refused(fetch, url)
        assert error.field == "url" and error.status == 422
        assert "refused" in str(error) and f"{kind} address" in str(error), (url, str(error))
    assert photos.requests == []  # none of them was connected to

    for url, message in [("file:///etc/passwd", "http:// or https://"), ("ftp://example.org/cat.png", "http:// or https://"),
                         ("http://user:secret@127.0.0.1/cat.png", "user name or password"), ("http:///cat.png", "no host"),
                         ("http://[::1/cat.png", "not a valid URL"), ("http://no-such-host.invalid/cat.png", "does not resolve")]:
        error = refused(fetch, url)
        assert message in str(error) and "secret" not in str(error), (url, str(error))


def test_an_allowed_network_is_fetched_and_every_redirect_is_checked(photos):
    photos.pages["/cat.png"] = Page(PNG)
    photos.pages["/to-cat"] = Page(status=302, headers={"Location": "/cat.png"}, content_type="text/plain")
    photos.pages["/to-other-loopback"] = Page(status=301, content_type="text/plain",
                                              headers={"Location": f"http://127.0.0.2:{photos.port}/cat.png"})
    photos.pages["/to-metadata"] = Page(status=307, content_type="text/plain",
                                        headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    photos.pages["/to-private"] = Page(status=308, content_type="text/plain", headers={"Location": "http://10.0.0.1/x.png"})
    photos.pages["/loop"] = Page(status=302, content_type="text/plain", headers={"Location": "/loop"})
    fetch = fetcher(api_fetch_allow_networks="127.0.0.1/32")

    image = fetch.fetch(photos.url("/cat.png"))
    assert image.data == PNG and image.format == "png"
    assert fetch.fetch(photos.url("/to-cat")).data == PNG
    # every address a name resolves to counts: localhost is fetched only if all of its addresses are allowed
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", photos.port, type=socket.SOCK_STREAM)}
    if resolved == {"127.0.0.1"}:
        assert fetch.fetch(photos.url("/cat.png", host="localhost")).data == PNG
    else:
        other = sorted(resolved - {"127.0.0.1"})[0]
        assert f"localhost resolves to a loopback address ({other})" in str(refused(fetch, photos.url("/cat.png", host="localhost")))
    for path, where in [("/to-other-loopback", "127.0.0.2 is a loopback address"),
                        ("/to-metadata", "169.254.169.254 is a link-local address"),
                        ("/to-private", "10.0.0.1 is a private address")]:
        assert where in str(refused(fetch, photos.url(path)))
    assert "redirected more than 5 times" in str(refused(fetch, photos.url("/loop")))
    # the redirects were followed only as far as the first refused address
    assert photos.requests.count("/to-other-loopback") == 1 and "/x.png" not in photos.requests


def test_downloads_are_bounded_in_status_type_size_and_time(photos):
    photos.pages["/cat.png"] = Page(PNG)
    photos.pages["/page.png"] = Page(b"<html>hello</html>", "text/html")
    photos.pages["/fake.png"] = Page(b"not an image at all", "image/png")
    photos.pages["/big.png"] = Page(PNG)
    photos.pages["/big-unsized.png"] = Page(PNG, unsized=True)
    photos.pages["/slow.png"] = Page(PNG[:200], trickle=0.05)
    photos.pages["/gone.png"] = Page(b"gone", "text/plain", status=410)
    small = fetcher(api_fetch_allow_networks="127.0.0.0/8", api_fetch_max_bytes=len(PNG) - 1, api_fetch_timeout=2)

    assert "answered HTTP 404, not 200" in str(refused(small, photos.url("/missing.png")))
    assert "answered HTTP 410, not 200" in str(refused(small, photos.url("/gone.png")))
    wrong_type = refused(small, photos.url("/page.png"))
    assert wrong_type.status == 415 and "'text/html', not an image type" in str(wrong_type)
    fake = refused(small, photos.url("/fake.png"))
    assert fake.status == 415 and "is not a JPEG, PNG, BMP, TIFF or GIF image" in str(fake)
    for path in ("/big.png", "/big-unsized.png"):
        too_big = refused(small, photos.url(path))
        assert too_big.status == 413 and f"larger than {len(PNG) - 1} bytes" in str(too_big)
    slow = refused(small, photos.url("/slow.png"))
    assert "took longer than 2 s to download" in str(slow)
    # the compatible route's rule: the URL must name an image file
    assert "must name a file ending in .jpeg" in str(refused(small, photos.url("/cat.txt"), require_extension=True))
    assert fetcher(api_fetch_allow_networks="127.0.0.0/8").fetch(photos.url("/cat.png"), require_extension=True).data == PNG


def test_the_image_routes_refuse_what_the_fetcher_refuses(api, photos):
    photos.pages["/cat.png"] = Page(PNG)
    for route, params in [("/submit-image", {"url": photos.url("/cat.png")}),
                          ("/submit-image", {"url": "http://169.254.169.254/latest/meta-data/iam.png"})]:
        answer = api.get(route, params=params)
        assert answer.status_code == 422 and answer.json()["field"] == "url" and "refused" in answer.json()["message"]
    posted = api.post("/images", json={"url": "http://10.0.0.7/cat.png"})
    assert posted.status_code == 422 and "10.0.0.7 is a private address" in posted.json()["message"]
    assert photos.requests == []


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (8-bit RGB), with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class SlowHeaders:
    """A real server that answers a status line, then one byte of a header every 0.2 s for up to 60 s: each read
    of the client's returns well within any per-read timeout. It notes when the client hangs up.

    With tls, it answers a TLS client hello with the header of a 16 kB handshake record, then its bytes one at a
    time: the handshake itself trickles."""

    def __init__(self, tls: bool = False):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}/cat.png"
        self.stop = threading.Event()
        self.hung_up = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"\x16\x03\x03\x3f\xff" if self.tls else b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Slow: ")
                ends = time.monotonic() + 60
                while not self.stop.is_set() and time.monotonic() < ends:
                    conn.sendall(b"a")
                    time.sleep(0.2)
            except OSError:
                self.hung_up.set()  # the fetcher closed the connection under our feet: as it should

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture(params=["headers", "tls"])
def slow_headers(request):
    server = SlowHeaders(tls=request.param == "tls")
    yield server
    server.close()


def test_one_deadline_bounds_a_download_even_while_its_headers_trickle_in(slow_headers):
    # Given a server that sends its headers (or its TLS handshake) a byte at a time, and a 2 s deadline
    fetch = fetcher(api_fetch_allow_networks="127.0.0.1/32", api_fetch_timeout=2)
    outcome: list = []

    # When an image is fetched from it, on a thread of its own
    worker = threading.Thread(target=lambda: outcome.append(refused(fetch, slow_headers.url)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=20)  # the server would go on for 60 s: a fetch still there at 20 s ignored its deadline

    # Then the fetch gave up at its deadline, refused as too slow, having hung up on the server
    assert not worker.is_alive(), "the download was still held 20 s later, with a 2 s deadline"
    assert outcome and "took longer than 2 s to download (SPOTBOT_API_FETCH_TIMEOUT)" in str(outcome[0]), outcome
    assert outcome[0].field == "url"
    assert slow_headers.hung_up.wait(5), "the server never saw the fetcher hang up"
    print(f"\n{slow_headers.url.split(':')[0]}, trickling in: the fetch gave up after {time.monotonic() - started:.1f} s (deadline 2 s)")


def test_an_image_past_the_pixel_limit_is_refused_from_its_header_without_being_decoded(photos):
    # Given a PNG of a few hundred bytes whose header claims 50000 x 50000 pixels (7.5 GB once decoded)
    bomb = png_declaring(50_000, 50_000)
    assert len(bomb) < 200
    photos.pages["/bomb.png"] = Page(bomb)
    photos.pages["/cat.png"] = Page(PNG)
    photos.pages["/broken.png"] = Page(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    fetch = fetcher(api_fetch_allow_networks="127.0.0.1/32", api_max_pixels=10_000_000)

    # When it is fetched, then it is refused (413) naming its size and the setting; a photo still passes
    too_many = refused(fetch, photos.url("/bomb.png"))
    assert too_many.status == 413 and too_many.field == "url"
    assert "is 50000 x 50000 pixels, more than 10000000 (SPOTBOT_API_MAX_PIXELS); refused before decoding" in \
        str(too_many)
    assert fetch.fetch(photos.url("/cat.png")).format == "png"
    # and bytes with an image's signature but no readable header are no image
    broken = refused(fetch, photos.url("/broken.png"))
    assert broken.status == 415 and "not a readable PNG image" in str(broken)


def test_an_upload_past_the_pixel_limit_is_refused(api):
    # the upload route, at the setting's default (40 million pixels)
    answer = api.post("/images", data=png_declaring(50_000, 50_000), headers={"Content-Type": "image/png"})
    assert answer.status_code == 413 and answer.json()["field"] == "body", answer.text
    assert "50000 x 50000 pixels, more than 40000000" in answer.json()["message"]
