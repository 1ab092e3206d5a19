"""URL fetching: no SSRF (loopback, private, link-local refused, every address and redirect checked), and bounded
size, time and content type. Real downloads from a real HTTP server on 127.0.0.1; refused addresses are never
connected to, so nothing leaves the machine."""

from __future__ import annotations

import socket

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
