"""The scheduler: submit a job (scan + record), start its endpoints and workers, supervise, finalize."""

from __future__ import annotations

import datetime as dt
import hashlib
import queue
import secrets
import threading
import time
from typing import Callable, Iterable
from urllib.parse import urlsplit

from .endpoints import EndpointManager
from .errors import ConfigError, NotFound, SpotbotError
from .launchers import Launcher, WorkerSpec, launcher
from .models import JOB_ID_PATTERN, BotConfig, Chunk, FileStatus, FileTask, Job, JobStatus, Worker, WorkerState, now_ms
from .settings import Settings
from .storage import S3Location, Storage, has_suffix, parse_uri
from .store import Store
from .store.files import Claim

CHUNKS_PER_WRITE = 10
# how long an add_files call may take before the job may end without it (see add_files)
ADD_WINDOW_SECONDS = 60.0


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


def new_chunk(job_id: str, ids: list[str], seq: int, workers: int, tag: str = "") -> Chunk:
    """A chunk whose id derives from its files, so recording the same run of files twice gives one chunk."""
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    return Chunk(chunk_id=f"{job_id}-{tag}{seq:06d}-{digest}", job_id=job_id, seq=seq, batch_id=seq % workers, file_ids=ids)


def new_job_id(bot: str) -> str:
    return f"{bot}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


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
               job_id: str | None = None, on_scan: Callable[[int], None] | None = None) -> Job:
        """Record a job and its files, start its endpoints and workers; idempotent per job id."""
        bot, source, dest, count = self._prepare(bot_name, input_uri, output_uri, workers, job_id)
        job, created = self._create(Job(job_id=job_id or new_job_id(bot.name), bot=bot.name, input_uri=source.uri,
                                        output_uri=dest.uri, workers_requested=count))
        if job.accepting:
            raise ConfigError(f"job {job.job_id!r} is a long-running job that takes files as they come; "
                              "choose another --job-id", field="--job-id")
        if job.status == JobStatus.SCANNING:
            self.scan(job, bot, source, dest, on_scan=on_scan)
            job = self.store.jobs.get(job.job_id)
        if job.status.terminal:
            return job
        if job.total == 0:
            return self.store.jobs.finalize(job.job_id)
        if not created and self.alive_workers(job):
            return job  # already being worked: a resubmit adds nothing
        return self._start(job, bot, count)

    def create_job(self, bot_name: str, input_uri: str, output_uri: str, *, workers: int | None = None,
                   job_id: str | None = None) -> Job:
        """Check a job's arguments and record it (SCANNING) without scanning; submit(..., job_id=its id) does the rest.

        For callers that must answer before the scan (the HTTP API): bad input fails here, at once.
        """
        bot, source, dest, count = self._prepare(bot_name, input_uri, output_uri, workers, job_id)
        job, _ = self._create(Job(job_id=job_id or new_job_id(bot.name), bot=bot.name, input_uri=source.uri,
                                  output_uri=dest.uri, workers_requested=count))
        if job.accepting:
            raise ConfigError(f"job {job.job_id!r} is a long-running job that takes files as they come; "
                              "choose another --job-id", field="--job-id")
        return job

    def _prepare(self, bot_name: str, input_uri: str, output_uri: str, workers: int | None,
                 job_id: str | None) -> tuple[BotConfig, S3Location, S3Location, int]:
        """Check a job's arguments before anything is stored: the bot, the URIs, the buckets, the backends."""
        bot = self.store.bots.get(bot_name)
        source = parse_uri(input_uri, field="--input")
        dest = parse_uri(output_uri, field="--output")
        if dest.bucket == source.bucket and dest.prefix.rstrip("/") == source.prefix.rstrip("/"):
            raise ConfigError("must differ from --input: outputs would be mixed with the inputs", field="--output")
        if job_id is not None and not JOB_ID_PATTERN.match(job_id):
            raise ConfigError("must start with a letter or digit and hold only letters, digits, '.', '_' or '-'", field="--job-id")
        self.launcher.check(bot)
        self.endpoints.check(bot)
        self.storage.check_bucket(source.bucket, field="--input")
        self.storage.check_bucket(dest.bucket, field="--output")
        return bot, source, dest, workers or self.settings.workers

    def _create(self, job: Job) -> tuple[Job, bool]:
        """Record the job; an existing job of that id is returned when it is the same bot over the same prefixes."""
        stored, created = self.store.jobs.create(job)
        if not created and (stored.bot, stored.input_uri, stored.output_uri) != (job.bot, job.input_uri, job.output_uri):
            raise ConfigError(
                f"job {stored.job_id!r} exists with bot {stored.bot!r}, input {stored.input_uri}, output "
                f"{stored.output_uri}; choose another --job-id", field="--job-id",
            )
        return stored, created

    # --- long-running jobs ----------------------------------------------------------------------

    def open(self, bot_name: str, input_uri: str, output_uri: str, *, workers: int | None = None,
             job_id: str | None = None) -> Job:
        """Start a long-running job: no scan; files come through add_files until close. Idempotent per job id.

        Its workers stay up while it has no work, so a new file is picked up within a poll interval.
        """
        bot, source, dest, count = self._prepare(bot_name, input_uri, output_uri, workers, job_id)
        job, created = self._create(Job(job_id=job_id or new_job_id(bot.name), bot=bot.name, input_uri=source.uri,
                                        output_uri=dest.uri, workers_requested=count, accepting=True,
                                        status=JobStatus.RUNNING, running_at=now_ms()))
        if not job.accepting:
            raise ConfigError(f"job {job.job_id!r} exists and is not a long-running job; choose another id",
                              field="--job-id")
        if not job.status.terminal and (created or not self.alive_workers(job)):
            job = self._start(job, bot, count)
        return job

    def add_files(self, job_id: str, objects: Iterable[tuple[str, int]]) -> list[str]:
        """Record new files (key, size) of the job's input bucket in a long-running job; returns the keys that are new.

        A key recorded before is not recorded again (file ids are deterministic). The job cannot
        end while this writes: a token with an expiry on the job holds it open until the files
        are counted, or until the token expires if this process dies half-way.
        """
        objects = list(objects)
        if not objects:
            return []
        token = secrets.token_hex(6)
        chunk_count = -(-len(objects) // self.settings.chunk_size)

        def begin(job: Job) -> Job | None:
            if not job.accepting or job.status.terminal:
                raise ConfigError(f"job {job_id} no longer takes files (it is {job.status.value}"
                                  f"{', closed' if not job.accepting else ''})", field="job")
            job.adding = {t: e for t, e in job.adding.items() if e > now_ms()}
            job.adding[token] = now_ms() + int(ADD_WINDOW_SECONDS * 1000)
            job.chunks += chunk_count  # this call's chunk numbers, reserved
            return job

        job = self.store.jobs.get(job_id)
        source = parse_uri(job.input_uri, field="input")
        outside = next((key for key, _ in objects if not key.startswith(source.prefix)), None)
        if outside is not None:
            raise ConfigError(f"{outside!r} is not under the job's input {source.uri}", field="key")
        job = self.store.jobs.change(job_id, begin)
        bot = self.store.bots.get(job.bot)
        first_seq = job.chunks - chunk_count
        pending = [
            self._chunk(job, bot, source.bucket, first_seq + i, objects[i * self.settings.chunk_size:(i + 1) * self.settings.chunk_size])
            for i in range(chunk_count)
        ]
        created = self._record(pending)
        new_ids = set(created)
        new_keys = [key for key, _ in objects if FileTask.doc_id(job_id, source.bucket, key) in new_ids]

        def counted(current: Job) -> Job:
            current.adding.pop(token, None)
            current.total += len(new_keys)
            return current

        self.store.jobs.change(job_id, counted)
        return new_keys

    def close(self, job_id: str) -> Job:
        """Stop a long-running job taking files; it ends once the files it has are worked."""
        def closed(job: Job) -> Job | None:
            if not job.accepting:
                return None
            job.accepting = False
            job.note("closed: takes no more files")
            return job

        self.store.jobs.change(job_id, closed)
        return self.settle(job_id)

    # --- scan -----------------------------------------------------------------------------------

    def scan(self, job: Job, bot: BotConfig, source: S3Location, dest: S3Location,
             on_scan: Callable[[int], None] | None = None) -> int:
        """Stream the listing into chunk and file documents; safe to run again after a crash.

        Chunk ids are derived from their files, and each chunk is written before its files, so
        every file document points at a chunk that exists; a file that exists already (an earlier
        scan of the same job) keeps its chunk and is not recorded twice.
        """
        exclude = dest if source.contains(dest) else None
        total = seq = 0
        batch: list[tuple[str, int]] = []
        pending: list[tuple[Chunk, list[FileTask]]] = []
        recorder = _Recorder(self._record, on_scan)  # records while the listing goes on
        try:
            for page in self.storage.pages(source):
                for key, size in page:
                    if key.endswith("/") or not has_suffix(key, bot.file_types):
                        continue
                    if exclude and key.startswith(exclude.prefix):
                        continue  # our own outputs, when the output prefix lies inside the input prefix
                    total += 1
                    batch.append((key, size))
                    if len(batch) == self.settings.chunk_size:
                        pending.append(self._chunk(job, bot, source.bucket, seq, batch))
                        seq, batch = seq + 1, []
                        if len(pending) == CHUNKS_PER_WRITE:
                            recorder.put(pending, total)
                            pending = []
            if batch:
                pending.append(self._chunk(job, bot, source.bucket, seq, batch))
                seq += 1
            recorder.put(pending, total)
        except BaseException:
            recorder.close(quietly=True)  # the scan's own failure is the one to report
            raise
        recorder.close()

        def running(current: Job) -> Job | None:
            if current.status != JobStatus.SCANNING:
                return None
            current.status, current.total, current.chunks, current.running_at = JobStatus.RUNNING, total, seq, now_ms()
            return current

        self.store.jobs.change(job.job_id, running)
        return total

    def _chunk(self, job: Job, bot: BotConfig, bucket: str, seq: int, batch: list[tuple[str, int]]):
        ids = [FileTask.doc_id(job.job_id, bucket, key) for key, _ in batch]
        chunk = new_chunk(job.job_id, ids, seq, job.workers_requested)
        files = [FileTask(job_id=job.job_id, bot=bot.name, bucket=bucket, file_key=key, chunk_id=chunk.chunk_id,
                          batch_id=chunk.batch_id, size=size) for key, size in batch]
        return chunk, files

    def _record(self, pending: list[tuple[Chunk, list[FileTask]]]) -> list[str]:
        """Write chunks, then their files; returns the ids of the files that are new."""
        if not pending:
            return []
        new_chunks = self.store.chunks.record(chunk for chunk, _ in pending)
        created = set(self.store.files.record(task for _, files in pending for task in files))
        for chunk, files in pending:
            written = new_chunks.get(chunk.chunk_id)
            owns_any = any(FileTask.doc_id(t.job_id, t.bucket, t.file_key) in created for t in files)
            if written is not None and not owns_any and not self.store.files.any_in(chunk):
                # every file it lists was recorded earlier, in other chunks: nothing is left for it to do.
                # (A racing submitter may have written this chunk's own files first: then it keeps them.)
                self.store.chunks.close(chunk, *written)
        return list(created)

    # --- workers ------------------------------------------------------------------------------

    def _start(self, job: Job, bot: BotConfig, count: int) -> Job:
        """Make sure the bot's endpoints answer, then launch its workers; an endpoint failure fails the job."""
        try:
            self.endpoints.ensure(bot)
        except SpotbotError as exc:
            self.fail(job.job_id, f"endpoint: {exc}")
            raise
        return self.launch(job, bot, count)

    def launch(self, job: Job, bot: BotConfig, count: int) -> Job:
        specs = [
            WorkerSpec(job.job_id, bot, f"w{batch_id}-{secrets.token_hex(3)}", batch_id)
            for batch_id in range(count)
        ]
        for spec in specs:
            spec.environment = self.worker_environment(job, bot, spec)
        launch_many = getattr(self.launcher, "launch_many", None)  # one request for them all (a Batch array job)
        started = launch_many(specs) if launch_many else [self.launcher.launch(spec) for spec in specs]
        return self.record_workers(job.job_id, started)

    def relaunch(self, job: Job, bot: BotConfig, worker: Worker, reason: str) -> Worker:
        """Start a worker in the place (batch) of one that ended, recording why on the job."""
        spec = WorkerSpec(job.job_id, bot, f"w{worker.batch_id}-{secrets.token_hex(3)}", worker.batch_id)
        spec.environment = self.worker_environment(job, bot, spec)
        started = self.launcher.launch(spec)
        self.record_workers(job.job_id, [started], note=f"relaunched worker {worker.id} as {started.id}: {reason}")
        return started

    def record_workers(self, job_id: str, workers: list[Worker], note: str = "") -> Job:
        def add(job: Job) -> Job:
            for worker in workers:
                job.workers[worker.id] = worker
            if note:
                job.note(note)
            return job

        return self.store.jobs.change(job_id, add)

    def worker_environment(self, job: Job, bot: BotConfig, spec: WorkerSpec) -> dict[str, str]:
        """The seed's worker contract (region_name, endpoint_name, ...) plus our settings."""
        es = urlsplit(self.settings.require_es())
        dest = parse_uri(job.output_uri, field="output")
        env = self.settings.environment()
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
        })
        return env

    def alive_workers(self, job: Job) -> list[Worker]:
        return [w for w in job.workers.values() if self.launcher.poll(w)[0] in (WorkerState.STARTING, WorkerState.RUNNING)]

    # --- supervise and end --------------------------------------------------------------------

    def settle(self, job_id: str) -> Job:
        """Finalize the job if none of its chunks is left; otherwise return it as it is."""
        job = self.store.jobs.get(job_id)
        if job.status == JobStatus.RUNNING and self.store.chunks.unfinished(job_id) == 0:
            return self.store.jobs.finalize(job_id)
        return job

    def fail(self, job_id: str, error: str) -> Job:
        def failed(job: Job) -> Job | None:
            if job.status.terminal:
                return None
            job.status, job.error, job.finished_at = JobStatus.FAILED, error[:4000], now_ms()
            return job

        return self.store.jobs.change(job_id, failed)

    def cancel(self, job_id: str, *, wait_seconds: float | None = None) -> Job:
        """Stop a job: workers claim nothing more, every open file ends CANCELLED, the job ends CANCELLED.

        Chunks nobody holds are closed here; a worker holding a chunk cancels the rest of it
        itself at its next check (every SPOTBOT_FLUSH_SECONDS). Chunks of dead workers are
        closed once their leases expire, so this waits at most a lease period.
        """
        def cancelled(job: Job) -> Job | None:
            if job.status.terminal:
                return None
            job.status, job.finished_at = JobStatus.CANCELLED, now_ms()
            job.note("cancelled")
            return job

        job = self.store.jobs.change(job_id, cancelled)
        if job.status != JobStatus.CANCELLED:
            return job
        limit = wait_seconds if wait_seconds is not None else self.settings.lease_seconds + 30
        deadline = time.monotonic() + limit
        while self.store.chunks.unfinished(job_id):
            lease = self.store.chunks.claim(job_id, "canceller", -1, self.settings.lease_seconds)
            if lease:
                open_files = self.store.files.open_in(lease.chunk)
                for claim in open_files:
                    self.store.files.cancel(claim)
                self.store.files.write(open_files)
                self.store.chunks.finish(lease)
                continue
            if time.monotonic() > deadline:
                break
            time.sleep(self.settings.poll_seconds)
        return self.store.jobs.recount(job_id)

    def retry(self, job_id: str, *, errors_only: bool = False, workers: int | None = None,
              signature: str | None = None) -> Job:
        """Run an ended job's ERROR (and, unless errors_only, CANCELLED) files again, in the same job.

        With a signature, only the ERROR files of that error group (`spotbot errors`) run again.
        """
        job = self.store.jobs.get(job_id)
        if not job.status.terminal:
            raise ConfigError(f"job {job_id} is {job.status.value}; retry runs the files of an ended job again", field="JOB")
        bot = self.store.bots.get(job.bot)
        self.launcher.check(bot)
        self.endpoints.check(bot)
        statuses = [FileStatus.ERROR.value] + ([] if errors_only or signature is not None else [FileStatus.CANCELLED.value])
        count = workers or job.workers_requested
        round_, seq, reopened = job.retries + 1, job.chunks, 0
        batch: list[Claim] = []
        for claim in self.store.files.matching(job_id, statuses, signature=signature):
            batch.append(claim)
            if len(batch) == self.settings.chunk_size:
                reopened += self._reopen(job, batch, seq, round_, count)
                seq, batch = seq + 1, []
        if batch:
            reopened += self._reopen(job, batch, seq, round_, count)
            seq += 1
        if not reopened:
            if signature is not None:
                raise NotFound(f"job {job_id} has no ERROR file with the error signature {signature!r}; "
                               f"`spotbot errors {job_id}` lists them", field="--signature")
            return job

        def rerun(current: Job) -> Job | None:
            current.status, current.finished_at, current.counts = JobStatus.RUNNING, None, {}
            current.retries, current.chunks = round_, seq
            group = f", error {signature!r}" if signature is not None else ""
            current.note(f"retry {round_}: {reopened} file(s) re-opened ({', '.join(statuses)}{group})")
            return current

        job = self.store.jobs.change(job_id, rerun)
        return self._start(job, bot, count)

    def _reopen(self, job: Job, claims: list[Claim], seq: int, round_: int, count: int) -> int:
        """One new chunk for these files, written before them (as the scan does)."""
        chunk = new_chunk(job.job_id, [claim.id for claim in claims], seq, count, tag=f"r{round_}-")
        self.store.chunks.record([chunk])
        for claim in claims:
            self.store.files.reopen(claim, chunk)
        return len(self.store.files.write(claims))
