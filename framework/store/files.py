"""File documents: every change of a file's status happens here.

A file moves NOT_STARTED -> PROCESSING -> COMPLETED | ERROR (or CANCELLED). Each write is
conditional on the sequence number of our own last read or write of that file, so a worker
that lost its chunk to another can never overwrite the newer state: its write gets a 409
and is dropped. Reads are by id (mget), never by search, so they are always current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import SpotbotError, StoreUnavailable
from ..models import Chunk, FileStatus, FileTask, now_ms
from ..signatures import signature
from .documents import DocumentStore

LOST_MESSAGE = "worker lost while processing"


@dataclass
class Claim:
    """A file as this worker last read or wrote it."""

    id: str
    task: FileTask
    seq_no: int
    primary_term: int


class FileStore(DocumentStore):
    kind = "files"

    def record(self, files: Iterable[FileTask]) -> list[str]:
        """Create file documents in one bulk request; returns the ids that are new (existing ones are kept)."""
        ops: list[dict] = []
        for task in files:
            ops.append({"create": {"_index": self._index, "_id": FileTask.doc_id(task.job_id, task.bucket, task.file_key)}})
            ops.append(task.model_dump(mode="json"))
        if not ops:
            return []
        result = self.engine.bulk(ops)
        created = []
        for item in result["items"]:
            info = item["create"]
            if info["status"] == 201:
                created.append(info["_id"])
            elif info["status"] != 409:
                raise RuntimeError(f"recording file {info['_id']} failed: {info.get('error')}")
        return created

    def open_in(self, chunk: Chunk) -> list[Claim]:
        """The chunk's files that still need work, read by id (a file re-scanned into a later chunk stays with its first)."""
        docs = self.engine.mget(self._index, chunk.file_ids) if chunk.file_ids else []
        claims = []
        for doc in docs:
            if not doc.get("found"):
                continue
            task = FileTask.model_validate(doc["_source"])
            if task.chunk_id == chunk.chunk_id and not task.status.terminal:
                claims.append(Claim(doc["_id"], task, doc["_seq_no"], doc["_primary_term"]))
        return claims

    def by_key(self, job_id: str, bucket: str, keys: Iterable[str], *, batch: int = 500) -> dict[str, FileTask]:
        """The job's files of these keys that are recorded, read by id (ids derive from the key: no search, always current)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, FileTask] = {}
        for start in range(0, len(keys), batch):
            part = keys[start:start + batch]
            docs = self.engine.mget(self._index, [FileTask.doc_id(job_id, bucket, key) for key in part])
            for key, doc in zip(part, docs):
                if doc.get("found"):
                    found[key] = FileTask.model_validate(doc["_source"])
        return found

    def any_in(self, chunk: Chunk) -> bool:
        """Whether any file document names this chunk as its own (read by id)."""
        docs = self.engine.mget(self._index, chunk.file_ids) if chunk.file_ids else []
        return any(doc.get("found") and doc["_source"]["chunk_id"] == chunk.chunk_id for doc in docs)

    def begin(self, claims: list[Claim], worker_id: str) -> list[Claim]:
        """Mark files PROCESSING in one bulk write, one attempt each; returns those we now hold."""
        now = now_ms()
        for claim in claims:
            task = claim.task
            task.status = FileStatus.PROCESSING
            task.attempts += 1
            task.in_flight = False
            task.worker_id = worker_id
            task.workers = [*task.workers, worker_id]
            task.started_at = now
        return self.write(claims)

    def begin_one(self, claim: Claim, worker_id: str, max_attempts: int) -> Claim | None:
        """Mark one file in flight (recovery mode); a file a worker died on counts that as an attempt.

        After a worker dies, nobody knows which of its PROCESSING files killed it, so the next
        worker takes them one at a time and marks each in flight before working it. A file
        found still in flight was being worked when a worker died: that is a lost attempt, and
        after max_attempts the file ends ERROR instead of killing one more worker.
        Returns the claim to work, or None (the file ended ERROR, or another worker has it).
        """
        task = claim.task
        if task.status == FileStatus.PROCESSING and task.in_flight:
            if task.attempts >= max_attempts:
                lost_by = ", ".join(dict.fromkeys(task.workers)) or "unknown"
                self.fail(claim, f"{LOST_MESSAGE} {task.attempts} time(s) (workers: {lost_by})")
                self.write([claim])
                return None
            task.attempts += 1
        elif task.status == FileStatus.NOT_STARTED:
            task.attempts += 1
        task.status = FileStatus.PROCESSING
        task.in_flight = True
        task.worker_id = worker_id
        task.workers = [*task.workers, worker_id]
        task.started_at = now_ms()
        written = self.write([claim])
        return written[0] if written else None

    def complete(self, claim: Claim, *, output_uri: str, labels: list[str], output: Any, attempts: int,
                 confidence: float | None = None, duration_ms: int | None = None) -> None:
        task = claim.task
        task.status = FileStatus.COMPLETED
        task.in_flight = False
        task.output_uri = output_uri
        task.labels = labels
        task.confidence = confidence
        task.output = output
        task.error = task.error_signature = ""
        task.attempts = max(task.attempts, attempts)
        task.completed_at = now_ms()
        # the worker's own measure when it gives one; else since the file was marked PROCESSING (for a file marked
        # with its whole chunk, that includes the wait behind the chunk's earlier files)
        if duration_ms is None and task.started_at is not None:
            duration_ms = task.completed_at - task.started_at
        task.duration_ms = duration_ms

    def fail(self, claim: Claim, error: str, attempts: int | None = None) -> None:
        task = claim.task
        task.status = FileStatus.ERROR
        task.in_flight = False
        task.error = error[:4000]
        task.error_signature, task.failures = signature(task.error), task.failures + 1
        if attempts is not None:
            task.attempts = max(task.attempts, attempts)
        task.completed_at = now_ms()

    def write(self, claims: list[Claim]) -> list[Claim]:
        """Write the claims' files in one bulk request, each conditional on our last seq_no.

        Returns the claims written (their seq_no updated); a 409 means another worker has the
        file now, and that claim is left out, unless the file holds exactly what we sent (see _ours).
        """
        if not claims:
            return []
        ops: list[dict] = []
        for claim in claims:
            ops.append(
                {"index": {"_index": self._index, "_id": claim.id, "if_seq_no": claim.seq_no, "if_primary_term": claim.primary_term}}
            )
            ops.append(claim.task.model_dump(mode="json"))
        result = self.engine.bulk(ops)
        written, conflicted = [], []
        for claim, item in zip(claims, result["items"]):
            info = item["index"]
            if info["status"] in (200, 201):
                claim.seq_no, claim.primary_term = info["_seq_no"], info["_primary_term"]
                written.append(claim)
            elif info["status"] == 409:
                conflicted.append(claim)
            elif info["status"] == 429 or info["status"] >= 500:
                raise StoreUnavailable(f"writing file {claim.task.file_key!r} failed ({info['status']}): {info.get('error')}")
            else:
                raise SpotbotError(f"writing file {claim.task.file_key!r} failed: {info.get('error')}")
        return written + self._ours(conflicted)

    def _ours(self, conflicted: list[Claim]) -> list[Claim]:
        """Of the claims a write found changed, those that hold exactly what we wrote.

        When a server goes away after applying a bulk request but before answering, the retry
        of that request meets our own first write as a conflict. A file whose stored document
        is the one we sent is ours: keep it, with its current sequence numbers.
        """
        if not conflicted:
            return []
        ours = []
        for claim, doc in zip(conflicted, self.engine.mget(self._index, [c.id for c in conflicted])):
            if doc.get("found") and doc["_source"] == claim.task.model_dump(mode="json"):
                claim.seq_no, claim.primary_term = doc["_seq_no"], doc["_primary_term"]
                ours.append(claim)
        return ours

    def cancel(self, claim: Claim) -> None:
        task = claim.task
        task.status = FileStatus.CANCELLED
        task.in_flight = False
        task.completed_at = now_ms()

    def reopen(self, claim: Claim, chunk: Chunk) -> None:
        """Make an ended file workable again in a new chunk (spotbot retry); its history stays in `workers`."""
        task = claim.task
        task.status = FileStatus.NOT_STARTED
        task.attempts = 0
        task.in_flight = False
        task.error = task.error_signature = ""
        task.chunk_id = chunk.chunk_id
        task.batch_id = chunk.batch_id
        task.started_at = task.completed_at = None

    def page(self, job_id: str, *, status: str | None = None, size: int = 500, after: str | None = None) -> Iterable[FileTask]:
        """The job's files in key order (after the key `after`, when given), page by page, optionally of one status."""
        for hit in self._hits(job_id, [status] if status else [], size, after):
            yield FileTask.model_validate(hit["_source"])

    def get(self, ids: list[str]) -> list[FileTask | None]:
        """Files by document id, in one mget (always current, unlike a search); None where there is none."""
        docs = self.engine.mget(self._index, ids) if ids else []
        return [FileTask.model_validate(doc["_source"]) if doc.get("found") else None for doc in docs]

    def matching(self, job_id: str, statuses: list[str], size: int = 500, *,
                 signature: str | None = None) -> Iterable[Claim]:
        """The job's files in these statuses (and of this error signature), with the sequence numbers to change them."""
        for hit in self._hits(job_id, statuses, size, signature=signature):
            yield Claim(hit["_id"], FileTask.model_validate(hit["_source"]), hit["_seq_no"], hit["_primary_term"])

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
