"""What every request meets before a body is read (issue 14, items 3 and 4): the token and body caps checked from
the headers alone, the Host header checked against the addresses served, no cross-site POST, no CORS.
Against the real `spotbot serve`, over real sockets."""

from __future__ import annotations

from pathlib import Path

import requests

from .conftest import PIECE, TOKEN, post_unread, start_server, stop_server

BODY = 50 * 2**20


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM: what it ever held, even if freed since)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def test_a_50_mb_body_without_a_token_is_refused_before_it_is_read(api):
    # Given the server's memory now and at its peak so far
    pid = api.process.pid
    before = memory_kib(pid)

    # When 50 MB are posted to a JSON route without a token, and with the token past the body cap
    refused, answer, sent = post_unread(api.url, "/bots", {"Content-Type": "application/json"}, BODY)
    too_large, answer_large, sent_large = post_unread(api.url, "/jobs", {
        "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}, BODY)

    # Then each is refused from its headers, long before the body could have been read, and memory did not grow
    after = memory_kib(pid)
    print(f"\n50 MB without a token: {sent} body bytes sent before the answer; with it: {sent_large}; "
          f"memory before {before}, after {after} (KiB)")
    assert refused == 401, answer[:300]
    assert too_large == 413 and b'"field":"body"' in answer_large, answer_large[:300]
    assert sent < BODY / 10 and sent_large < BODY / 10, (sent, sent_large)
    assert after["VmHWM"] - before["VmHWM"] < 10 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 10 * 1024, (before, after)
    assert api.get("/health", auth=False).status_code == 200


def test_a_body_sent_without_a_length_is_cut_at_its_cap(serve):
    api = serve(SPOTBOT_API_MAX_BODY_BYTES="65536")

    def pieces(count: int):
        for _ in range(count):  # chunked: no Content-Length to judge it by
            yield b"[" * PIECE

    answer = requests.post(api.url + "/bots", data=pieces(64), timeout=60,
                           headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["field"] == "body", answer.text
    assert "65536 bytes" in answer.json()["message"]
    unsigned = requests.post(api.url + "/bots", data=pieces(4), timeout=60, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401, unsigned.text
    # an image upload has its own, larger cap: a body past the JSON cap but under SPOTBOT_API_FETCH_MAX_BYTES is read
    upload = requests.post(api.url + "/images", data=b"\x89PNG" + b"x" * 100_000, timeout=60,
                           headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/png"})
    assert upload.status_code != 413 and upload.json()["status"] == upload.status_code, upload.text


def test_a_page_cannot_reach_the_api_by_dns_rebinding_or_post_to_it_cross_site(settings, store, tmp_path):
    # Given a server without a token, on loopback (SPOTBOT_API_ALLOW_NO_AUTH), that also answers to one more name
    api = start_server(settings, tmp_path / "open.log", token=None, SPOTBOT_API_ALLOW_NO_AUTH="true",
                       SPOTBOT_API_ALLOWED_HOSTS="spotbot.internal")
    try:
        port = api.url.rsplit(":", 1)[1]

        # When a page whose own name now resolves to 127.0.0.1 calls it, its Host header is that name: refused
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.attacker.example:{port}"):
            rebound = requests.get(api.url + "/bots", headers={"Host": host}, timeout=10)
            assert rebound.status_code == 421 and rebound.json()["field"] == "Host", (host, rebound.text)
            posted = requests.post(api.url + "/jobs/some-job/cancel", json={}, headers={"Host": host}, timeout=10)
            assert posted.status_code == 421, (host, posted.text)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"spotbot.internal:{port}", "[::1]"):
            assert requests.get(api.url + "/bots", headers={"Host": host}, timeout=10).status_code == 200, host

        # and the POSTs a page can send without asking first (a form, text/plain, no body at all) are refused
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                        {"Content-Type": "multipart/form-data; boundary=x"}, {}):
            for path in ("/jobs/some-job/cancel", "/jobs/some-job/close", "/jobs/some-job/retry", "/bots", "/jobs",
                         "/images"):
                answer = requests.post(api.url + path, data=b"{}" if headers else None, headers=headers, timeout=10)
                assert answer.status_code == 403, (path, headers, answer.text)
                assert answer.json()["field"] == "Content-Type"
        # while what a page cannot send cross-site without a preflight goes through: JSON, or the dashboard's header
        assert requests.post(api.url + "/jobs/some-job/cancel", json={}, timeout=10).status_code == 404
        assert requests.post(api.url + "/jobs/some-job/cancel", headers={"X-Spotbot-CSRF": "x"},
                             timeout=10).status_code == 404

        # and no answer grants a cross-origin read, preflight or not
        preflight = requests.options(api.url + "/jobs/some-job/cancel", timeout=10, headers={
            "Origin": "http://attacker.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-spotbot-csrf"})
        listed = requests.get(api.url + "/bots", headers={"Origin": "http://attacker.example"}, timeout=10)
        for answer in (preflight, listed):
            granted = {name.lower() for name in answer.headers if name.lower().startswith("access-control-")}
            assert granted == set(), (answer.status_code, answer.headers)
        assert preflight.status_code >= 400
    finally:
        stop_server(api)


def test_with_a_token_the_host_is_checked_too_and_a_session_without_its_header_changes_nothing(api):
    port = api.url.rsplit(":", 1)[1]
    rebound = api.get("/bots", headers={"Host": f"attacker.example:{port}"})
    assert rebound.status_code == 421 and rebound.json()["field"] == "Host"
    # a cookie a browser would send along cross-site, without the page's CSRF header: refused before the body is read
    session = requests.post(api.url + "/dashboard/session", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert session.status_code == 204
    cookies = session.cookies.get_dict()
    forged, answer, _ = post_unread(api.url, "/jobs/some-job/cancel", {
        "Content-Type": "application/json", "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}, 2 * PIECE)
    assert forged == 403 and b"X-Spotbot-CSRF" in answer, answer[:300]
