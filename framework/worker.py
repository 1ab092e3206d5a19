"""The worker: `python -m framework.bot path/to/task.py` works the files of one job, many at once.

One thread decides; a pool of SPOTBOT_CONCURRENCY threads runs the task. The deciding thread:
- claims a chunk (a lease), of its own batch first, then steals; it claims the next chunk
  before the one it works drains, so the pool never runs dry while work is left;
- reads the chunk's files by id and starts them on the pool, as many as the concurrency and
  SPOTBOT_MAX_INFLIGHT_BYTES (the input sizes the scan recorded) allow, one per main_task call
  or up to SPOTBOT_TASK_BATCH_SIZE per main_batch call;
- stages each outcome with the store's verbs, and writes a chunk's results and counts in one
  bulk request every SPOTBOT_FLUSH_FILES results or SPOTBOT_FLUSH_SECONDS; a chunk whose files
  are all finished is marked DONE in that same request;
- checks the job every SPOTBOT_FLUSH_SECONDS: once it is cancelled, files not begun end
  CANCELLED and the ones in flight finish (nothing is left half-written).
A heartbeat thread extends the leases it holds.

After a worker dies, nobody knows which of its files killed it: a chunk taken over from a
lease that ran out (`suspect`) is worked carefully, one file at a time with nothing else in
flight, each marked in flight before it runs (FileStore.begin_one), so a poison file ends
ERROR after max_attempts and its neighbours are not charged for it.

SIGTERM (docker stop, AWS Batch, a Spot interruption) stops the worker gracefully: it claims
nothing more, releases at once the chunks it holds with nothing in flight, lets the files in
flight finish for up to SPOTBOT_STOP_GRACE_SECONDS, gives back the rest unworked and uncharged,
and releases their chunks in the same request as their results, for other workers to take at
once (an idle worker looks for work at least every IDLE_CLAIM_POLLS poll intervals). On AWS
(SPOTBOT_SPOT_NOTICE) a Spot interruption notice of the instance metadata service stops it the
same way, two minutes before the instance goes (framework/spot.py). A worker stopped so while
its job runs is recorded `interrupted` on the job.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Mapping

from pydantic import BaseModel, Field, ValidationError

from . import bot, spot
from .endpoints import EndpointClient
from .endpoints.serving import load_reference
from .errors import ConfigError, ObjectChanged, SpotbotError, TaskError
from .models import ChunkStatus, FileStatus, JobStatus, WorkerState, split_list
from .retry import retrying
from .settings import Settings
from .storage import Storage
from .store import Store
from .store.chunks import Lease
from .store.files import Claim

log = logging.getLogger("spotbot.worker")
OUTPUT_IN_INDEX_LIMIT = 32 * 1024
# a label is a keyword: Elasticsearch refuses one past 32,766 bytes; a label this long is a mistake anyway
LABEL_MAX_BYTES = 1024
LABELS_MAX = 1000
MAX_HELD = 3  # chunks held at once: the one being worked and those claimed ahead
# an idle worker whose job's chunks are all held by others looks for work again, less and less often, but at least
# every this many poll intervals: a chunk given back by a stopping worker is taken within that (an expired lease,
# found the same way, is late by a lease period anyway)
IDLE_CLAIM_POLLS = 2


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


# --- what a task returns ------------------------------------------------------------------------

@dataclass
class Result:
    """A task's result as it is kept: the S3 body, and what the file document indexes."""

    body: bytes
    content_type: str
    labels: list[str] = field(default_factory=list)
    kept: Any = None  # the result itself, on the file document (when small)
    confidence: float | None = None
    label_scores: list[dict] = field(default_factory=list)  # each label's own score, where the task gave one


def serialize(result: Any) -> Result:
    """A task's result as it is kept: its S3 body, content type, labels (with their scores), confidence."""
    if isinstance(result, dict):
        try:
            body = json.dumps(result, ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"main_task returned a dict that is not JSON-serializable: {exc}") from None
        labels = result.get("labels") or []
        if not isinstance(labels, list):
            labels = [labels]
        names = [n for n in (str(item.get("label", "")) if isinstance(item, dict) else str(item) for item in labels) if n]
        check_labels(names)
        kept = result if len(body) <= OUTPUT_IN_INDEX_LIMIT else None
        return Result(body, "application/json", names, kept, confidence_of(result, labels), label_scores(result, labels))
    if isinstance(result, str):
        body = result.encode()
        return Result(body, "text/plain; charset=utf-8", kept={"text": result} if len(body) <= OUTPUT_IN_INDEX_LIMIT else None)
    if isinstance(result, (bytes, bytearray)):
        return Result(bytes(result), "application/octet-stream")
    if result is None:
        raise TypeError("main_task returned None; return a dict, str or bytes")
    raise TypeError(f"main_task returned a {type(result).__name__}; return a dict, str or bytes")


def label_scores(result: dict, labels: list) -> list[dict]:
    """Each label with its own score: from {"label", "score"} items, or from `scores` beside `labels`."""
    scores = result.get("scores")
    pairs = []
    for position, item in enumerate(labels):
        if isinstance(item, dict):
            name, score = item.get("label"), item.get("score")
        else:
            name = item
            score = scores[position] if isinstance(scores, list) and len(scores) == len(labels) else None
        if name and isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score):
            pairs.append({"label": str(name), "score": float(score)})
    return pairs


def check_labels(names: list[str]) -> None:
    """Labels are indexed as keywords: refuse, for this file alone, what Elasticsearch would refuse for its whole batch."""
    if len(names) > LABELS_MAX:
        raise ValueError(f"main_task returned {len(names)} labels; at most {LABELS_MAX} are indexed")
    for position, name in enumerate(names):
        size = len(name.encode())
        if size > LABEL_MAX_BYTES:
            raise ValueError(f"label {position} is {size} bytes long; a label is at most {LABEL_MAX_BYTES} bytes "
                             "(put long text in another field of the result)")


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


class Task:
    """A user's task.py: main_task(file_name) (plain or async) or main_batch(file_names) -> list."""

    def __init__(self, module: ModuleType, reference: str):
        self.main_task = getattr(module, "main_task", None)
        self.main_batch = getattr(module, "main_batch", None)
        if not callable(self.main_task) and not callable(self.main_batch):
            raise TaskError(f"{reference} defines no main_task(file_name) (nor main_batch(file_names))",
                            file=reference)
        self.batched = not callable(self.main_task)
        self.is_async = callable(self.main_task) and inspect.iscoroutinefunction(self.main_task)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self.is_async:  # coroutines of every pool thread run on one event loop of their own
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="task-loop", daemon=True).start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def run(self, keys: list[str]) -> list[Any]:
        """One call: main_batch for the keys, or main_task for the one key; a result per key, in order."""
        if self.batched:
            results = self.main_batch(keys)
            if not isinstance(results, (list, tuple)) or len(results) != len(keys):
                got = f"{len(results)} results" if isinstance(results, (list, tuple)) else f"a {type(results).__name__}"
                raise TypeError(f"main_batch was given {len(keys)} file(s) and returned {got}; return one result per "
                                "file, in order")
            return list(results)
        if self._loop is not None:
            return [asyncio.run_coroutine_threadsafe(self.main_task(keys[0]), self._loop).result()]
        return [self.main_task(keys[0])]


def load_task(reference: str) -> Task:
    try:
        module = load_reference(reference, kind="task")
    except ImportError as exc:
        raise TaskError(str(exc), file=reference) from None
    return Task(module, reference)


# --- the worker ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What one attempt at one file came to, on a pool thread: its output, or the task's error."""

    claim: Claim
    output_uri: str = ""
    result: Result | None = None
    error: str | None = None
    final: bool = False  # no other attempt can succeed (its object changed since the scan): ERROR at once


@dataclass
class Held:
    """A chunk this worker holds, and where its files are."""

    lease: Lease
    view: list[Claim]  # every file of the chunk, as this worker last read or wrote it
    todo: deque[Claim]  # to start (fresh, or an attempt again after the task raised)
    careful: bool
    running: int = 0
    results: int = 0  # outcomes staged since the last flush
    flushed_at: float = field(default_factory=time.monotonic)
    began_at: float = field(default_factory=time.monotonic)
    worked: int = 0
    released: bool = False  # given back by a stopping worker: outcomes still arriving for it are dropped


class Worker:
    """Claims chunks of one job and works their files until the job has no work left."""

    def __init__(self, settings: Settings, env: WorkerEnv, task: Task | Callable[[str], Any], *,
                 store: Store | None = None, storage: Storage | None = None):
        if not isinstance(task, Task):  # a bare main_task function (tests, embedding)
            task = _function_task(task)
        self.settings, self.env, self.task = settings, env, task
        self.store = store or Store.from_settings(settings, init=False)
        self.storage = storage or Storage(settings)
        self.job = self.store.jobs.get(env.job_id)
        self.input_bucket = self.job.input_uri[len("s3://"):].split("/", 1)[0]
        self.concurrency = max(1, settings.concurrency)
        self.done = 0
        self.abandoned = 0  # files still running in the pool when the worker gave them back
        self.held: list[Held] = []
        self.running = 0
        self.inflight_bytes = 0
        self.again: dict[str, float] = {}  # claim id -> when its next attempt may start (the task raised)
        self.outcomes: queue.Queue = queue.Queue()
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="task")
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.interruption = False  # stopped from outside (SIGTERM, a Spot notice), not by the job's end
        self.given_back = 0  # files left unworked in the chunks it released when it stopped
        self._hurry = False  # asked twice to stop: give back at once
        self._over = threading.Event()  # the worker has returned: the heartbeat ends
        self._job_status = self.job.status
        self._job_checked = time.monotonic()
        self._own_batch: int | None = env.batch_id
        self._next_claim = 0.0
        self._misses = 0
        self._stop_deadline: float | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        """Work until every chunk of the job is done, the job ends, or the worker is stopped; returns files worked."""
        specs = self._store(lambda: self.store.bots.get(self.job.bot).endpoints(), "reading the bot")
        bot._context = bot.Context(self.storage, EndpointClient(self.settings, self.store, specs), self.input_bucket,
                                   self.env.output_s3_bucket, self.env.output_s3_prefix,
                                   split_list(self.env.endpoint_name))
        self._record_state(WorkerState.RUNNING)
        self.task.start()
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        if spot.wanted(self.settings, os.environ):
            spot.SpotNotice(self.settings.imds_url, lambda notice: self.stop(notice, interruption=True),
                            every=self.settings.spot_notice_seconds, stop=self._over).start()
        reason, code = "stopped by an unexpected error", 1
        try:
            reason, code = self._loop(), 0
        except SpotbotError as exc:
            reason, code = f"stopped: {exc}", exc.exit_code
            raise
        finally:
            self._over.set()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.task.stop()
            bot._context = None
            gave = f", gave back {self.given_back} file(s)" if self.given_back else ""
            self._record_state(WorkerState.EXITED if code == 0 else WorkerState.FAILED, exit_code=code,
                               reason=f"{reason}; worked {self.done} file(s){gave}", interrupted=self._interrupted())
        return self.done

    def stop(self, reason: str, *, interruption: bool = False) -> None:
        """Stop gracefully (SIGTERM, a Spot notice): claim nothing more, finish or give back what is in flight,
        release the chunks. interruption: asked from outside, not because the job ended.

        Asked again while stopping, it gives back what is in flight at once. Safe to call from a signal
        handler or another thread: it only sets flags the deciding thread reads.
        """
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.interruption = interruption
            self.stopping.set()
        else:
            self._hurry = True
            if self._stop_deadline is not None:
                self._stop_deadline = time.monotonic()

    def _interrupted(self) -> bool:
        """Whether this worker's stop interrupted its job: asked from outside while the job had not ended.

        A supervisor stops a job's idle workers with SIGTERM once the job has ended: not an interruption.
        """
        if not self.interruption:
            return False
        try:
            return not self.store.jobs.get(self.env.job_id).status.terminal or self.given_back > 0
        except SpotbotError:
            return True  # it was asked to stop from outside; the store cannot say the job had ended

    def _loop(self) -> str:
        while True:
            self._check_job()
            if self._job_status == JobStatus.CANCELLED:
                self._cancel_todo()
            elif self._job_status.terminal and not self.stopping.is_set():
                self.stop(f"the job ended {self._job_status.value}")
            if self.stopping.is_set():
                self._wind_down()
            else:
                self._claim_ahead()
            self._start_files()
            self._collect(self._wait_time())
            self._flush_due()
            self._finish_chunks()
            if self.held or self.running:
                continue
            if self.stopping.is_set():
                return self.stop_reason or "stopped"
            if self._job_status.terminal:
                return f"the job ended {self._job_status.value}"
            if time.monotonic() >= self._next_claim and self._idle_and_ended():
                return f"the job ended {self._job_status.value}"

    def _idle_and_ended(self) -> bool:
        """Nothing to claim: end the job if no chunk is left (any worker may); True when it has ended."""
        if self._store(lambda: self.store.chunks.unfinished(self.env.job_id), "counting chunks"):
            return False  # others hold the rest: look again later (leases of dead workers expire)
        job = self._store(lambda: self.store.jobs.finalize(self.env.job_id), "finalizing the job")
        self._job_status = job.status
        # a long-running job with nothing to do: look for new files every poll interval
        self._next_claim = time.monotonic() + self.settings.poll_seconds
        self._misses = 0
        return job.status.terminal

    def _wait_time(self) -> float:
        """How long the deciding thread may wait for an outcome before it has something else to do."""
        now = time.monotonic()
        deadlines = [self._job_checked + self.settings.flush_seconds]
        deadlines += [held.flushed_at + self.settings.flush_seconds for held in self.held]
        if not self.stopping.is_set() and self._wants_chunk():
            deadlines.append(self._next_claim)  # (only then: a claim time long past would make this loop spin)
        deadlines += list(self.again.values())
        if self._stop_deadline is not None:
            deadlines.append(self._stop_deadline)
        return min(self.settings.poll_seconds, max(0.0, min(deadlines) - now))

    # --- claiming --------------------------------------------------------------------------------

    def _claim_ahead(self) -> None:
        """Claim a chunk whenever a slot of the pool is free with no file of ours to put in it (at most MAX_HELD).

        So the next chunk is taken while the last files of the current one still run, and a chunk
        is never held idle while this worker is busy and another worker could take it.
        """
        while self._wants_chunk() and time.monotonic() >= self._next_claim:
            lease = self._store(lambda: self.store.chunks.claim(
                self.env.job_id, self.env.worker_id, self._own_batch, self.settings.lease_seconds,
                pending_grace=self.settings.lease_seconds), "claiming a chunk")
            if lease is None:
                self._own_batch = None
                self._misses += 1
                # the rest is held by others: look again, less and less often, to take over expired leases
                poll = self.settings.poll_seconds
                self._next_claim = time.monotonic() + min(poll * 2 ** min(self._misses, 6),
                                                          max(poll, min(self.settings.lease_seconds / 4, IDLE_CLAIM_POLLS * poll)))
                return
            self._misses = 0
            if lease.chunk.batch_id != self._own_batch:
                self._own_batch = None  # our own batch is worked out: from now on only steal
            self._hold(lease)

    def _wants_chunk(self) -> bool:
        """A slot of the pool is free with no file of ours to put in it, and another chunk may be held."""
        return (len(self.held) < MAX_HELD and self.running + sum(len(h.todo) for h in self.held) < self.concurrency
                and not any(h.careful for h in self.held))

    def _hold(self, lease: Lease) -> None:
        view, missing = self._store(lambda: self.store.files.of_chunk(lease.chunk), "reading files")
        todo = [claim for claim in view if not claim.task.status.terminal]
        careful = lease.chunk.suspect or any(claim.task.status == FileStatus.PROCESSING for claim in todo)
        if careful:
            todo.sort(key=lambda c: (c.task.in_flight, c.task.file_key))  # unknown suspects before known ones
            log.info("chunk %s was left by a worker that stopped mid-work: %d file(s), one at a time",
                     lease.chunk.chunk_id, len(todo))
        if missing:
            log.info("chunk %s lists %d file(s) without a document (their writer stopped)", lease.chunk.chunk_id, missing)
        self.held.append(Held(lease, view, deque(todo), careful))

    def _heartbeat(self) -> None:
        while not self._over.wait(self.settings.lease_seconds / 3):
            for held in list(self.held):
                if held.lease.lost.is_set():
                    continue
                try:
                    if not self.store.chunks.extend(held.lease, self.settings.lease_seconds):
                        log.warning("lost chunk %s to another worker", held.lease.chunk.chunk_id)
                except SpotbotError as exc:
                    log.warning("could not extend the lease of %s: %s", held.lease.chunk.chunk_id, exc)

    # --- starting files ---------------------------------------------------------------------------

    def _start_files(self) -> None:
        now = time.monotonic()
        careful = next((h for h in self.held if h.careful and (h.todo or h.running) and not h.lease.lost.is_set()), None)
        if careful is not None:
            # one file at a time with nothing else in flight, so a file that kills the worker is known
            if self.running == 0 and careful.todo and self._ready(careful.todo[0], now):
                self._start_carefully(careful)
            return
        for held in self.held:
            if held.lease.lost.is_set():
                continue
            while self.running < self.concurrency:
                group = self._group(held, now)
                if not group:
                    break
                size = sum(claim.task.size for claim in group)
                if self.running and self.inflight_bytes + size > self.settings.max_inflight_bytes:
                    held.todo.extendleft(reversed(group))
                    return  # memory is spoken for: start more once some finish
                for claim in group:
                    if self.again.pop(claim.id, None) is None:
                        self.store.files.begin(claim, self.env.worker_id)
                self._submit(held, group, size)

    def _ready(self, claim: Claim, now: float) -> bool:
        return self.again.get(claim.id, 0.0) <= now

    def _group(self, held: Held, now: float) -> list[Claim]:
        """The next call's files, taken from todo: one, or for main_batch up to SPOTBOT_TASK_BATCH_SIZE files
        that never failed here (a file that did runs alone); [] when none is ready to start."""
        first = next((claim for claim in held.todo if self._ready(claim, now)), None)
        if first is None:
            return []
        held.todo.remove(first)
        group = [first]
        if self.task.batched and first.id not in self.again:
            limit = min(self.settings.task_batch_size, self.concurrency - self.running)
            while held.todo and len(group) < limit and held.todo[0].id not in self.again:
                group.append(held.todo.popleft())
        return group

    def _start_carefully(self, held: Held) -> None:
        claim = held.todo.popleft()
        if self.again.pop(claim.id, None) is None:
            ok = self._store(lambda: self.store.files.begin_one(
                claim, held.view, held.lease, worker_id=self.env.worker_id, max_attempts=self.settings.max_attempts,
                lease_seconds=self.settings.lease_seconds), "marking a file in flight")
            if not ok:
                return  # it ended ERROR (it killed too many workers), or another worker has it
        self._submit(held, [claim], claim.task.size)

    def _submit(self, held: Held, claims: list[Claim], size: int) -> None:
        self.running += len(claims)
        held.running += len(claims)
        self.inflight_bytes += size
        if bot._context is not None:
            for claim in claims:
                bot._context.versions[claim.task.file_key] = (claim.task.etag, claim.task.version_id)
        future = self.pool.submit(self._attempt, claims)
        future.add_done_callback(lambda done: self.outcomes.put((held, claims, size, done)))

    def _attempt(self, claims: list[Claim]) -> list[Outcome]:
        """One call of the task for these files, and their outputs written (on a pool thread)."""
        keys = [claim.task.file_key for claim in claims]
        try:
            results = self.task.run(keys)
        except Exception as exc:  # the task's failure is the files', never the worker's
            log.debug("%s", traceback.format_exc())
            changed = exc.file if isinstance(exc, ObjectChanged) else None
            return [Outcome(claim, error=f"{type(exc).__name__}: {exc}",
                            final=changed == f"s3://{claim.task.bucket}/{claim.task.file_key}") for claim in claims]
        outcomes = []
        for claim, result in zip(claims, results):
            try:
                kept = serialize(result)
                uri = self.storage.write(self.env.output_s3_bucket, self._output_key(claim.task.file_key), kept.body,
                                         kept.content_type)
            except Exception as exc:
                outcomes.append(Outcome(claim, error=f"{type(exc).__name__}: {exc}"))
                continue
            outcomes.append(Outcome(claim, uri, kept))
        return outcomes

    def _output_key(self, key: str) -> str:
        prefix = self.env.output_s3_prefix.rstrip("/")
        return f"{prefix}/{key}.json" if prefix else f"{key}.json"

    # --- outcomes, flushes, finished chunks --------------------------------------------------------

    def _collect(self, timeout: float) -> None:
        """Take the outcomes that arrive within timeout (all that are there, once one is)."""
        try:
            item = self.outcomes.get(timeout=timeout) if timeout > 0 else self.outcomes.get_nowait()
        except queue.Empty:
            return
        while True:
            self._take(*item)
            try:
                item = self.outcomes.get_nowait()
            except queue.Empty:
                return

    def _take(self, held: Held, claims: list[Claim], size: int, done: Future) -> None:
        if held.released:
            return  # given back when the stop's grace ran out: counted out then, its outcome dropped
        self.running -= len(claims)
        held.running -= len(claims)
        self.inflight_bytes -= size
        if bot._context is not None:
            for claim in claims:
                bot._context.versions.pop(claim.task.file_key, None)
        if done.cancelled() or held.lease.lost.is_set():
            return  # not ours to write any more (the lease went to another worker) or never run (stopping)
        if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
            return  # given back already: the files were abandoned when the grace period ran out
        for outcome in done.result():
            claim = outcome.claim
            held.results += 1
            if outcome.error is None:
                result = outcome.result
                self.store.files.complete(claim, output_uri=outcome.output_uri, labels=result.labels, output=result.kept,
                                          confidence=result.confidence, label_scores=result.label_scores,
                                          fingerprint=self.job.fingerprint)
                self.done += 1
                held.worked += 1
                continue
            if outcome.final:
                log.warning("%s: %s", claim.task.file_key, outcome.error)
                self.store.files.fail(claim, outcome.error)
                held.worked += 1
                continue
            log.warning("%s attempt %d failed: %s", claim.task.file_key, claim.task.attempts, outcome.error)
            if self.store.files.attempt_failed(claim, outcome.error, self.settings.max_attempts):
                held.worked += 1
                continue
            # again, alone (a main_batch file too: one bad file must not sink its batch every time)
            self.again[claim.id] = time.monotonic() + min(2.0, 0.1 * 2 ** claim.task.attempts)
            held.todo.appendleft(claim)
        if held.careful:
            self._flush(held)  # one file at a time, each written before the next starts

    def _flush_due(self) -> None:
        now = time.monotonic()
        for held in self.held:
            if held.lease.lost.is_set() or not (held.todo or held.running):
                continue  # (a chunk with nothing left is written once, DONE, by _finish_chunks)
            stale = now - held.flushed_at >= self.settings.flush_seconds
            if held.results >= self.settings.flush_files or (stale and (
                    any(claim.dirty for claim in held.view) or held.running != held.lease.chunk.in_flight)):
                self._flush(held)
            elif stale:
                held.flushed_at = now

    def _flush(self, held: Held, *, end: ChunkStatus | None = None) -> bool:
        held.flushed_at, held.results = time.monotonic(), 0
        kept = self._store(lambda: self.store.files.flush(held.view, held.lease, lease_seconds=self.settings.lease_seconds,
                                                          in_flight=held.running, end=end),
                           f"writing results of chunk {held.lease.chunk.chunk_id}")
        if not kept:
            log.warning("lost chunk %s to another worker: its results from here on are that worker's",
                        held.lease.chunk.chunk_id)
        return kept

    def _finish_chunks(self) -> None:
        for held in list(self.held):
            if held.running:
                continue
            if held.lease.lost.is_set():
                self.held.remove(held)
                continue
            if held.todo or self.stopping.is_set():
                continue  # (a stopping worker's chunks are finished or given back by _wind_down)
            if self._flush(held, end=ChunkStatus.DONE):
                log.info("chunk %s done: %d file(s) worked in %.1fs", held.lease.chunk.chunk_id, held.worked,
                         time.monotonic() - held.began_at)
            self.held.remove(held)

    # --- the job, cancelling and stopping ----------------------------------------------------------

    def _check_job(self) -> None:
        """Read the job's status (cancelled? ended elsewhere?) at most once per flush interval."""
        now = time.monotonic()
        if now - self._job_checked >= self.settings.flush_seconds:
            self._job_checked = now
            self._job_status = self._store(lambda: self.store.jobs.get(self.env.job_id), "reading the job").status

    def _cancel_todo(self) -> None:
        """The job was cancelled: its files not begun end CANCELLED; those in flight finish."""
        for held in self.held:
            while held.todo:
                claim = held.todo.popleft()
                self.again.pop(claim.id, None)
                if claim.task.status == FileStatus.PROCESSING:
                    self.store.files.abandon(claim)  # it ran and failed here: not cancelled unrun
                self.store.files.cancel(claim)

    def _wind_down(self) -> None:
        """Stopping: start nothing more; give each chunk back once its files in flight are done (or the grace ran out).

        A chunk with nothing in flight (claimed ahead, or drained) is given back at once. A file begun
        here and not finished goes back NOT_STARTED with its attempt uncharged, and each chunk is
        released (OPEN, claimable at once; DONE if nothing is left) in the same request as its results.
        """
        now = time.monotonic()
        if self._stop_deadline is None:
            self._stop_deadline = now if self._hurry else now + self.settings.stop_grace_seconds
            log.info("stopping (%s): %d file(s) in flight get up to %.0fs", self.stop_reason, self.running,
                     self._stop_deadline - now)
            for held in self.held:
                held.todo.clear()  # files not begun stay as they are
            self.again.clear()
        out_of_time = now >= self._stop_deadline
        for held in list(self.held):
            if held.running and not out_of_time:
                continue  # its files in flight may still finish: it is given back once they have
            self._give_back(held)

    def _give_back(self, held: Held) -> None:
        if held.running:  # the grace ran out: whatever is still in flight is abandoned, its outcome dropped
            self.running -= held.running
            self.abandoned += held.running
            held.running = 0
        held.released = True
        if not held.lease.lost.is_set():
            for claim in held.view:
                if claim.task.status == FileStatus.PROCESSING and claim.task.worker_id == self.env.worker_id:
                    self.store.files.abandon(claim)
            left = sum(1 for claim in held.view if not claim.task.status.terminal)
            if self._flush(held, end=ChunkStatus.OPEN if left else ChunkStatus.DONE) and left:
                self.given_back += left
                log.info("gave chunk %s back: %d file(s) left for other workers", held.lease.chunk.chunk_id, left)
        self.held.remove(held)
        if not self.held:
            self.inflight_bytes = 0

    # --- plumbing ------------------------------------------------------------------------------------

    def _store(self, call: Callable[[], Any], what: str) -> Any:
        """A store operation, retried while Elasticsearch is unavailable (restarting, overloaded)."""
        return retrying(call, seconds=self.settings.retry_seconds, what=what)

    def _record_state(self, state: WorkerState, exit_code: int | None = None, reason: str = "",
                      interrupted: bool = False) -> None:
        try:
            self.store.jobs.worker_state(self.env.job_id, self.env.worker_id, state, pid=os.getpid(),
                                         exit_code=exit_code, reason=reason, interrupted=interrupted)
        except SpotbotError as exc:
            log.warning("could not record worker state %s: %s", state.value, exc)


def _function_task(function: Callable) -> Task:
    module = ModuleType("task")
    module.main_task = function  # type: ignore[attr-defined]
    return Task(module, getattr(function, "__name__", "main_task"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m framework.bot path/to/task.py\n\n" + (__doc__ or ""))
        print("Environment: " + ", ".join(WorkerEnv.model_fields) + ", plus SPOTBOT_* settings.")
        return 0 if argv else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the clients' own lines (a request each, a traceback per failed try) would drown the worker's
    for chatty in ("elastic_transport", "opensearch", "urllib3", "botocore", "spotbot.retry"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    try:
        task = load_task(argv[0])
        env = WorkerEnv.from_environ(os.environ)
        worker = Worker(env.settings(os.environ), env, task)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop("SIGTERM", interruption=True))
        done = worker.run()
    except SpotbotError as exc:
        log.error("%s", exc)
        return getattr(exc, "exit_code", 1)
    log.info("worker %s finished: %d file(s) worked", env.worker_id, done)
    if worker.abandoned:
        # task threads still run the files given back; their results are not wanted: do not wait for them
        logging.shutdown()
        os._exit(0)
    return 0
