"""File documents: every change of a file's status happens here, through the verbs below.

A file moves NOT_STARTED -> PROCESSING -> COMPLETED | ERROR, or to CANCELLED; `reopen` (spotbot
retry, an object overwritten in a watched prefix) makes an ended file NOT_STARTED again in a new
chunk. An incremental job records a file SKIPPED from the start (`reuse`) when its object version
has a COMPLETED result of the same model: it is never worked. Each write is conditional on the
sequence number of our own last read or write of that file, so a worker that lost its chunk to
another can never overwrite a newer state: its write gets a 409, and it reads the file again.
Reads are by id (mget), never by search, so they are always current.

Which verbs write when:
- before anything is written: `reuse` (on a file about to be recorded);
- at once: `record`, `begin_one`, `reopen`, `repair`, and `flush` itself;
- staged (they change the Claim in memory and mark it dirty; the lease holder's next `flush`
  writes every dirty claim of its chunk, with the chunk's new counts, in one bulk request):
  `begin`, `attempt_failed`, `complete`, `fail`, `cancel`, `abandon`.
A file staged PROCESSING and finished before the next flush is written once, finished.

Attempts are counted here only: `begin` and `begin_one` count the attempt that starts,
`attempt_failed` counts the next one or, past max_attempts, ends the file ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..models import Chunk, ChunkStatus, FileStatus, FileTask, LatestResult, now_ms
from ..signatures import signature
from .chunks import Lease, counts_of
from .documents import DocumentStore, Write, bulk, refused

LOST_MESSAGE = "worker lost while processing"
MAX_FLUSH_ROUNDS = 3


@dataclass
class Claim:
    """A file as this worker last read or wrote it, and whether it holds changes not yet written."""

    id: str
    task: FileTask
    seq_no: int
    primary_term: int
    dirty: bool = False


class FileStore(DocumentStore):
    kind = "files"

    @property
    def _index(self) -> str:
        return self.store.target("files")  # searches: every file index; a document's own is store.file_index(id)

    def _mget(self, ids: list[str]) -> list[dict]:
        """Documents by id, in order, from whichever file index holds each (one request)."""
        if not ids:
            return []
        if self.store.file_indices == 1:
            return self.engine.mget(self.store.file_index(ids[0]), ids)
        return self.engine.mget_docs([(self.store.file_index(doc_id), doc_id) for doc_id in ids])

    # --- recording and reading ------------------------------------------------------------------

    def record(self, files: Iterable[FileTask]) -> list[str]:
        """Create file documents in one bulk request; returns the ids that are new (existing ones are kept)."""
        writes = []
        for task in files:
            doc_id = FileTask.doc_id(task.job_id, task.bucket, task.file_key)
            writes.append(Write(self.store.file_index(doc_id), doc_id, task.model_dump(mode="json"), op="create"))
        if not writes:
            return []
        outcomes = bulk(self.store, writes, what="recording files")
        refused(outcomes, what="recording files")
        return [outcome.write.id for outcome in outcomes if outcome.written]

    def reuse(self, task: FileTask, result: LatestResult) -> None:
        """An incremental job's file about to be recorded, whose object version has this COMPLETED result: SKIPPED."""
        task.status = FileStatus.SKIPPED
        task.reused_from = result.job_id
        task.output_uri = result.output_uri
        task.fingerprint = result.fingerprint
        task.completed_at = now_ms()

    def of_chunk(self, chunk: Chunk) -> tuple[list[Claim], int]:
        """The chunk's own files, read by id, and how many it lists that have no document (yet).

        A file re-scanned into a later chunk stays with its first: it is not this chunk's own.
        """
        docs = self._mget(chunk.file_ids)
        own, missing = [], 0
        for doc in docs:
            if not doc.get("found"):
                missing += 1
                continue
            task = FileTask.model_validate(doc["_source"])
            if task.chunk_id == chunk.chunk_id:
                own.append(Claim(doc["_id"], task, doc["_seq_no"], doc["_primary_term"]))
        return own, missing

    def claims(self, ids: list[str]) -> list[Claim]:
        """Files by id with the sequence numbers to change them conditionally (one mget); absent ones left out."""
        return [Claim(doc["_id"], FileTask.model_validate(doc["_source"]), doc["_seq_no"], doc["_primary_term"])
                for doc in self._mget(ids) if doc.get("found")]

    def by_key(self, job_id: str, bucket: str, keys: Iterable[str], *, batch: int = 500) -> dict[str, FileTask]:
        """The job's files of these keys that are recorded, read by id (ids derive from the key: no search, always current)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, FileTask] = {}
        for start in range(0, len(keys), batch):
            part = keys[start:start + batch]
            docs = self._mget([FileTask.doc_id(job_id, bucket, key) for key in part])
            for key, doc in zip(part, docs):
                if doc.get("found"):
                    found[key] = FileTask.model_validate(doc["_source"])
        return found

    def owned(self, chunk: Chunk) -> int:
        """How many files name this chunk as their own (read by id)."""
        return len(self.of_chunk(chunk)[0])

    # --- staged verbs: the next flush writes them --------------------------------------------------

    def begin(self, claim: Claim, worker_id: str) -> None:
        """A worker starts the file: PROCESSING, one attempt more (staged)."""
        task = claim.task
        task.status = FileStatus.PROCESSING
        task.attempts += 1
        task.in_flight = False
        task.worker_id = worker_id
        task.workers = [*task.workers, worker_id]
        task.started_at = now_ms()
        claim.dirty = True

    def attempt_failed(self, claim: Claim, error: str, max_attempts: int) -> bool:
        """The task raised: True when that was the last attempt (the file is ERROR, staged); else one attempt more."""
        if claim.task.attempts >= max_attempts:
            self.fail(claim, error)
            return True
        claim.task.attempts += 1
        claim.dirty = True
        return False

    def complete(self, claim: Claim, *, output_uri: str, labels: list[str], output: Any,
                 confidence: float | None = None, label_scores: list[dict] | None = None, fingerprint: str = "",
                 duration_ms: int | None = None) -> None:
        """The file's output is written: COMPLETED, with the fingerprint of the model that made it (staged).

        duration_ms: the worker's own measure of the file's time; else the time since it began.
        """
        task = claim.task
        task.status = FileStatus.COMPLETED
        task.fingerprint = fingerprint
        task.in_flight = False
        task.output_uri = output_uri
        task.labels = labels
        task.confidence = confidence
        task.label_scores = label_scores or []
        task.output = output
        task.error = task.error_signature = ""
        task.completed_at = now_ms()
        if duration_ms is None and task.started_at is not None:
            duration_ms = task.completed_at - task.started_at
        task.duration_ms = duration_ms
        claim.dirty = True

    def fail(self, claim: Claim, error: str) -> None:
        task = claim.task
        task.status = FileStatus.ERROR
        task.in_flight = False
        task.error = error[:4000]
        task.error_signature, task.failures = signature(task.error), task.failures + 1
        task.completed_at = now_ms()
        claim.dirty = True

    def cancel(self, claim: Claim) -> None:
        """The job was cancelled before this file was worked (a file that ran keeps its attempts)."""
        task = claim.task
        task.status = FileStatus.CANCELLED
        task.in_flight = False
        task.completed_at = now_ms()
        claim.dirty = True

    def abandon(self, claim: Claim) -> None:
        """A stopping worker gives a begun file back unworked: NOT_STARTED, its attempt not charged."""
        task = claim.task
        if task.status == FileStatus.PROCESSING:
            task.attempts = max(0, task.attempts - 1)
            task.workers = task.workers[:-1]
        task.status = FileStatus.NOT_STARTED
        task.in_flight = False
        task.started_at = None
        claim.dirty = True

    # --- written at once -------------------------------------------------------------------------

    def begin_one(self, claim: Claim, view: list[Claim], lease: Lease, *, worker_id: str, max_attempts: int,
                  lease_seconds: float) -> bool:
        """Mark one file in flight and write it at once (the careful path); False when it is not to be worked.

        After a worker dies, nobody knows which of its files killed it, so the next worker takes
        them one at a time and marks each in flight before working it. A file found still in
        flight was being worked when a worker died: that is a lost attempt, and after
        max_attempts the file ends ERROR instead of killing one more worker.
        """
        task = claim.task
        if task.status == FileStatus.PROCESSING and task.in_flight:
            if task.attempts >= max_attempts:
                lost_by = ", ".join(dict.fromkeys(task.workers)) or "unknown"
                self.fail(claim, f"{LOST_MESSAGE} {task.attempts} time(s) (workers: {lost_by})")
                self.flush(view, lease, lease_seconds=lease_seconds)
                return False
            task.attempts += 1
        elif task.status == FileStatus.NOT_STARTED:
            task.attempts += 1
        task.status = FileStatus.PROCESSING
        task.in_flight = True
        task.worker_id = worker_id
        task.workers = [*task.workers, worker_id]
        task.started_at = now_ms()
        claim.dirty = True
        held = self.flush(view, lease, lease_seconds=lease_seconds, in_flight=1)
        return held and claim.task.status == FileStatus.PROCESSING and not claim.dirty

    def flush(self, view: list[Claim], lease: Lease, *, lease_seconds: float, in_flight: int = 0,
              end: ChunkStatus | None = None) -> bool:
        """Write the dirty claims of a held chunk and its new counts in one bulk request; False if the lease is lost.

        view is every file of the chunk as the holder knows it (the counts come from it). A file
        written COMPLETED is written in the same request as its bot's latest result for that object
        (store/results.py), which a later incremental job reads. With end,
        the same request ends the lease: DONE (its files are all finished) or OPEN (given back,
        claimable at once by another worker). A file
        write that meets a newer state (409) reads the file again: a finished state found there
        is kept (another worker's result, ours dropped); an unfinished one is written over in the
        next round, unless the lease is lost, when nothing more is written. A file Elasticsearch
        refuses for good (a label past the keyword limit) ends ERROR alone, with the reason.
        """
        for _ in range(MAX_FLUSH_ROUNDS):
            dirty = [claim for claim in view if claim.dirty]
            with lease.lock:
                if lease.lost.is_set():
                    return False
                chunk_write = self.store.chunks.lease_write(
                    lease, lease_seconds, counts=counts_of(c.task.status for c in view), in_flight=in_flight,
                    status=end)
                if not dirty and end is None and (chunk_write.source["counts"], chunk_write.source["in_flight"]) == (
                        lease.chunk.counts, lease.chunk.in_flight):
                    return True  # nothing changed: the heartbeat keeps the lease
                results = [self.store.results.write(claim.task) for claim in dirty] if self.store.record_results else []
                writes = [self._write(claim) for claim in dirty] + [w for w in results if w is not None] + [chunk_write]
                outcomes = bulk(self.store, writes, what=f"writing results of chunk {lease.chunk.chunk_id}")
                chunk_outcome = outcomes[-1]
                refused([chunk_outcome], what=f"writing chunk {lease.chunk.chunk_id}")
                held = self.store.chunks.commit(lease, chunk_write, chunk_outcome.status, chunk_outcome.seq_no,
                                                chunk_outcome.primary_term)
            conflicted = []
            for claim, outcome in zip(dirty, outcomes):
                if outcome.written:
                    claim.seq_no, claim.primary_term, claim.dirty = outcome.seq_no, outcome.primary_term, False
                elif outcome.conflict:
                    conflicted.append(claim)
                else:
                    self._refused_result(claim, outcome)
            self._read_again(conflicted, overwrite=held)
            if not held:
                return False
            if not any(claim.dirty for claim in view) and chunk_write.source["counts"] == counts_of(
                    c.task.status for c in view):
                return True
        return not lease.lost.is_set()

    def _write(self, claim: Claim) -> Write:
        return Write(self.store.file_index(claim.id), claim.id, claim.task.model_dump(mode="json"), seq_no=claim.seq_no,
                     primary_term=claim.primary_term)

    def _refused_result(self, claim: Claim, outcome) -> None:
        """Elasticsearch refused a file's new state for good (not for now): the file fails alone."""
        reason = outcome.error.get("reason", "") if isinstance(outcome.error, dict) else str(outcome.error or "")
        if claim.task.status == FileStatus.ERROR and not claim.task.labels and claim.task.output is None:
            refused([outcome], what=f"writing file {claim.task.file_key!r}")  # even the bare error: a real fault
        claim.task.labels, claim.task.output, claim.task.confidence, claim.task.label_scores = [], None, None, []
        self.fail(claim, f"Elasticsearch refused the file's result ({outcome.status}): {reason}")

    def _read_again(self, claims: list[Claim], *, overwrite: bool) -> None:
        """After conflicts: keep what we wrote if it is there (a retried request), else learn the newer state."""
        if not claims:
            return
        for claim, doc in zip(claims, self._mget([c.id for c in claims])):
            if not doc.get("found"):
                claim.dirty = False
                continue
            stored = FileTask.model_validate(doc["_source"])
            claim.seq_no, claim.primary_term = doc["_seq_no"], doc["_primary_term"]
            if doc["_source"] == claim.task.model_dump(mode="json"):
                claim.dirty = False
            elif stored.status.terminal or not overwrite:
                claim.task, claim.dirty = stored, False

    def reopen(self, claims: list[Claim], chunk: Chunk) -> list[Claim]:
        """Make files workable again in a new chunk (spotbot retry, a watched object overwritten); their history stays
        in `workers`.

        Written at once, each conditional on our read; returns the claims written.
        """
        for claim in claims:
            task = claim.task
            task.status = FileStatus.NOT_STARTED
            task.attempts = 0
            task.in_flight = False
            task.error = task.error_signature = ""
            task.reused_from = ""
            task.chunk_id = chunk.chunk_id
            task.batch_id = chunk.batch_id
            task.started_at = task.completed_at = None
        return self._write_now(claims, what="reopening files")

    def repair(self, claims: list[Claim], chunk: Chunk) -> list[Claim]:
        """Move files no unfinished chunk holds (a late writer's, found by the job's final check) into a new chunk.

        They keep their attempts: a PROCESSING one had a worker die on it and is worked carefully.
        """
        for claim in claims:
            claim.task.chunk_id, claim.task.batch_id = chunk.chunk_id, chunk.batch_id
            claim.task.in_flight = claim.task.status == FileStatus.PROCESSING
        return self._write_now(claims, what="repairing files")

    def _write_now(self, claims: list[Claim], *, what: str) -> list[Claim]:
        if not claims:
            return []
        outcomes = bulk(self.store, [self._write(claim) for claim in claims], what=what)
        refused(outcomes, what=what)
        written = []
        for claim, outcome in zip(claims, outcomes):
            if outcome.written:
                claim.seq_no, claim.primary_term, claim.dirty = outcome.seq_no, outcome.primary_term, False
                written.append(claim)
        return written

    # --- queries ---------------------------------------------------------------------------------

    def page(self, job_id: str, *, status: str | None = None, size: int = 500, after: str | None = None) -> Iterable[FileTask]:
        """The job's files in key order (after the key `after`, when given), page by page, optionally of one status."""
        for hit in self._hits(job_id, [status] if status else [], size, after):
            yield FileTask.model_validate(hit["_source"])

    def get(self, ids: list[str]) -> list[FileTask | None]:
        """Files by document id, in one mget (always current, unlike a search); None where there is none."""
        docs = self._mget(ids)
        return [FileTask.model_validate(doc["_source"]) if doc.get("found") else None for doc in docs]

    def matching(self, job_id: str, statuses: list[str], size: int = 500, *,
                 signature: str | None = None) -> Iterable[Claim]:
        """The job's files in these statuses (and of this error signature), with the sequence numbers to change them."""
        for hit in self._hits(job_id, statuses, size, signature=signature):
            yield Claim(hit["_id"], FileTask.model_validate(hit["_source"]), hit["_seq_no"], hit["_primary_term"])

    def counts(self, job_id: str) -> dict[str, int]:
        """Files per status from an aggregation over the job's files (after a refresh): the check, not the display."""
        self.store.refresh("files")
        result = self.engine.search(self._index, {
            "size": 0,
            "query": {"term": {"job_id": job_id}},
            "aggs": {"status": {"terms": {"field": "status", "size": 20}}},
        })
        found = {bucket["key"]: bucket["doc_count"] for bucket in result["aggregations"]["status"]["buckets"]}
        return counts_of([]) | {status: n for status, n in found.items() if status in counts_of([])}

    def _hits(self, job_id: str, statuses: list[str], size: int, after_key: str | None = None, *,
              signature: str | None = None) -> Iterable[dict]:
        self.store.refresh("files")
        filters: list[dict] = [{"term": {"job_id": job_id}}]
        if statuses:
            filters.append({"terms": {"status": statuses}})
        if signature is not None:
            filters.append({"term": {"error_signature": signature}})
        after = [after_key] if after_key is not None else None  # a job's keys are unique: one bucket per job
        while True:
            kwargs: dict[str, Any] = {"search_after": after} if after else {}
            hits = self._search({"size": size, "query": {"bool": {"filter": filters}}, "sort": [{"file_key": "asc"}],
                                 "seq_no_primary_term": True, **kwargs})
            yield from hits
            if len(hits) < size:
                return
            after = hits[-1]["sort"]


__all__ = ["Claim", "FileStore", "LOST_MESSAGE"]
