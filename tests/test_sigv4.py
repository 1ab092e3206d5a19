"""SigV4 (Amazon OpenSearch Service): the store signs every request with the boto3 session's
credentials. A local endpoint recomputes each signature with botocore's own signer, rejects a
mismatch with 403, and forwards the good ones to the real (embedded) server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import sigv4_check
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from framework.errors import StoreError
from framework.models import BotConfig
from framework.store import Store

ACCESS_KEY, SECRET_KEY, REGION = "AKIDSPOTBOTTEST", "the-right-secret", "eu-west-1"


def signature_ok(method: str, url: str, headers: dict, body: bytes) -> bool:
    return sigv4_check.signature_ok(method, url, headers, body, service="es", access_key=ACCESS_KEY,
                                    secret_key=SECRET_KEY, region=REGION)


@pytest.fixture
def signing_endpoint(settings):
    seen = {"ok": 0, "rejected": 0}
    upstream = settings.es_url

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _handle(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            url = f"http://{headers['host']}{self.path}"
            if not signature_ok(self.command, url, headers, body):
                seen["rejected"] += 1
                payload = b'{"message":"The request signature we calculated does not match the signature you provided."}'
                self.send_response(403)
            else:
                seen["ok"] += 1
                answer = requests.request(self.command, upstream + self.path, data=body, timeout=30,
                                          headers={"Content-Type": headers.get("content-type", "application/json")})
                payload = answer.content
                self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def signed_settings(settings, url, monkeypatch, secret):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return settings.model_copy(update={"es_url": url, "es_auth": "sigv4", "region": REGION})


def test_the_store_works_through_a_signature_checking_endpoint(settings, signing_endpoint, monkeypatch):
    url, seen = signing_endpoint
    store = Store.from_settings(signed_settings(settings, url, monkeypatch, SECRET_KEY))
    try:
        assert store.engine.name == "opensearch"
        config = BotConfig(name="signed", file_types=".txt", bot_image="python:task.py")
        stored, created = store.bots.register(config)
        assert created and stored.name == "signed"
        assert [b.name for b in store.bots.list()] == ["signed"]
        assert seen["ok"] >= 5 and seen["rejected"] == 0
    finally:
        store.drop()


def test_a_wrong_secret_is_rejected(settings, signing_endpoint, monkeypatch):
    url, seen = signing_endpoint
    with pytest.raises(StoreError, match="403"):
        Store.from_settings(signed_settings(settings, url, monkeypatch, "a-wrong-secret"))
    assert seen["rejected"] >= 1 and seen["ok"] == 0


def test_the_checker_itself_tells_good_from_bad():
    # a request signed by botocore with the right secret passes; one byte changed in the body fails
    request = AWSRequest(method="POST", url="http://127.0.0.1:9/x/_search", data=b'{"size":0}',
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "es", REGION).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = urlsplit(request.url).netloc
    assert signature_ok("POST", request.url, headers, b'{"size":0}')
    assert not signature_ok("POST", request.url, headers, b'{"size":1}')
