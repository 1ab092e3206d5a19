"""Job documents: created once per job id, changed only by conditional read-modify-write."""

from __future__ import annotations

from typing import Callable

from ..errors import Conflict, NotFound
from ..models import FileStatus, Job, JobStatus, now_ms
from .documents import DocumentStore


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
        finalized the job); the current job is returned then.
        """
        for _ in range(50):
            job, seq_no, primary_term = self._read(job_id)
            changed = mutate(job.model_copy(deep=True))
            if changed is None:
                return job
            if self._write_if(job_id, changed.model_dump(mode="json"), seq_no, primary_term) is not None:
                return changed
        raise RuntimeError(f"job {job_id!r} kept changing under us; try again")

    def note(self, job_id: str, event: str) -> Job:
        """Append an event (a relaunch, a restart) to the job's record."""

        def add(job: Job) -> Job:
            job.note(event)
            return job

        return self.change(job_id, add)

    def list(self, limit: int = 1000) -> list[Job]:
        self.store.refresh("jobs")
        hits = self._search({"size": limit, "sort": [{"created_at": "desc"}]})
        return [Job.model_validate(h["_source"]) for h in hits]

    def counts(self, job_id: str) -> dict[str, int]:
        """Files per status, from an aggregation over the job's files (after a refresh)."""
        self.store.refresh("files")
        result = self.engine.search(self.store.index("files"), {
            "size": 0,
            "query": {"term": {"job_id": job_id}},
            "aggs": {"status": {"terms": {"field": "status", "size": 20}}},
        })
        counts = {status.value: 0 for status in FileStatus}
        for bucket in result["aggregations"]["status"]["buckets"]:
            counts[bucket["key"]] = bucket["doc_count"]
        return counts

    def finalize(self, job_id: str) -> Job:
        """End the job exactly once, with counts from its files; a no-op when it has ended."""
        job = self.get(job_id)
        if job.status.terminal or job.status == JobStatus.SCANNING or job.accepting or job.adds_under_way():
            return job  # cheap answer first: idle workers of a long-running job ask this every poll
        counts = self.counts(job_id)

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

    def recount(self, job_id: str) -> Job:
        """Store fresh counts on an ended job (after a cancel drained its chunks)."""
        counts = self.counts(job_id)

        def update(job: Job) -> Job | None:
            if not job.status.terminal or job.counts == counts:
                return None
            job.counts = counts
            return job

        return self.change(job_id, update)
