"""Serve a python: handler module over the SageMaker serving contract (GET /ping, POST /invocations).

The module may define the SageMaker inference handler functions model_fn(model_dir),
input_fn(body, content_type), predict_fn(data, model) and output_fn(prediction, accept);
missing ones default to: no model, JSON in, JSON out. Run as
`python -m framework.endpoints.serving --handler python:path/or.module --port 8080`; in an endpoint
image, as its ENTRYPOINT with the argument `serve` (what SageMaker and the docker backend run).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("spotbot.serving")


def load_reference(reference: str, *, kind: str = "handler") -> ModuleType:
    """Import a python:<file.py or module> reference."""
    target = reference.removeprefix("python:")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise FileNotFoundError(f"{kind} file {target!r} does not exist")
            sys.path.insert(0, str(path.parent.resolve()))
            spec = importlib.util.spec_from_file_location(f"spotbot_{kind}_{path.stem}", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(target)
    except (ImportError, FileNotFoundError, SyntaxError) as exc:
        raise ImportError(f"cannot load {kind} {reference!r}: {exc}") from exc


def default_input_fn(body: bytes, content_type: str) -> Any:
    if content_type.split(";")[0].strip() in ("application/json", "text/json", ""):
        return json.loads(body or b"null")
    return body


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    if isinstance(prediction, bytes):
        return prediction, "application/octet-stream"
    return json.dumps(prediction).encode(), "application/json"


class BadRequest(ValueError):
    """input_fn refused the request body: the caller's mistake (400), not worth retrying like a 5xx."""


class Handler:
    """The four handler functions of one module, with defaults filled in."""

    def __init__(self, module: ModuleType, model_dir: str):
        if not hasattr(module, "predict_fn"):
            raise ImportError(f"{module.__name__} defines no predict_fn(data, model)")
        self.input_fn = getattr(module, "input_fn", default_input_fn)
        self.predict_fn = module.predict_fn
        self.output_fn = getattr(module, "output_fn", default_output_fn)
        model_fn = getattr(module, "model_fn", None)
        self.model = model_fn(model_dir) if model_fn else None

    def __call__(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        try:
            data = self.input_fn(body, content_type)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise BadRequest(f"{type(exc).__name__}: {exc}") from exc
        prediction = self.predict_fn(data, self.model)
        result = self.output_fn(prediction, accept)
        if isinstance(result, tuple):
            payload, out_type = result
        else:
            payload, out_type = result, accept
        if isinstance(payload, str):
            payload = payload.encode()
        return payload, out_type or "application/octet-stream"


def make_server(handler: Handler, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Endpoint(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body leave in two writes: with Nagle's algorithm on, the body waits for the
        # client's (delayed) acknowledgement of the headers, tens of milliseconds per call
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._send(HTTPStatus.OK, b'{"status": "healthy"}')
            else:
                self._send(HTTPStatus.NOT_FOUND, b'{"error": "not found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/invocations":
                self._send(HTTPStatus.NOT_FOUND, b'{"error": "not found"}')
                return
            try:
                payload, out_type = handler(
                    body, self.headers.get("Content-Type", "application/json"), self.headers.get("Accept", "application/json")
                )
            except BadRequest as exc:
                self._send(HTTPStatus.BAD_REQUEST, json.dumps({"error": str(exc)}).encode())
                return
            except Exception as exc:  # the model's failure is the caller's answer, not the server's end
                log.error("invocation failed: %s", traceback.format_exc())
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
                return
            self._send(HTTPStatus.OK, payload, out_type)

    server = ThreadingHTTPServer((host, port), Endpoint)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["serve"],
                        help="serve: run as a SageMaker serving container (`docker run <image> serve`): listen on "
                             "0.0.0.0 and on $SAGEMAKER_BIND_TO_PORT (default 8080) unless --host/--port say otherwise")
    parser.add_argument("--handler", required=True, help="python:<file.py or module> with the handler functions")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host")
    parser.add_argument("--model-dir", default="/opt/ml/model")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        # SageMaker tells a container its port with SAGEMAKER_BIND_TO_PORT; on a host network (the docker
        # endpoint backend) SPOTBOT_SERVE_HOST keeps it on 127.0.0.1, where 0.0.0.0 would open it to the LAN
        port = args.port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or 8080)
        host = args.host or os.environ.get("SPOTBOT_SERVE_HOST") or "0.0.0.0"
    else:
        port, host = args.port or 8080, args.host or "127.0.0.1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("loading %s (model dir %s)", args.handler, args.model_dir)
    handler = Handler(load_reference(args.handler), args.model_dir)
    server = make_server(handler, port, host)
    log.info("serving %s on http://%s:%d", args.handler, host, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
