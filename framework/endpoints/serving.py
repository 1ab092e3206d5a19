"""Serve a python: handler module over the SageMaker serving contract (GET /ping, POST /invocations).

The module may define the SageMaker inference handler functions model_fn(model_dir),
input_fn(body, content_type), predict_fn(data, model) and output_fn(prediction, accept);
missing ones default to: no model, JSON in, JSON out.

Dynamic batching: a module that also (or instead of predict_fn) defines
predict_batch_fn(inputs, model) -> outputs gets the inputs of concurrent requests together, as
TorchServe and Ray Serve batch them: `inputs` is a list of what input_fn returned, one per request,
and `outputs` must hold one prediction per input, in the same order; each goes through output_fn
to its own caller. A batch holds up to SPOTBOT_MAX_BATCH_SIZE inputs and is sent once it is full
or SPOTBOT_MAX_BATCH_DELAY_MS after its first input arrived, one batch at a time (the next one
fills meanwhile). When predict_batch_fn raises, or returns a wrong number of outputs, every
request of that batch is answered 500; no caller ever gets another's answer. With
SPOTBOT_MAX_BATCH_SIZE=1 nothing is gathered: each request calls predict_fn (or
predict_batch_fn with its one input) in its own thread, as without batching. An answer made by
predict_batch_fn carries the size of its batch in the X-Spotbot-Batch-Size header. Run as
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
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import ConfigError
from ..settings import Settings

log = logging.getLogger("spotbot.serving")
BATCH_SIZE_HEADER = "X-Spotbot-Batch-Size"


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
            assert spec and spec.loader  # noqa: S101 -- narrows the type: spec_from_file_location gave a loader for an existing .py
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


class BatchFailed(RuntimeError):
    """predict_batch_fn raised or answered wrongly: every request of the batch gets this error (500)."""


class Pending:
    """One request's input waiting in a batch, and the prediction (or error) it gets back."""

    __slots__ = ("data", "arrived", "done", "prediction", "error", "batch_size")

    def __init__(self, data: Any):
        self.data = data
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.prediction: Any = None
        self.error: BaseException | None = None
        self.batch_size = 0


class Batcher:
    """Gathers the inputs of concurrent requests into calls of predict_batch_fn(inputs, model).

    One thread makes the calls, one at a time: a batch closes when it holds max_size inputs, or
    max_delay seconds after its first input arrived (inputs that queued while the previous call
    ran are late already, so they go at once). Each request thread waits for its own Pending.
    """

    def __init__(self, predict_batch: Callable[[list, Any], Any], model: Any, max_size: int, max_delay: float):
        self.predict_batch, self.model = predict_batch, model
        self.max_size, self.max_delay = max_size, max_delay
        self._queue: list[Pending] = []
        self._ready = threading.Condition()
        threading.Thread(target=self._run, name="spotbot-batcher", daemon=True).start()

    def predict(self, data: Any) -> tuple[Any, int]:
        """The prediction for one input, made together with whatever else arrives meanwhile, and the size of that batch."""
        pending = Pending(data)
        with self._ready:
            self._queue.append(pending)
            self._ready.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.prediction, pending.batch_size

    def _next_batch(self) -> list[Pending]:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            deadline = self._queue[0].arrived + self.max_delay
            while len(self._queue) < self.max_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            batch, self._queue = self._queue[:self.max_size], self._queue[self.max_size:]
            return batch

    def _run(self) -> None:
        while True:
            self._call(self._next_batch())

    def _call(self, batch: list[Pending]) -> None:
        try:
            predictions = list(self.predict_batch([pending.data for pending in batch], self.model))
            if len(predictions) != len(batch):
                raise BatchFailed(f"predict_batch_fn returned {len(predictions)} predictions for {len(batch)} "
                                  "inputs; it must return one per input, in order")
        # the batch's failure is each of its callers' answer, never the batcher's end (a SystemExit included:
        # the thread must live on, or every later request would wait forever)
        except BaseException as exc:  # noqa: BLE001
            log.error("a batch of %d failed: %s", len(batch), traceback.format_exc())
            message = str(exc) if isinstance(exc, BatchFailed) else \
                f"predict_batch_fn failed on a batch of {len(batch)}: {type(exc).__name__}: {exc}"
            for pending in batch:
                pending.error = BatchFailed(message)  # one each: they are raised in as many threads
                pending.done.set()
            return
        for pending, prediction in zip(batch, predictions):
            pending.prediction, pending.batch_size = prediction, len(batch)
            pending.done.set()


class Handler:
    """The handler functions of one module, with defaults filled in."""

    def __init__(self, module: ModuleType, model_dir: str, *, max_batch_size: int = 1, max_batch_delay_ms: float = 0.0):
        predict_batch = getattr(module, "predict_batch_fn", None)
        if not hasattr(module, "predict_fn") and predict_batch is None:
            raise ImportError(f"{module.__name__} defines no predict_fn(data, model) nor predict_batch_fn(inputs, model)")
        self.input_fn = getattr(module, "input_fn", default_input_fn)
        self.output_fn = getattr(module, "output_fn", default_output_fn)
        model_fn = getattr(module, "model_fn", None)
        self.model = model_fn(model_dir) if model_fn else None
        self.batcher: Batcher | None = None
        if predict_batch is not None and max_batch_size > 1:
            self.batcher = Batcher(predict_batch, self.model, max_batch_size, max_batch_delay_ms / 1000)
            self.predict = self.batcher.predict
        elif hasattr(module, "predict_fn"):
            self.predict = lambda data: (module.predict_fn(data, self.model), 0)
        else:
            self.predict = lambda data: (self._one(predict_batch, data), 1)

    def _one(self, predict_batch: Callable[[list, Any], Any], data: Any) -> Any:
        predictions = list(predict_batch([data], self.model))
        if len(predictions) != 1:
            raise BatchFailed(f"predict_batch_fn returned {len(predictions)} predictions for 1 input")
        return predictions[0]

    def __call__(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str, int]:
        """The answer to one request: its body, Content-Type, and the size of the batch it was predicted in
        (0: by predict_fn, not batched)."""
        try:
            data = self.input_fn(body, content_type)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise BadRequest(f"{type(exc).__name__}: {exc}") from exc
        prediction, batch_size = self.predict(data)
        result = self.output_fn(prediction, accept)
        if isinstance(result, tuple):
            payload, out_type = result
        else:
            payload, out_type = result, accept
        if isinstance(payload, str):
            payload = payload.encode()
        return payload, out_type or "application/octet-stream", batch_size


def batching_environment(settings: Settings) -> dict[str, str]:
    """The dynamic-batching settings as the environment of an endpoint process or container."""
    return {"SPOTBOT_MAX_BATCH_SIZE": str(settings.max_batch_size),
            "SPOTBOT_MAX_BATCH_DELAY_MS": f"{settings.max_batch_delay_ms:g}"}


def make_server(handler: Handler, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Endpoint(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body leave in two writes: with Nagle's algorithm on, the body waits for the
        # client's (delayed) acknowledgement of the headers, tens of milliseconds per call
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

        def _send(self, status: int, body: bytes, content_type: str = "application/json", batch_size: int = 0) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if batch_size:  # how many requests shared the model call: to see batching at work from outside
                self.send_header(BATCH_SIZE_HEADER, str(batch_size))
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
                payload, out_type, batch_size = handler(
                    body, self.headers.get("Content-Type", "application/json"), self.headers.get("Accept", "application/json")
                )
            except BadRequest as exc:
                self._send(HTTPStatus.BAD_REQUEST, json.dumps({"error": str(exc)}).encode())
                return
            except Exception as exc:  # the model's failure is the caller's answer, not the server's end
                log.error("invocation failed: %s", traceback.format_exc())
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
                return
            self._send(HTTPStatus.OK, payload, out_type, batch_size)

    class Server(ThreadingHTTPServer):
        # socketserver's default backlog of 5 resets connections when tens of workers' threads
        # connect at once (measured: 48 callers at once got "connection reset by peer")
        request_queue_size = 1024
        daemon_threads = True

    server = Server((host, port), Endpoint)
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
    parser.add_argument("--max-batch-size", type=int,
                        help="dynamic batching: inputs per predict_batch_fn call (default: $SPOTBOT_MAX_BATCH_SIZE)")
    parser.add_argument("--max-batch-delay-ms", type=float,
                        help="dynamic batching: how long a batch may wait to fill (default: $SPOTBOT_MAX_BATCH_DELAY_MS)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(max_batch_size=args.max_batch_size, max_batch_delay_ms=args.max_batch_delay_ms)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.mode == "serve":
        # SageMaker tells a container its port with SAGEMAKER_BIND_TO_PORT; on a host network (the docker
        # endpoint backend) SPOTBOT_SERVE_HOST keeps it on 127.0.0.1, where 0.0.0.0 would open it to the LAN
        port = args.port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or 8080)
        host = args.host or os.environ.get("SPOTBOT_SERVE_HOST") or "0.0.0.0"  # noqa: S104 -- SageMaker's contract: the container answers on every interface; on a host network SPOTBOT_SERVE_HOST=127.0.0.1
    else:
        port, host = args.port or 8080, args.host or "127.0.0.1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("loading %s (model dir %s)", args.handler, args.model_dir)
    handler = Handler(load_reference(args.handler), args.model_dir, max_batch_size=settings.max_batch_size,
                      max_batch_delay_ms=settings.max_batch_delay_ms)
    if handler.batcher is not None:
        log.info("dynamic batching: up to %d inputs per predict_batch_fn call, waiting at most %g ms",
                 settings.max_batch_size, settings.max_batch_delay_ms)
    server = make_server(handler, port, host)
    log.info("serving %s on http://%s:%d", args.handler, host, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
