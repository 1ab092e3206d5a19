"""A fault injector in front of a real Elasticsearch (or noida-db, or OpenSearch) for the tests.

Every request is passed to the real server unchanged, except bulk requests while `refuse_every`
is set: of those, every n-th item is held back from the server and answered 429 (as a node
with a full write queue answers), so the rest is really written and the refused items really
are not. Nothing here imitates the server: it only decides which items the server never sees.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.refuse_every = 0  # 0: pass everything; n: refuse every n-th bulk item
        self.refuse_bulks = 0  # how many more bulk requests to refuse items of
        self.refused = 0  # items refused so far
        self.bulks = 0  # bulk requests seen
        self._headers: list = [("Content-Type", "application/json")]  # of the server's last answer (its product header)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                path = self.path.split("?")[0]
                if self.command in ("POST", "PUT") and path.endswith("/_bulk"):
                    status, out_headers, out = proxy._bulk(self.command, self.path, headers, body)
                else:
                    status, out_headers, out = proxy._forward(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in out_headers:
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def refuse(self, every: int, bulks: int) -> None:
        """Refuse every n-th item of the next `bulks` bulk requests with a 429."""
        with self._lock:
            self.refuse_every, self.refuse_bulks = every, bulks

    def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() in ("content-type", "x-elastic-product")]
            if headers:
                self._headers = headers
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _bulk(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, list, bytes]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items: list[tuple[bytes, bytes | None]] = []
        position = 0
        while position < len(lines):
            action = lines[position]
            op = next(iter(json.loads(action)))
            source = lines[position + 1] if op != "delete" else None
            items.append((action, source))
            position += 2 if source is not None else 1
        with self._lock:
            self.bulks += 1
            every = self.refuse_every if self.refuse_bulks > 0 else 0
            if every:
                self.refuse_bulks -= 1
        refused = {i for i in range(len(items)) if every and i % every == every - 1}
        kept = [item for i, item in enumerate(items) if i not in refused]
        answers: list[dict] = []
        if kept:
            forwarded = b"\n".join(line for action, source in kept for line in (action, source) if line is not None) + b"\n"
            status, out_headers, raw = self._forward(method, path, headers, forwarded)
            if status != 200:
                return status, out_headers, raw
            answers = json.loads(raw)["items"]
        merged, upstream = [], iter(answers)
        for i, (action, _) in enumerate(items):
            if i in refused:
                op, meta = next(iter(json.loads(action).items()))
                merged.append({op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 429,
                                    "error": {"type": "es_rejected_execution_exception",
                                              "reason": "rejected by the test's fault proxy (write queue full)"}}})
            else:
                merged.append(next(upstream))
        with self._lock:
            self.refused += len(refused)
        result = {"took": 1, "errors": bool(refused) or any(next(iter(a.values())).get("error") for a in answers),
                  "items": merged}
        return 200, self._headers, json.dumps(result).encode()
