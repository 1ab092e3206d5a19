"""Job documents: every change of a job's state happens here, through the verbs below.

A job moves SCANNING -> RUNNING -> COMPLETED | COMPLETED_WITH_ERRORS, or to FAILED or
CANCELLED from either; `retry` takes an ended job back to RUNNING. Each verb checks the
state it leaves and raises WrongState (the same message for the CLI and the API) when it
does not apply. Every verb writes at once, by a conditional read-modify-write (`change`):
nothing about a job is staged.

A job's counts per status are a sum over its chunks while it runs (store/chunks.py); when
the last chunk is done, `finalize` checks them once against an aggregation over its files
and will not end a job while any of its files is still NOT_STARTED or PROCESSING.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Iterable

from ..errors import Conflict, Contention, NotFound, WrongState
from ..models import ChunkStatus, FileStatus, Job, JobStatus, Worker, WorkerState, now_ms
from .chunks import counts_of
from .documents import DocumentStore

CHANGE_TRIES = 50
REPAIR_CHUNK = 100


class JobStore(DocumentStore):
    kind = "jobs"

    def create(self, job: Job) -> tuple[Job, bool]:
        """Record a new job; when the id exists, return the stored one and False."""
        try:
            self.engine.create(self._index, job.job_id, job.model_dump(mode="json"))
            return job, True
        except Conflict:
            return self.get(job.job_id), False

    def get(self, job_id: str) -> Job:
        return self._read(job_id)[0]

    def _read(self, job_id: str) -> tuple[Job, int, int]:
        doc = self.engine.get(self._index, job_id)
        if doc is None:
            raise NotFound(f"no job {job_id!r}; `spotbot jobs list` shows the jobs", job_id=job_id)
        return Job.model_validate(doc["_source"]), doc["_seq_no"], doc["_primary_term"]

    def change(self, job_id: str, mutate: Callable[[Job], Job | None]) -> Job:
        """Apply mutate to the current job and write it back only if nobody wrote in between.

        mutate returns None when there is nothing to change (for example, another process already
        finalized the job); the current job is returned then. Conflicts are tried again after a
        short, growing, jittered pause, so writers of a busy job take turns instead of colliding.
        """
        delay = 0.005
        for _ in range(CHANGE_TRIES):
            job, seq_no, primary_term = self._read(job_id)
            changed = mutate(job.model_copy(deep=True))
            if changed is None:
                return job
            if self._write_if(job_id, changed.model_dump(mode="json"), seq_no, primary_term) is not None:
                return changed
            time.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 -- jitter of a backoff, not a secret
            delay = min(0.5, delay * 2)
        raise Contention(f"job {job_id!r} kept changing under us; try again", job_id=job_id)

    # --- state verbs -----------------------------------------------------------------------------

    def start(self, job_id: str, *, total: int, chunks: int) -> Job:
        """The scan is done: SCANNING -> RUNNING with its totals (a cancelled scan stays CANCELLED)."""
        def running(job: Job) -> Job | None:
            if job.status != JobStatus.SCANNING:
                return None
            job.status, job.total, job.chunks, job.running_at = JobStatus.RUNNING, total, chunks, now_ms()
            return job

        return self.change(job_id, running)

    def fail(self, job_id: str, error: str) -> Job:
        """End a job that cannot go on (its endpoint, its workers): FAILED with why; an ended job stays as it is."""
        def failed(job: Job) -> Job | None:
            if job.status.terminal:
                return None
            job.status, job.error, job.finished_at = JobStatus.FAILED, error[:4000], now_ms()
            job.note(f"failed: {error[:200]}")
            return job

        return self.change(job_id, failed)

    def cancel(self, job_id: str) -> Job:
        """SCANNING or RUNNING -> CANCELLED (cancelling a cancelled job again is no error)."""
        def cancelled(job: Job) -> Job | None:
            if job.status == JobStatus.CANCELLED:
                return None
            if job.status.terminal:
                raise WrongState(f"job {job_id} has already ended {job.status.value}; there is nothing to cancel",
                                 job_id=job_id)
            job.status, job.finished_at = JobStatus.CANCELLED, now_ms()
            job.note("cancelled")
            return job

        return self.change(job_id, cancelled)

    def close(self, job_id: str) -> Job:
        """A long-running job takes no more files; it ends once those it has are worked (closing twice is no error)."""
        def closed(job: Job) -> Job | None:
            if not job.accepting:
                if job.closed_at is not None:
                    return None
                raise WrongState(f"job {job_id} is not a long-running job (watch, the image API); "
                                 "`spotbot cancel` stops it", job_id=job_id)
            job.accepting, job.closed_at = False, now_ms()
            job.note("closed: takes no more files")
            return job

        return self.change(job_id, closed)

    def retry(self, job_id: str, *, reopened: int, statuses: list[str], chunks: int, workers: int,
              concurrency: int, signature: str | None = None) -> Job:
        """An ended job runs again: RUNNING, its counts taken afresh from its chunks."""
        def rerun(job: Job) -> Job | None:
            if not job.status.terminal:
                raise WrongState(f"job {job_id} is {job.status.value}; retry runs the files of an ended job again",
                                 job_id=job_id)
            job.status, job.finished_at, job.counts, job.error = JobStatus.RUNNING, None, {}, ""
            job.retries, job.chunks, job.workers_requested, job.concurrency = job.retries + 1, chunks, workers, concurrency
            group = f", error {signature!r}" if signature is not None else ""
            job.note(f"retry {job.retries}: {reopened} file(s) re-opened ({', '.join(statuses)}{group})")
            return job

        return self.change(job_id, rerun)

    def check_retry(self, job_id: str) -> Job:
        """The job, if retry may run it again (it has ended); WrongState otherwise."""
        job = self.get(job_id)
        if not job.status.terminal:
            raise WrongState(f"job {job_id} is {job.status.value}; retry runs the files of an ended job again",
                             job_id=job_id)
        return job

    def finalize(self, job_id: str) -> Job:
        """End the job exactly once, when its last chunk is done and its files agree; a no-op otherwise.

        Its counts are the sums over its chunks, exact once every chunk is DONE: each finishing
        worker wrote its chunk's counts in the same request as its files. What a chunk cannot know
        of is a file written to it after it was done, and only a chunk claimed while PENDING (its
        writer slower than the grace) can get one: the files of those chunks are read again here,
        by id, and an unfinished one is given a chunk of its own, so the job goes on until it is
        worked. Nothing here searches or aggregates the files index (at a million files, that
        would hold the embedded server for seconds).
        """
        job = self.get(job_id)
        if job.status.terminal or job.status == JobStatus.SCANNING or job.accepting or job.adds_under_way():
            return job  # cheap answer first: idle workers of a long-running job ask this every poll
        if self.store.chunks.unfinished(job_id):
            return job
        if self._repair(job, self._late_files(job_id)):
            return self.get(job_id)
        counts = self.counts(job_id)
        if counts[FileStatus.NOT_STARTED.value] or counts[FileStatus.PROCESSING.value]:
            # a DONE chunk counting unfinished files: only lost writes (a killed server) lead here
            self._repair(job, self._unfinished_files(job_id))
            return self.get(job_id)

        def end(job: Job) -> Job | None:
            if job.status.terminal or job.status == JobStatus.SCANNING:
                return None
            if job.accepting or job.adds_under_way():
                return None  # a long-running job ends only once closed, and no add may still be writing
            # an adder that died between recording its files and counting them leaves total short
            job.total = max(job.total, sum(counts.values()))
            if counts[FileStatus.ERROR.value]:
                job.status = JobStatus.COMPLETED_WITH_ERRORS
            else:
                job.status = JobStatus.COMPLETED
            job.counts = counts
            job.finished_at = now_ms()
            return job

        return self.change(job_id, end)

    def _late_files(self, job_id: str) -> list:
        """Unfinished files of the job's chunks that were claimed while PENDING (read by id)."""
        late = []
        for chunk in self.store.chunks.adopted(job_id):
            own, _ = self.store.files.of_chunk(chunk)
            late += [claim for claim in own if not claim.task.status.terminal]
        return late

    def _unfinished_files(self, job_id: str) -> list:
        """Unfinished files of the job that no unfinished chunk holds (a search: the last resort)."""
        stray = list(self.store.files.matching(job_id, [FileStatus.NOT_STARTED.value, FileStatus.PROCESSING.value]))
        chunks = self.store.chunks.get(sorted({claim.task.chunk_id for claim in stray}))
        return [claim for claim in stray
                if claim.task.chunk_id not in chunks or chunks[claim.task.chunk_id][0].status == ChunkStatus.DONE]

    def _repair(self, job: Job, stray: list) -> int:
        """Give unfinished files that no unfinished chunk holds a chunk of their own; returns how many moved."""
        moved = sum(self.store.move(job.job_id, stray[start:start + REPAIR_CHUNK], workers=job.workers_requested,
                                    tag="fix-", reopen=False) for start in range(0, len(stray), REPAIR_CHUNK))
        if moved:
            self.note(job.job_id, f"{moved} unfinished file(s) that no chunk held were given a new chunk")
        return moved

    def recount(self, job_id: str) -> Job:
        """Store fresh counts on an ended job (after a cancel drained its chunks), from its chunks."""
        self.store.refresh("chunks")
        counts = self.counts(job_id)

        def update(job: Job) -> Job | None:
            if not job.status.terminal or job.counts == counts:
                return None
            job.counts = counts
            return job

        return self.change(job_id, update)

    # --- other changes -----------------------------------------------------------------------------

    def note(self, job_id: str, event: str) -> Job:
        """Append an event (a relaunch, a restart) to the job's record."""
        def add(job: Job) -> Job:
            job.note(event)
            return job

        return self.change(job_id, add)

    def record_workers(self, job_id: str, workers: list[Worker], note: str = "") -> Job:
        """Put launched (or ended) workers on the job's record."""
        def add(job: Job) -> Job:
            for worker in workers:
                job.workers[worker.id] = worker
            if note:
                job.note(note)
            return job

        return self.change(job_id, add)

    def worker_state(self, job_id: str, worker_id: str, state: WorkerState, *, pid: int,
                     exit_code: int | None = None, reason: str = "", interrupted: bool = False) -> Job:
        """A worker says how it is (RUNNING at start, EXITED at its end); a worker started by hand has no record.

        interrupted: it was stopped from outside while the job ran (SIGTERM, a Spot notice): counted on the job.
        """
        def mark(job: Job) -> Job | None:
            worker = job.workers.get(worker_id)
            if worker is None:
                return None
            worker.state, worker.exit_code, worker.pid = state, exit_code, pid
            if reason:
                worker.reason = reason
            if interrupted and not worker.interrupted:
                worker.interrupted = True
                job.note(f"worker {worker_id} interrupted: {reason}")
            if state != WorkerState.RUNNING:
                worker.ended_at = now_ms()
            return job

        return self.change(job_id, mark)

    def reserve_add(self, job_id: str, token: str, *, chunks: int, window_seconds: float) -> Job:
        """An add_files call begins: the job cannot end while it may still write, and its chunk numbers are reserved."""
        def begin(job: Job) -> Job:
            if not job.accepting or job.status.terminal:
                raise WrongState(f"job {job_id} no longer takes files (it is {job.status.value}"
                                 f"{', closed' if not job.accepting else ''})", job_id=job_id)
            job.adding = {t: e for t, e in job.adding.items() if e > now_ms()}
            job.adding[token] = now_ms() + int(window_seconds * 1000)
            job.chunks += chunks
            return job

        return self.change(job_id, begin)

    def added(self, job_id: str, token: str, new_files: int) -> Job:
        """An add_files call is done: its new files are counted and the job may end again."""
        def counted(job: Job) -> Job:
            job.adding.pop(token, None)
            job.total += new_files
            return job

        return self.change(job_id, counted)

    def reserve_chunks(self, job_id: str, chunks: int) -> int:
        """Reserve chunk numbers for chunks made after the scan (retry, repair); returns the first."""
        def grow(job: Job) -> Job:
            job.chunks += chunks
            return job

        return self.change(job_id, grow).chunks - chunks

    def save_cursor(self, job_id: str, **changes) -> Job:
        """Keep a long-running job's own progress (the watcher's listing mark) across restarts."""
        def save(job: Job) -> Job:
            job.cursor = {**job.cursor, **changes}
            return job

        return self.change(job_id, save)

    # --- reading -------------------------------------------------------------------------------------

    def list(self, limit: int | None = None) -> list[Job]:
        """Jobs, newest first: every one, or the newest `limit`."""
        return list(self.each(limit=limit))

    def each(self, *, limit: int | None = None, status: JobStatus | None = None) -> Iterable[Job]:
        """Jobs newest first, page by page (search_after), optionally of one status."""
        self.store.refresh("jobs")
        query = {"term": {"status": status.value}} if status else {"match_all": {}}
        for n, hit in enumerate(self._all({"query": query}, [{"created_at": "desc"}, {"job_id": "asc"}])):
            if limit is not None and n >= limit:
                return
            yield Job.model_validate(hit["_source"])

    def counts(self, job_id: str) -> dict[str, int]:
        """Files per status of a job: the sums over its chunks (cheap however large the job)."""
        return self.progress(job_id)[0]

    def progress(self, job_id: str) -> tuple[dict[str, int], int, int]:
        """(files per status, files being worked now, files claimed by a worker but not begun) of a job."""
        return self.store.chunks.sums(job_id)

    def shown(self, job: Job) -> tuple[dict[str, int], int | None]:
        """What to show of a job: its files per status and those being worked now (None once it ended).

        An ended job's counts are final once it is finalized; one cancelled a moment ago has none yet and is
        summed over its chunks, as a running one is.
        """
        if job.status.terminal and job.counts:
            return job.counts, None
        counts, in_flight, _ = self.progress(job.job_id)
        return counts, in_flight


__all__ = ["JobStore", "counts_of"]
