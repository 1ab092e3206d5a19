"""The SDK a task.py uses, and the worker that runs it: `python -m framework.bot path/to/task.py`.

A task.py defines only `main_task(file_name)`; inside it, `from framework import bot` gives
read_input, invoke_endpoint and write_output. The worker claims chunks of the job's files,
calls main_task for each, writes the returned value to S3 and the status to Elasticsearch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel, Field, ValidationError

from .endpoints import EndpointClient
from .endpoints.serving import load_reference
from .errors import ConfigError, SpotbotError, TaskError
from .models import FileStatus, Job, JobStatus, WorkerState, now_ms, split_list
from .retry import retrying
from .settings import Settings
from .storage import Storage
from .store import Store
from .store.chunks import Lease
from .store.files import Claim

log = logging.getLogger("spotbot.worker")
OUTPUT_IN_INDEX_LIMIT = 32 * 1024


class WorkerEnv(BaseModel):
    """The seed's worker contract: the environment variables every bot worker receives."""

    region_name: str = "us-east-1"
    endpoint_name: str = ""
    output_s3_bucket: str
    output_s3_prefix: str = ""
    es_host: str
    es_port: int
    es_protocol: str = "http"
    es_index: str
    job_id: str
    batch_id: int = 0
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "WorkerEnv":
        values = {name: environ[name] for name in cls.model_fields if name in environ and environ[name] != ""}
        # a child of an AWS Batch array job learns its batch from its index and its id from Batch's job id
        if "batch_id" not in values and environ.get("AWS_BATCH_JOB_ARRAY_INDEX"):
            values["batch_id"] = environ["AWS_BATCH_JOB_ARRAY_INDEX"]
        if environ.get("SPOTBOT_WORKER_ID"):
            values["worker_id"] = environ["SPOTBOT_WORKER_ID"]
        elif environ.get("AWS_BATCH_JOB_ID"):
            values["worker_id"] = environ["AWS_BATCH_JOB_ID"]
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"worker environment: {first['msg']}", field=str(first["loc"][0])) from None

    def settings(self, environ: Mapping[str, str]) -> Settings:
        """Settings from SPOTBOT_*, with the seed's es_* variables where SPOTBOT_ES_URL is unset."""
        overrides: dict[str, Any] = {"region": self.region_name}
        if not environ.get("SPOTBOT_ES_URL"):
            overrides["es_url"] = f"{self.es_protocol}://{self.es_host}:{self.es_port}"
        if not environ.get("SPOTBOT_INDEX_PREFIX") and self.es_index.endswith("files"):
            overrides["index_prefix"] = self.es_index[: -len("files")]
        return Settings.from_env(environ, **overrides)


@dataclass
class Context:
    """What the SDK functions act on while a worker runs a task."""

    storage: Storage
    endpoints: EndpointClient
    input_bucket: str
    output_bucket: str
    output_prefix: str
    endpoint_names: list[str]


_context: Context | None = None


def _current() -> Context:
    if _context is None:
        raise RuntimeError("the spotbot SDK is only usable inside a worker (python -m framework.bot task.py)")
    return _context


def read_input(file_name: str) -> bytes:
    """The bytes of an input file (its S3 key) of the running job."""
    ctx = _current()
    return ctx.storage.read(ctx.input_bucket, file_name)


def invoke_endpoint(body: bytes | str | dict | list, content_type: str = "application/json", endpoint_name: str | None = None,
                    accept: str = "application/json") -> bytes:
    """Call the bot's model endpoint (its first one unless named) and return the response body."""
    ctx = _current()
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    name = endpoint_name or (ctx.endpoint_names[0] if ctx.endpoint_names else None)
    if not name:
        raise ConfigError("this bot has no endpoint (endpoint_name is empty)", field="endpoint_name")
    return ctx.endpoints.invoke(name, body, content_type, accept)


def write_output(name: str, data: bytes | str, content_type: str = "application/octet-stream") -> str:
    """Write an extra output object under the job's output prefix; returns its s3:// URI."""
    ctx = _current()
    if isinstance(data, str):
        data = data.encode()
    key = f"{ctx.output_prefix.rstrip('/')}/{name}" if ctx.output_prefix else name
    return ctx.storage.write(ctx.output_bucket, key, data, content_type)


def serialize(result: Any) -> tuple[bytes, str, list[str], Any, float | None]:
    """A main_task result as (S3 body, content type, labels, what the file document keeps, confidence)."""
    if isinstance(result, dict):
        try:
            body = json.dumps(result, ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"main_task returned a dict that is not JSON-serializable: {exc}") from None
        labels = result.get("labels") or []
        if not isinstance(labels, list):
            labels = [labels]
        names = [str(item.get("label", "")) if isinstance(item, dict) else str(item) for item in labels]
        kept = result if len(body) <= OUTPUT_IN_INDEX_LIMIT else None
        return body, "application/json", [n for n in names if n], kept, confidence_of(result, labels)
    if isinstance(result, str):
        body = result.encode()
        return body, "text/plain; charset=utf-8", [], {"text": result} if len(body) <= OUTPUT_IN_INDEX_LIMIT else None, None
    if isinstance(result, (bytes, bytearray)):
        return bytes(result), "application/octet-stream", [], None, None
    if result is None:
        raise TypeError("main_task returned None; return a dict, str or bytes")
    raise TypeError(f"main_task returned a {type(result).__name__}; return a dict, str or bytes")


def confidence_of(result: dict, labels: list) -> float | None:
    """How sure the task is of its first label: its `confidence`, else that label's `score`, else `scores[0]`.

    Indexed on the file document (as seed 001 keeps a ConfidenceScore per prediction), so it can be
    averaged per day and label; anything that is not a finite number is left out.
    """
    value = result.get("confidence")
    if value is None and labels and isinstance(labels[0], dict):
        value = labels[0].get("score")
    if value is None and isinstance(result.get("scores"), list) and result["scores"]:
        value = result["scores"][0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class Heartbeat:
    """Extends a chunk's lease in the background; `lost` is set when another worker took it."""

    def __init__(self, store: Store, lease: Lease, lease_seconds: float):
        self.store, self.lease, self.lease_seconds = store, lease, lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                if not self.store.chunks.extend(self.lease, self.lease_seconds):
                    self.lost.set()
                    return
            except SpotbotError as exc:
                log.warning("could not extend the lease of %s: %s", self.lease.chunk.chunk_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """Claims chunks of one job and works their files until the job has no work left."""

    def __init__(self, settings: Settings, env: WorkerEnv, main_task: Callable[[str], Any], *, store: Store | None = None,
                 storage: Storage | None = None):
        self.settings, self.env, self.main_task = settings, env, main_task
        self.store = store or Store.from_settings(settings, init=False)
        self.storage = storage or Storage(settings)
        self.job = self.store.jobs.get(env.job_id)
        self.input_bucket = self.job.input_uri[len("s3://"):].split("/", 1)[0]
        self.done = 0
        self._checked_at = time.monotonic()
        self._job_status = self.job.status

    def run(self) -> int:
        """Work until every chunk of the job is done (or the job ended); returns files worked."""
        global _context
        specs = self._store(lambda: self.store.bots.get(self.job.bot).endpoints(), "reading the bot")
        _context = Context(self.storage, EndpointClient(self.settings, self.store, specs), self.input_bucket,
                           self.env.output_s3_bucket, self.env.output_s3_prefix, split_list(self.env.endpoint_name))
        self._record_state(WorkerState.RUNNING)
        job_id = self.env.job_id
        own_batch: int | None = self.env.batch_id
        idle = 0
        try:
            while not self._ended():
                lease = self._store(lambda: self.store.chunks.claim(
                    job_id, self.env.worker_id, own_batch, self.settings.lease_seconds), "claiming a chunk")
                if lease:
                    if lease.chunk.batch_id != own_batch:
                        own_batch = None  # our own batch is worked out: from now on only steal
                    self.work_chunk(lease)
                    idle = 0
                    continue
                own_batch = None
                idle += 1
                if self._store(lambda: self.store.chunks.unfinished(job_id), "counting chunks") == 0:
                    job = self._store(lambda: self.store.jobs.finalize(job_id), "finalizing the job")
                    if job.status.terminal:
                        break
                    # a long-running job with nothing to do: look for new files every poll interval
                    self._job_status = job.status
                    time.sleep(self.settings.poll_seconds)
                    continue
                # the rest is held by others: look again, less and less often, to take over expired leases
                time.sleep(min(self.settings.poll_seconds * 2 ** min(idle, 6), max(self.settings.poll_seconds,
                                                                                    self.settings.lease_seconds / 4)))
        finally:
            _context = None
        self._record_state(WorkerState.EXITED, exit_code=0)
        return self.done

    def _ended(self) -> bool:
        """Whether the job ended (finished elsewhere, or cancelled); read at most once per flush interval."""
        self._cancelled()
        return self._job_status.terminal

    def _store(self, call: Callable[[], Any], what: str) -> Any:
        """A store operation, retried while Elasticsearch is unavailable (restarting, overloaded)."""
        return retrying(call, seconds=self.settings.retry_seconds, what=what)

    def work_chunk(self, lease: Lease) -> None:
        heartbeat = Heartbeat(self.store, lease, self.settings.lease_seconds)
        try:
            claims = self._store(lambda: self.store.files.open_in(lease.chunk), "reading files")
            if any(c.task.status == FileStatus.PROCESSING for c in claims):
                self._work_carefully(claims, heartbeat)
            else:
                held = self._store(lambda: self.store.files.begin(claims, self.env.worker_id), "marking files")
                self._work_batched(held, heartbeat)
        finally:
            heartbeat.stop()
        if not heartbeat.lost.is_set():
            self._store(lambda: self.store.chunks.finish(lease), "finishing a chunk")

    def _work_batched(self, claims: list[Claim], heartbeat: Heartbeat) -> None:
        pending: list[Claim] = []
        flushed = time.monotonic()
        for index, claim in enumerate(claims):
            if heartbeat.lost.is_set():
                return
            if time.monotonic() - flushed >= self.settings.flush_seconds:
                self._flush(pending)
                pending, flushed = [], time.monotonic()
                if self._cancelled():
                    self._cancel(claims[index:])
                    return
            self._work_file(claim)
            pending.append(claim)
            if len(pending) >= self.settings.flush_files:
                self._flush(pending)
                pending, flushed = [], time.monotonic()
        self._flush(pending)

    def _flush(self, claims: list[Claim]) -> None:
        written = self._store(lambda: self.store.files.write(claims), "writing results")
        if len(written) < len(claims):
            log.warning("%d result(s) dropped: another worker has taken those files", len(claims) - len(written))

    def _work_carefully(self, claims: list[Claim], heartbeat: Heartbeat) -> None:
        """After a worker died on this chunk: one file at a time, marked in flight, unknown suspects first."""
        claims.sort(key=lambda c: (c.task.in_flight, c.task.file_key))
        for index, claim in enumerate(claims):
            if heartbeat.lost.is_set():
                return
            if self._cancelled():
                self._cancel(claims[index:])
                return
            held = self._store(lambda: self.store.files.begin_one(claim, self.env.worker_id, self.settings.max_attempts),
                               "marking a file in flight")
            if held is not None:
                self._work_file(held)
                self._flush([held])

    def _cancelled(self) -> bool:
        """Whether the job was cancelled (read at most once per flush interval)."""
        now = time.monotonic()
        if now - self._checked_at >= self.settings.flush_seconds:
            self._checked_at = now
            self._job_status = self._store(lambda: self.store.jobs.get(self.env.job_id), "reading the job").status
        return self._job_status == JobStatus.CANCELLED

    def _cancel(self, claims: list[Claim]) -> None:
        for claim in claims:
            self.store.files.cancel(claim)
        self._flush(claims)

    def _work_file(self, claim: Claim) -> None:
        """Run main_task, retrying its exceptions until max_attempts, and record the outcome on the claim."""
        key = claim.task.file_key
        attempt = claim.task.attempts
        while True:
            try:
                body, content_type, labels, kept, confidence = serialize(self.main_task(key))
                uri = self.storage.write(self.env.output_s3_bucket, self._output_key(key), body, content_type)
            except Exception as exc:  # the task's failure is the file's, never the worker's
                message = f"{type(exc).__name__}: {exc}"
                log.warning("%s attempt %d failed: %s", key, attempt, message)
                log.debug("%s", traceback.format_exc())
                if attempt >= self.settings.max_attempts:
                    self.store.files.fail(claim, message, attempts=attempt)
                    break
                attempt += 1
                time.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            self.store.files.complete(claim, output_uri=uri, labels=labels, output=kept, attempts=attempt,
                                      confidence=confidence)
            break
        self.done += 1

    def _output_key(self, key: str) -> str:
        prefix = self.env.output_s3_prefix.rstrip("/")
        return f"{prefix}/{key}.json" if prefix else f"{key}.json"

    def _record_state(self, state: WorkerState, exit_code: int | None = None) -> None:
        worker_id = self.env.worker_id

        def mark(job: Job) -> Job | None:
            worker = job.workers.get(worker_id)
            if worker is None:
                return None  # started by hand, not by a launcher: nothing to record
            worker.state, worker.exit_code, worker.pid = state, exit_code, os.getpid()
            if state != WorkerState.RUNNING:
                worker.ended_at = now_ms()
            return job

        try:
            self.store.jobs.change(self.env.job_id, mark)
        except SpotbotError as exc:
            log.warning("could not record worker state %s: %s", state.value, exc)


def load_task(reference: str) -> Callable[[str], Any]:
    try:
        module = load_reference(reference, kind="task")
    except ImportError as exc:
        raise TaskError(str(exc), file=reference) from None
    main_task = getattr(module, "main_task", None)
    if not callable(main_task):
        raise TaskError(f"{reference} defines no main_task(file_name) function", file=reference)
    return main_task


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m framework.bot path/to/task.py\n\n" + (__doc__ or ""))
        print("Environment: " + ", ".join(WorkerEnv.model_fields) + ", plus SPOTBOT_* settings.")
        return 0 if argv else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("elastic_transport", "opensearch"):  # a line per request would drown the worker's own
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        main_task = load_task(argv[0])
        env = WorkerEnv.from_environ(os.environ)
        worker = Worker(env.settings(os.environ), env, main_task)
        done = worker.run()
    except SpotbotError as exc:
        log.error("%s", exc)
        return getattr(exc, "exit_code", 1)
    log.info("worker %s finished: %d file(s) worked", env.worker_id, done)
    return 0


if __name__ == "__main__":
    # run inside the importable module, so a task's `from framework import bot` sees this worker's context
    from framework import bot as _module

    sys.exit(_module.main())
