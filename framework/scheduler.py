"""The scheduler: submit a job (scan + record), start its endpoints and workers, cancel, retry, settle.

A job's state changes only through the verbs of store/jobs.py, a file's only through those of
store/files.py; this module decides when to call them.
"""

from __future__ import annotations

import datetime as dt
import math
import queue
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable
from urllib.parse import urlsplit

from .costs import resources
from .endpoints import EndpointManager
from .errors import ConfigError, LaunchError, NotFound, SpotbotError
from .fingerprint import fingerprint
from .launchers import Launcher, WorkerSpec, launcher
from .models import (JOB_ID_PATTERN, BotConfig, Chunk, ChunkStatus, FileStatus, FileTask, Job, JobStatus, LatestResult,
                     Worker, WorkerState, now_ms)
from .settings import Settings
from .storage import S3Location, S3Object, Storage, has_suffix, parse_uri
from .store import Store
from .store.chunks import new_chunk
from .store.files import Claim

CHUNKS_PER_WRITE = 10
# how long an add_files call may take before the job may end without it (see add_files)
ADD_WINDOW_SECONDS = 60.0
# a chunk left PENDING this long had its writer die between writing it and opening it: claimable
PENDING_GRACE_SECONDS = ADD_WINDOW_SECONDS
# the scan holds back this many keys at most to size a small job's chunks (see chunk_size_for)
SIZING_KEYS = 20_000
RETRY_HEADS = 16  # HEAD requests at once when a retry reads its files' objects as they are now

__all__ = ["Scheduler", "new_chunk", "chunk_size_for", "new_job_id", "PENDING_GRACE_SECONDS"]


class _Recorder:
    """Records a scan's chunks and files in a thread of its own, so listing S3 and writing to
    Elasticsearch overlap. One writer, in order; at most two batches wait (memory stays flat);
    the first failure stops it and is raised to the scanning thread at its next put or at close."""

    def __init__(self, record: Callable[[list], object], on_scan: Callable[[int], None] | None):
        self._record, self._on_scan = record, on_scan
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scan-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain what is queued after a failure; the scanning thread raises it
            pending, total = item
            try:
                self._record(pending)
                if self._on_scan:
                    self._on_scan(total)
            except BaseException as exc:  # handed to the scanning thread, which raises it
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, pending: list, total: int) -> None:
        self._raise()
        self._queue.put((pending, total))

    def close(self, quietly: bool = False) -> None:
        """Wait until everything put is recorded; raise the first failure unless quietly."""
        self._queue.put(None)
        self._thread.join()
        if not quietly:
            self._raise()


def chunk_size_for(total: int, workers: int, limit: int) -> int:
    """Files per chunk: small enough that each worker gets two chunks (one to work, one to claim
    ahead), so a small job keeps every worker busy; never above SPOTBOT_CHUNK_SIZE (limit)."""
    return max(1, min(limit, math.ceil(total / (2 * max(1, workers)))))


def new_job_id(bot: str) -> str:
    return f"{bot}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def overwritten(task: FileTask, obj: S3Object) -> bool:
    """Whether a listed object is another version than the one the file recorded (unknown versions: no)."""
    if task.version_id and obj.version_id:
        return task.version_id != obj.version_id
    return bool(task.etag and obj.etag) and task.etag != obj.etag


def overlapping(source: S3Location, dest: S3Location) -> bool:
    """Whether outputs would land among the inputs (or inputs among the outputs): one prefix starts the other."""
    return source.bucket == dest.bucket and (dest.prefix.startswith(source.prefix) or source.prefix.startswith(dest.prefix))


class Scheduler:
    def __init__(self, settings: Settings, store: Store, storage: Storage, *, launch: Launcher | None = None,
                 endpoints: EndpointManager | None = None):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.launcher = launch or launcher(settings)
        self.endpoints = endpoints or EndpointManager(settings, store, storage)

    # --- submit -------------------------------------------------------------------------------

    def submit(self, bot_name: str, input_uri: str, output_uri: str, *, workers: int | None = None,
               job_id: str | None = None, concurrency: int | None = None, incremental: bool = False,
               on_scan: Callable[[int], None] | None = None) -> Job:
        """Record a job and its files, start its endpoints and workers; idempotent per job id.

        incremental: a file whose object version has a COMPLETED result of this bot with the same
        fingerprint (framework/fingerprint.py) is recorded SKIPPED, pointing at that result, and not
        worked; a job with nothing left to work ends at once, without starting a worker.
        """
        job, created = self._new(bot_name, input_uri, output_uri, workers, job_id, concurrency, incremental=incremental)
        if job.accepting:
            raise ConfigError(f"job {job.job_id!r} is a long-running job that takes files as they come; "
                              "choose another job id", field="job_id")
        bot = self.store.bots.get(job.bot)
        if job.status == JobStatus.SCANNING:
            self.scan(job, bot, parse_uri(job.input_uri, field="input"), on_scan=on_scan)
            job = self.store.jobs.get(job.job_id)
        if job.status.terminal:
            return job
        if job.total == 0 or not self.store.chunks.unfinished(job.job_id):
            return self.settle(job.job_id)  # nothing to work (an empty prefix; every file SKIPPED)
        if not created and self.alive_workers(job):
            return job  # already being worked: a resubmit adds nothing
        return self._start(job, bot, job.workers_requested)

    def create_job(self, bot_name: str, input_uri: str, output_uri: str, *, workers: int | None = None,
                   job_id: str | None = None, concurrency: int | None = None, incremental: bool = False) -> Job:
        """Check a job's arguments and record it (SCANNING) without scanning; submit(..., job_id=its id) does the rest.

        For callers that must answer before the scan (the HTTP API): bad input fails here, at once.
        """
        job, _ = self._new(bot_name, input_uri, output_uri, workers, job_id, concurrency, incremental=incremental)
        if job.accepting:
            raise ConfigError(f"job {job.job_id!r} is a long-running job that takes files as they come; "
                              "choose another job id", field="job_id")
        return job

    def _new(self, bot_name: str, input_uri: str, output_uri: str, workers: int | None, job_id: str | None,
             concurrency: int | None, **fields) -> tuple[Job, bool]:
        bot, source, dest = self._prepare(bot_name, input_uri, output_uri, job_id)
        # every job keeps its fingerprint (and its completed files their results), so that a later
        # incremental job can reuse them; a job resumed by its id keeps the one it was created with
        return self._create(Job(job_id=job_id or new_job_id(bot.name), bot=bot.name, input_uri=source.uri,
                                output_uri=dest.uri, workers_requested=workers or self.settings.workers,
                                concurrency=concurrency or self.settings.concurrency,
                                fingerprint=fingerprint(bot, self.storage), **fields))

    def _prepare(self, bot_name: str, input_uri: str, output_uri: str,
                 job_id: str | None) -> tuple[BotConfig, S3Location, S3Location]:
        """Check a job's arguments before anything is stored: the bot, the URIs, the buckets, the backends."""
        bot = self.store.bots.get(bot_name)
        source = parse_uri(input_uri, field="input")
        dest = parse_uri(output_uri, field="output")
        if overlapping(source, dest):
            raise ConfigError(f"{dest.uri} overlaps the input {source.uri}: outputs would be taken for inputs (or "
                              "inputs skipped as outputs); write them to another bucket or a prefix beside the "
                              "input, like s3://bucket/out/ for s3://bucket/in/", field="output")
        if job_id is not None and not JOB_ID_PATTERN.match(job_id):
            raise ConfigError("must start with a letter or digit and hold only letters, digits, '.', '_' or '-'",
                              field="job_id")
        self.launcher.check(bot)
        self.endpoints.check(bot)
        self.storage.check_bucket(source.bucket, field="input")
        self.storage.check_bucket(dest.bucket, field="output")
        return bot, source, dest

    def _create(self, job: Job) -> tuple[Job, bool]:
        """Record the job; an existing job of that id is returned when it is the same bot over the same prefixes."""
        stored, created = self.store.jobs.create(job)
        if not created and (stored.bot, stored.input_uri, stored.output_uri) != (job.bot, job.input_uri, job.output_uri):
            raise ConfigError(
                f"job {stored.job_id!r} exists with bot {stored.bot!r}, input {stored.input_uri}, output "
                f"{stored.output_uri}; choose another job id", field="job_id",
            )
        return stored, created

    # --- long-running jobs ----------------------------------------------------------------------

    def open(self, bot_name: str, input_uri: str, output_uri: str, *, workers: int | None = None,
             job_id: str | None = None, concurrency: int | None = None, incremental: bool = False) -> Job:
        """Start a long-running job: no scan; files come through add_files until close. Idempotent per job id.

        Its workers stay up while it has no work, so a new file is picked up within a poll interval.
        """
        job, created = self._new(bot_name, input_uri, output_uri, workers, job_id, concurrency, accepting=True,
                                 status=JobStatus.RUNNING, running_at=now_ms(), incremental=incremental)
        if not job.accepting:
            if job.closed_at is not None:
                raise ConfigError(f"job {job.job_id!r} is a long-running job that was closed (it takes no more "
                                  "files); choose another job id", field="job_id")
            raise ConfigError(f"job {job.job_id!r} exists and is not a long-running job; choose another id",
                              field="job_id")
        if not job.status.terminal and (created or not self.alive_workers(job)):
            job = self._start(job, self.store.bots.get(job.bot), job.workers_requested)
        return job

    def add_files(self, job_id: str, objects: Iterable[S3Object | tuple[str, int]]) -> list[str]:
        """Record new files of the job's input bucket in a long-running job; returns the keys that are new.

        Each is a listed S3Object (its version is recorded and read exactly) or a (key, size) pair.
        A key recorded before is not recorded again (file ids are deterministic). The job cannot
        end while this writes: a token with an expiry on the job holds it open until the files
        are counted, or until the token expires if this process dies half-way.
        """
        objects = [obj if isinstance(obj, S3Object) else S3Object(obj[0], obj[1], 0) for obj in objects]
        if not objects:
            return []
        job = self.store.jobs.get(job_id)
        source = parse_uri(job.input_uri, field="input")
        outside = next((obj.key for obj in objects if not obj.key.startswith(source.prefix)), None)
        if outside is not None:
            raise ConfigError(f"{outside!r} is not under the job's input {source.uri}", field="key")
        bot = self.store.bots.get(job.bot)
        reusable = self._reusable(job, bot, source.bucket, objects)
        to_work = [(obj, None) for obj in objects if obj.key not in reusable]
        skipped = [(obj, reusable[obj.key]) for obj in objects if obj.key in reusable]
        size = chunk_size_for(len(to_work), job.workers_requested, self.settings.chunk_size)
        runs = [to_work[i:i + size] for i in range(0, len(to_work), size)]
        runs += [skipped[i:i + self.settings.chunk_size] for i in range(0, len(skipped), self.settings.chunk_size)]
        token = secrets.token_hex(6)
        job = self.store.jobs.reserve_add(job_id, token, chunks=len(runs), window_seconds=ADD_WINDOW_SECONDS)
        first_seq = job.chunks - len(runs)
        pending = [self._chunk(job, bot, source.bucket, first_seq + i, run) for i, run in enumerate(runs)]
        new_ids = set(self.store.record(pending))
        new_keys = [obj.key for obj in objects if FileTask.doc_id(job_id, source.bucket, obj.key) in new_ids]
        self.store.jobs.added(job_id, token, len(new_keys))
        return new_keys

    def rework(self, job_id: str, objects: Iterable[S3Object]) -> list[str]:
        """Work again the files of a long-running job whose object was overwritten since it was recorded (a new
        ETag or version); returns their keys.

        Only files that have ended are reopened (in new chunks, with the new version, their history
        kept): a file still waiting or in flight is read as the version it names, and ends ERROR if
        that is gone, to be reworked by a later look. The job is held open while this writes, as by add_files.
        """
        job = self.store.jobs.get(job_id)
        source = parse_uri(job.input_uri, field="input")
        listed = {FileTask.doc_id(job_id, source.bucket, obj.key): obj for obj in objects}
        changed = [claim for claim in self.store.files.claims(list(listed))
                   if claim.task.status.terminal and overwritten(claim.task, listed[claim.id])]
        if not changed:
            return []
        size = chunk_size_for(len(changed), job.workers_requested, self.settings.chunk_size)
        chunk_count = -(-len(changed) // size)
        token = secrets.token_hex(6)
        job = self.store.jobs.reserve_add(job_id, token, chunks=chunk_count, window_seconds=ADD_WINDOW_SECONDS)
        first_seq = job.chunks - chunk_count
        for claim in changed:
            obj = listed[claim.id]
            claim.task.etag, claim.task.version_id, claim.task.size = obj.etag, obj.version_id, obj.size
            claim.task.modified_at = obj.modified_ms or None
        reworked = 0
        for i in range(chunk_count):
            reworked += self.store.move(job_id, changed[i * size:(i + 1) * size], workers=job.workers_requested,
                                        tag=f"v{token[:4]}-", reopen=True, seq=first_seq + i)
        self.store.jobs.added(job_id, token, 0)
        if reworked:
            self.store.jobs.note(job_id, f"watch: {reworked} file(s) overwritten in place are worked again")
        return [claim.task.file_key for claim in changed]

    def close(self, job_id: str) -> Job:
        """Stop a long-running job taking files; it ends once the files it has are worked."""
        self.store.jobs.close(job_id)
        return self.settle(job_id)

    # --- scan -----------------------------------------------------------------------------------

    def scan(self, job: Job, bot: BotConfig, source: S3Location, on_scan: Callable[[int], None] | None = None) -> int:
        """Stream the listing into chunk and file documents; safe to run again after a crash.

        Chunk ids are derived from their files, and a chunk is claimable only once its files are
        written (Store.record). A file that exists already (an earlier scan of the same job) keeps
        its chunk and is not recorded twice. A cancel stops the scan at the next listing page.
        A small job's chunks are sized from its file count (chunk_size_for); for that, the scan
        holds back up to SIZING_KEYS keys before it records the first. An incremental job looks up
        the earlier results of each listing page (one mget) and puts the files it SKIPs in chunks of
        their own, opened DONE: the files to work make full chunks however few and scattered they are.
        """
        total = seq = 0
        held: list[tuple[S3Object, LatestResult | None]] | None = []  # held back to size chunks, until the size is known
        size = self.settings.chunk_size
        batches: dict[bool, list[tuple[S3Object, LatestResult | None]]] = {False: [], True: []}  # to work, SKIPPED
        pending: list[tuple[Chunk, list[FileTask]]] = []
        recorder = _Recorder(self.store.record, on_scan)  # records while the listing goes on
        cancelled = False

        def take(obj: S3Object, result: LatestResult | None) -> None:
            nonlocal seq, pending
            batch = batches[result is not None]
            batch.append((obj, result))
            # nobody works a chunk of SKIPPED files: they are as large as chunks may be
            if len(batch) == (self.settings.chunk_size if result is not None else size):
                pending.append(self._chunk(job, bot, source.bucket, seq, batch))
                seq += 1
                batch.clear()
                if len(pending) == CHUNKS_PER_WRITE:
                    recorder.put(pending, total)
                    pending = []

        try:
            for page in self.storage.objects(source):
                if self.store.jobs.get(job.job_id).status == JobStatus.CANCELLED:
                    cancelled = True
                    break
                wanted = [obj for obj in page if not obj.key.endswith("/") and has_suffix(obj.key, bot.file_types)]
                reusable = self._reusable(job, bot, source.bucket, wanted)
                for obj in wanted:
                    total += 1
                    if held is not None:
                        held.append((obj, reusable.get(obj.key)))
                        if len(held) < SIZING_KEYS:
                            continue
                        for item in held:
                            take(*item)
                        held = None
                        continue
                    take(obj, reusable.get(obj.key))
            if held is not None:
                to_work = sum(1 for _, result in held if result is None)
                size = chunk_size_for(to_work, job.workers_requested, self.settings.chunk_size)
                for item in held:
                    take(*item)
            for batch in batches.values():
                if batch:
                    pending.append(self._chunk(job, bot, source.bucket, seq, batch))
                    seq += 1
            recorder.put(pending, total)
        except BaseException:
            recorder.close(quietly=True)  # the scan's own failure is the one to report
            raise
        recorder.close()
        if cancelled:
            self.drain(job.job_id)
            return total
        self.store.jobs.start(job.job_id, total=total, chunks=seq)
        return total

    def _reusable(self, job: Job, bot: BotConfig, bucket: str, objects: list[S3Object]) -> dict[str, LatestResult]:
        """For an incremental job, the objects whose version has a COMPLETED result of its fingerprint, by key.

        The bot's latest results are read by id (store/results.py): one mget per listing page, never a search.
        """
        if not job.incremental or not objects:
            return {}
        found = self.store.results.latest(bot.name, bucket, [obj.key for obj in objects])
        return {obj.key: result for obj in objects if (result := found.get(obj.key)) is not None and result.matches(
            etag=obj.etag, version_id=obj.version_id, size=obj.size, fingerprint=job.fingerprint)}

    def _chunk(self, job: Job, bot: BotConfig, bucket: str, seq: int,
               batch: list[tuple[S3Object, LatestResult | None]]) -> tuple[Chunk, list[FileTask]]:
        """A chunk of these objects' files; one with an earlier result to reuse is recorded SKIPPED."""
        ids = [FileTask.doc_id(job.job_id, bucket, obj.key) for obj, _ in batch]
        chunk = new_chunk(job.job_id, ids, seq, job.workers_requested)
        files = []
        for obj, result in batch:
            task = FileTask(job_id=job.job_id, bot=bot.name, bucket=bucket, file_key=obj.key, chunk_id=chunk.chunk_id,
                            batch_id=chunk.batch_id, size=obj.size, etag=obj.etag, version_id=obj.version_id,
                            modified_at=obj.modified_ms or None)
            if result is not None:
                self.store.files.reuse(task, result)
            files.append(task)
        return chunk, files

    # --- workers ------------------------------------------------------------------------------

    def _start(self, job: Job, bot: BotConfig, count: int) -> Job:
        """Make sure the bot's endpoints answer, then launch its workers; a failure of either fails the job."""
        try:
            self.endpoints.ensure(bot)
        except SpotbotError as exc:
            self.store.jobs.fail(job.job_id, f"endpoint: {exc}")
            raise
        return self.launch(job, bot, count)

    def launch(self, job: Job, bot: BotConfig, count: int) -> Job:
        """Start the job's workers; if none starts, the job ends FAILED with why (never RUNNING with nobody on it)."""
        specs = [WorkerSpec(job.job_id, bot, f"w{batch_id}-{secrets.token_hex(3)}", batch_id) for batch_id in range(count)]
        try:
            for spec in specs:
                spec.environment = self.worker_environment(job, bot, spec)
            launch_many = getattr(self.launcher, "launch_many", None)  # one request for them all (a Batch array job)
            if launch_many:
                started = launch_many(specs)
            else:
                started, failures = [], []
                for spec in specs:
                    try:
                        started.append(self.launcher.launch(spec))
                    except LaunchError as exc:
                        failures.append(str(exc))
                if failures and not started:
                    raise LaunchError(failures[0])
                if failures:
                    self.store.jobs.note(job.job_id, f"{len(failures)} worker(s) could not start: {failures[0]}")
        except (LaunchError, ConfigError) as exc:
            self.store.jobs.fail(job.job_id, f"workers could not start: {exc}")
            raise
        return self.store.jobs.record_workers(job.job_id, [self._sized(worker) for worker in started])

    def _sized(self, worker: Worker) -> Worker:
        """The worker with the vCPUs and memory its back end gives it (for what a job costs)."""
        vcpus, memory = resources(self.settings, worker.backend)
        return worker.model_copy(update={"vcpus": vcpus, "memory_mb": memory})

    def relaunch(self, job: Job, bot: BotConfig, worker: Worker, reason: str) -> Worker:
        """Start a worker in the place (batch) of one that ended, recording why on the job."""
        spec = WorkerSpec(job.job_id, bot, f"w{worker.batch_id}-{secrets.token_hex(3)}", worker.batch_id)
        spec.environment = self.worker_environment(job, bot, spec)
        started = self._sized(self.launcher.launch(spec))
        self.store.jobs.record_workers(job.job_id, [started], note=f"relaunched worker {worker.id} as {started.id}: {reason}")
        return started

    def worker_environment(self, job: Job, bot: BotConfig, spec: WorkerSpec) -> dict[str, str]:
        """The seed's worker contract (region_name, endpoint_name, ...) plus our settings."""
        es = urlsplit(self.settings.require_es())
        dest = parse_uri(job.output_uri, field="output")
        env = self.settings.worker_environment()
        env.update({
            "region_name": self.settings.region,
            "endpoint_name": ",".join(spec.name for spec in bot.endpoints()),
            "output_s3_bucket": dest.bucket,
            "output_s3_prefix": dest.prefix,
            "es_host": es.hostname or "",
            "es_port": str(es.port or (443 if es.scheme == "https" else 9200)),
            "es_protocol": es.scheme,
            "es_index": self.store.index("files"),
            "job_id": job.job_id,
            "batch_id": str(spec.batch_id),
            "SPOTBOT_WORKER_ID": spec.worker_id,
            "SPOTBOT_BOT": bot.name,
            "SPOTBOT_CONCURRENCY": str(job.concurrency),
        })
        return env

    def alive_workers(self, job: Job) -> list[Worker]:
        return [w for w in job.workers.values() if self.launcher.poll(w)[0] in (WorkerState.STARTING, WorkerState.RUNNING)]

    # --- end, cancel, retry --------------------------------------------------------------------

    def settle(self, job_id: str) -> Job:
        """End the job if none of its chunks is left and its files agree (see JobStore.finalize)."""
        return self.store.jobs.finalize(job_id)

    def cancel(self, job_id: str, *, wait_seconds: float | None = None) -> Job:
        """Stop a job: workers claim nothing more, every open file ends CANCELLED, the job ends CANCELLED.

        Chunks nobody holds are closed here; a worker holding a chunk cancels the rest of it
        itself at its next check (every SPOTBOT_FLUSH_SECONDS). Chunks of dead workers are
        closed once their leases expire, so this waits at most a lease period.
        """
        job = self.store.jobs.cancel(job_id)
        if job.status != JobStatus.CANCELLED:
            return job
        self.drain(job_id, wait_seconds=wait_seconds)
        return self.store.jobs.recount(job_id)

    def drain(self, job_id: str, *, wait_seconds: float | None = None) -> None:
        """Close the chunks of a cancelled job: their files that never ran end CANCELLED."""
        limit = wait_seconds if wait_seconds is not None else self.settings.lease_seconds + 30
        deadline = time.monotonic() + limit
        while self.store.chunks.unfinished(job_id):
            lease = self.store.chunks.claim(job_id, "canceller", -1, self.settings.lease_seconds,
                                            pending_grace=PENDING_GRACE_SECONDS)
            if lease:
                view, _ = self.store.files.of_chunk(lease.chunk)
                for claim in view:
                    if not claim.task.status.terminal:
                        self.store.files.cancel(claim)
                self.store.files.flush(view, lease, lease_seconds=self.settings.lease_seconds, end=ChunkStatus.DONE)
                continue
            if time.monotonic() > deadline:
                break
            time.sleep(self.settings.poll_seconds)

    def retry(self, job_id: str, *, errors_only: bool = False, workers: int | None = None,
              concurrency: int | None = None, signature: str | None = None) -> Job:
        """Run an ended job again: every file that is not COMPLETED (or, errors_only, its ERROR files; or,
        with a signature, the ERROR files of that error group, as `spotbot errors` shows them).

        Ended files (ERROR, CANCELLED) and files no unfinished chunk holds go to new chunks; files
        still in an unfinished chunk (a job FAILED before its workers ran) are worked where they are.
        """
        job = self.store.jobs.check_retry(job_id)
        bot = self.store.bots.get(job.bot)
        self.launcher.check(bot)
        self.endpoints.check(bot)
        statuses = [FileStatus.ERROR.value]
        if not errors_only and signature is None:
            statuses += [FileStatus.CANCELLED.value, FileStatus.NOT_STARTED.value, FileStatus.PROCESSING.value]
        count = workers or job.workers_requested
        group = [{"term": {"error_signature": signature}}] if signature is not None else []
        wanted = self.store.count("files", {"bool": {"filter": [{"term": {"job_id": job_id}},
                                                                {"terms": {"status": statuses}}, *group]}})
        size = chunk_size_for(wanted, count, self.settings.chunk_size)
        reopened, batch, chunk_status = 0, [], {}
        for claim in self.store.files.matching(job_id, statuses, signature=signature):
            batch.append(claim)
            if len(batch) == size:
                reopened += self._reopen(job_id, batch, count, chunk_status)
                batch = []
        reopened += self._reopen(job_id, batch, count, chunk_status)
        if not reopened and signature is not None:
            raise NotFound(f"job {job_id} has no ERROR file with the error signature {signature!r}; "
                           f"`spotbot errors {job_id}` lists them", field="--signature")
        if not reopened and not self.store.chunks.unfinished(job_id):
            return job
        current = self.store.jobs.get(job_id)
        job = self.store.jobs.retry(job_id, reopened=reopened, statuses=statuses, chunks=current.chunks,
                                    workers=count, concurrency=concurrency or current.concurrency,
                                    signature=signature)
        return self._start(job, bot, count)

    def _reopen(self, job_id: str, claims: list[Claim], workers: int, chunk_status: dict[str, ChunkStatus]) -> int:
        """One new chunk for those of these files no unfinished chunk holds, recorded as the scan records."""
        unknown = [cid for cid in {c.task.chunk_id for c in claims} if cid not in chunk_status]
        for cid, (chunk, _, _) in self.store.chunks.get(unknown).items():
            chunk_status[cid] = chunk.status
        movable = [c for c in claims
                   if c.task.status.terminal or chunk_status.get(c.task.chunk_id, ChunkStatus.DONE) == ChunkStatus.DONE]
        if not movable:
            return 0
        self._now_current(movable)
        return self.store.move(job_id, movable, workers=workers, tag=f"r{secrets.token_hex(2)}-", reopen=True)

    def _now_current(self, claims: list[Claim]) -> None:
        """Retried files name their objects as they are now (a HEAD each, RETRY_HEADS at once), so a retry works
        inputs fixed since the job recorded them, as a new job would; and then, as any job, exactly those versions."""
        pinned = [claim for claim in claims if claim.task.etag or claim.task.version_id]
        with ThreadPoolExecutor(RETRY_HEADS) as pool:
            found = list(pool.map(lambda claim: self.storage.version(claim.task.bucket, claim.task.file_key), pinned))
        for claim, obj in zip(pinned, found):
            if obj is not None:  # (one deleted since keeps its version: reading it says so)
                claim.task.etag, claim.task.version_id, claim.task.size = obj.etag, obj.version_id, obj.size
                claim.task.modified_at = obj.modified_ms
