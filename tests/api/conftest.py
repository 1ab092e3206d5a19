"""The API under test is the real `spotbot serve` process on a free port, over the test's real servers;
images come from a real HTTP server on 127.0.0.1 that each test fills with what it needs."""

from __future__ import annotations

import http.server
import io
import json
import secrets
import select
import socket
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import requests
from conftest import BOTS, ROOT, SPOTBOT, cli_env, wait_for  # noqa: F401 (wait_for is shared with the tests)

from framework.endpoints.process import free_port
from framework.scheduler import Scheduler

TOKEN = "test-token-" + secrets.token_urlsafe(16)


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen
    log: Path
    token: str = TOKEN

    def call(self, method: str, path: str, *, auth: bool = True, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.call("POST", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(settings, log: Path, *, token: str | None = TOKEN, **env: str) -> ApiServer:
    port = free_port()
    # python: references registered through the API resolve under this folder (bot_config gives them relative to it)
    environment = cli_env(settings, **{"SPOTBOT_API_BOTS_DIR": str(ROOT), **env})
    if token is not None:
        environment["SPOTBOT_API_TOKEN"] = token
    with open(log, "ab") as out:
        process = subprocess.Popen([SPOTBOT, "serve", "--port", str(port)], env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    server = ApiServer(f"http://127.0.0.1:{port}", process, log, token or "")

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"spotbot serve exited {process.returncode}:\n{server.output()}")
        try:
            return requests.get(server.url + "/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(answers, 60, "spotbot serve to answer /health")
    return server


def stop_server(server: ApiServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture
def serve(settings, store, storage, bucket, tmp_path) -> Callable[..., ApiServer]:
    """Start `spotbot serve` with extra SPOTBOT_* (or other) variables; every server and its jobs end with the test.

    Its images go to the test's own bucket (s3://<bucket>/api/images/), not to the shared default one.
    """
    servers: list[ApiServer] = []

    def start(**env: str) -> ApiServer:
        env.setdefault("SPOTBOT_API_IMAGES_URI", f"s3://{bucket}/api/")
        server = start_server(settings, tmp_path / f"serve-{len(servers)}.log", **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)
    # the jobs the servers opened (the image job takes files until closed): their workers leave once they end
    scheduler = Scheduler(settings, store, storage)
    for job in store.jobs.list():
        if not job.status.terminal:
            scheduler.cancel(job.job_id, wait_seconds=10)


@pytest.fixture
def api(serve) -> ApiServer:
    return serve()


def bot_config(name: str, **changes) -> dict:
    """A shipped or test bot's bot_config.json with its python: files relative to the repository (the servers'
    SPOTBOT_API_BOTS_DIR)."""
    folder = ROOT / "bots" / name if (ROOT / "bots" / name).is_dir() else BOTS / name
    config = json.loads((folder / "bot_config.json").read_text())
    for key in ("bot_image", "endpoint_ecr_image_path"):
        if config.get(key, "").startswith("python:"):
            config[key] = f"python:{(folder / config[key][len('python:'):]).relative_to(ROOT)}"
    config.update(changes)
    return config


def photo(name: str, fmt: str) -> bytes:
    """One of scikit-image's photos (chelsea is a cat, coffee a cup of coffee) in an image format."""
    import skimage.data
    from PIL import Image

    data = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).save(data, fmt)
    return data.getvalue()


@dataclass
class Page:
    body: bytes = b""
    content_type: str = "image/png"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds between single bytes: a slow server
    unsized: bool = False  # no Content-Length: the body ends when the connection closes


class PhotoServer:
    """An HTTP server on 127.0.0.1 answering what a test puts in `pages`; it counts the requests it got."""

    def __init__(self):
        self.pages: dict[str, Page] = {}
        self.requests: list[str] = []
        pages, requests_seen = self.pages, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (the standard library's name)
                requests_seen.append(self.path)
                page = pages.get(self.path.split("?")[0], Page(b"no such page", "text/plain", 404))
                self.send_response(page.status)
                self.send_header("Content-Type", page.content_type)
                for name, value in page.headers.items():
                    self.send_header(name, value)
                if page.unsized or page.trickle:
                    self.send_header("Connection", "close")
                else:
                    self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                try:
                    if page.trickle:
                        for i in range(len(page.body)):
                            self.wfile.write(page.body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(page.trickle)
                    else:
                        self.wfile.write(page.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the API gave up on us, as it should
                if page.unsized or page.trickle:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that hangs up early (the API refusing a download) is no error of ours

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def photos() -> PhotoServer:
    server = PhotoServer()
    yield server
    server.close()


PIECE = 64 * 1024


def post_unread(url: str, path: str, headers: dict[str, str], size: int, *, method: str = "POST") -> tuple[int, bytes, int]:
    """Send a request with a body of size bytes over a raw socket, a piece at a time, stopping as soon as the server
    answers; returns (the answer's status, the answer, how many body bytes were sent before it came)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {size}",
                *(f"{name}: {value}" for name, value in headers.items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        sent, piece, deadline = 0, b"x" * PIECE, time.monotonic() + 60
        while sent < size and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(piece[:size - sent])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        answer = b""
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer, sent
