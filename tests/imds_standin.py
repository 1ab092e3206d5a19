"""A stand-in for the two routes of the EC2 instance metadata service (IMDSv2) a worker uses, on 127.0.0.1.

The real one answers only on an EC2 instance. This one keeps its rules: a session token from
`PUT /latest/api/token` (which must say its TTL), every read carrying a token it gave out (401
otherwise), `GET /latest/meta-data/spot/instance-action` answering 404 until the test posts a
notice, then 200 with its JSON. It records what it was asked, so a test can check the token use.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class InstanceMetadata:
    def __init__(self):
        self.tokens: set[str] = set()
        self.notice: dict | None = None
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: str = "") -> None:
                data = body.encode()
                with standin._lock:
                    standin.requests.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/latest/api/token":
                    return self._answer(404)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._answer(400)
                token = secrets.token_urlsafe(24)
                with standin._lock:
                    standin.tokens.add(token)
                self._answer(200, token)

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token", "") not in standin.tokens:
                    return self._answer(401)
                if self.path != "/latest/meta-data/spot/instance-action":
                    return self._answer(404)
                with standin._lock:
                    notice = standin.notice
                if notice is None:
                    return self._answer(404)
                self._answer(200, json.dumps(notice))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "InstanceMetadata":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def post_notice(self, action: str = "terminate", time: str = "2026-12-06T12:00:00Z") -> None:
        """EC2 decided to take the instance back: the notice route answers 200 from now on."""
        with self._lock:
            self.notice = {"action": action, "time": time}

    def asked(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))

    def refused(self) -> int:
        """Reads answered 401 (no valid token)."""
        with self._lock:
            return sum(1 for m, _, status in self.requests if m == "GET" and status == 401)
