"""The scheduler: submit a job (scan + record), start its endpoints and workers, supervise, finalize."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from typing import Callable, Iterator
from urllib.parse import urlsplit

from .endpoints import EndpointManager
from .errors import ConfigError, SpotbotError, TaskError
from .launchers import Launcher, WorkerSpec, launcher
from .models import JOB_ID_PATTERN, BotConfig, Chunk, FileTask, Job, JobStatus, Worker, WorkerState, now_ms
from .settings import Settings
from .storage import S3Location, Storage, has_suffix, parse_uri
from .store import Store

CHUNKS_PER_WRITE = 10


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
        count = workers or self.settings.workers

        job, created = self.store.jobs.create(Job(
            job_id=job_id or new_job_id(bot.name), bot=bot.name, input_uri=source.uri, output_uri=dest.uri,
            workers_requested=count,
        ))
        if not created and (job.bot, job.input_uri, job.output_uri) != (bot.name, source.uri, dest.uri):
            raise ConfigError(
                f"job {job.job_id!r} exists with bot {job.bot!r}, input {job.input_uri}, output {job.output_uri}; "
                "choose another --job-id", field="--job-id",
            )
        if job.status == JobStatus.SCANNING:
            self.scan(job, bot, source, dest, on_scan=on_scan)
            job = self.store.jobs.get(job.job_id)
        if job.status.terminal:
            return job
        if job.total == 0:
            return self.store.jobs.finalize(job.job_id)
        if not created and self.alive_workers(job):
            return job  # already being worked: a resubmit adds nothing
        try:
            self.endpoints.ensure(bot)
        except SpotbotError as exc:
            self.fail(job.job_id, f"endpoint: {exc}")
            raise
        return self.launch(job, bot, count)

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
                        self._record(pending)
                        pending = []
                        if on_scan:
                            on_scan(total)
        if batch:
            pending.append(self._chunk(job, bot, source.bucket, seq, batch))
            seq += 1
        self._record(pending)
        if on_scan:
            on_scan(total)

        def running(current: Job) -> Job | None:
            if current.status != JobStatus.SCANNING:
                return None
            current.status, current.total, current.chunks, current.running_at = JobStatus.RUNNING, total, seq, now_ms()
            return current

        self.store.jobs.change(job.job_id, running)
        return total

    def _chunk(self, job: Job, bot: BotConfig, bucket: str, seq: int, batch: list[tuple[str, int]]):
        ids = [FileTask.doc_id(job.job_id, bucket, key) for key, _ in batch]
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
        chunk = Chunk(chunk_id=f"{job.job_id}-{seq:06d}-{digest}", job_id=job.job_id, seq=seq,
                      batch_id=seq % job.workers_requested, file_ids=ids)
        files = [FileTask(job_id=job.job_id, bot=bot.name, bucket=bucket, file_key=key, chunk_id=chunk.chunk_id,
                          batch_id=chunk.batch_id, size=size) for key, size in batch]
        return chunk, files

    def _record(self, pending: list[tuple[Chunk, list[FileTask]]]) -> None:
        if not pending:
            return
        new_chunks = self.store.chunks.record(chunk for chunk, _ in pending)
        created = set(self.store.files.record(task for _, files in pending for task in files))
        for chunk, files in pending:
            written = new_chunks.get(chunk.chunk_id)
            owns_any = any(FileTask.doc_id(t.job_id, t.bucket, t.file_key) in created for t in files)
            if written is not None and not owns_any:
                self.store.chunks.close(chunk, *written)  # all its files belong to an earlier scan's chunks

    # --- workers ------------------------------------------------------------------------------

    def launch(self, job: Job, bot: BotConfig, count: int) -> Job:
        specs = [
            WorkerSpec(job.job_id, bot, f"w{batch_id}-{secrets.token_hex(3)}", batch_id)
            for batch_id in range(count)
        ]
        for spec in specs:
            spec.environment = self.worker_environment(job, bot, spec)
        started = [self.launcher.launch(spec) for spec in specs]
        return self._record_workers(job.job_id, started)

    def relaunch(self, job: Job, bot: BotConfig, worker: Worker) -> Worker:
        spec = WorkerSpec(job.job_id, bot, f"w{worker.batch_id}-{secrets.token_hex(3)}", worker.batch_id)
        spec.environment = self.worker_environment(job, bot, spec)
        started = self.launcher.launch(spec)
        self._record_workers(job.job_id, [started])
        return started

    def _record_workers(self, job_id: str, workers: list[Worker]) -> Job:
        def add(job: Job) -> Job:
            for worker in workers:
                job.workers[worker.id] = worker
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

    def supervise(self, job_id: str, *, relaunch_budget: int | None = None) -> Iterator[Job]:
        """Yield the job every poll until it ends; records worker exits and replaces workers that died early."""
        if relaunch_budget is None:
            # enough for every worker to die twice and for a poison file to kill max_attempts more
            relaunch_budget = 2 * self.store.jobs.get(job_id).workers_requested + self.settings.max_attempts + 1
        budget = relaunch_budget
        while True:
            job = self.store.jobs.get(job_id)
            if job.status.terminal:
                yield job
                return
            ended = []
            for worker in job.workers.values():
                if worker.state not in (WorkerState.STARTING, WorkerState.RUNNING):
                    continue
                state, code = self.launcher.poll(worker)
                if state not in (WorkerState.STARTING, WorkerState.RUNNING):
                    ended.append(worker.model_copy(update={"state": state, "exit_code": code, "ended_at": now_ms(),
                                                           "reason": "" if code == 0 else f"exit code {code}"}))
            if ended:
                job = self._record_workers(job_id, ended)
                misconfigured = [w for w in ended if w.exit_code == TaskError.exit_code]
                if misconfigured:
                    # a task.py that cannot load fails the same way on every relaunch: stop here
                    yield self.fail(job_id, f"worker {misconfigured[0].id} could not start its task: "
                                            f"{self.launcher.last_words(misconfigured[0])}")
                    return
            if job.status == JobStatus.RUNNING and not self.alive_workers(job):
                job = self.settle(job_id)
                if not job.status.terminal:
                    if budget <= 0:
                        yield self.fail(job_id, "every worker died and the relaunch budget is spent; see `spotbot logs`")
                        return
                    bot = self.store.bots.get(job.bot)
                    for worker in ended or list(job.workers.values())[-1:]:
                        if budget > 0:
                            self.relaunch(job, bot, worker)
                            budget -= 1
                    continue
            yield job
            if job.status.terminal:
                return
            time.sleep(self.settings.poll_seconds)
