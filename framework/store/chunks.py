"""Chunks: the unit of work and of counting. A worker owns a chunk through a lease (owner + expiry).

A chunk moves PENDING -> OPEN -> LEASED -> DONE (LEASED -> OPEN again when its holder lets
go of it; an expired lease may be taken by anyone). Its files are written while it is
PENDING, and only then is it opened, so no worker can claim a chunk whose files do not
exist yet; a PENDING chunk whose writer died is claimable once `pending_grace` has passed,
and a file its writer wrote after that is found by the job's final check (jobs.finalize).

Every change to a chunk is conditional on the sequence number last read (if_seq_no /
if_primary_term), so two workers can never both own a chunk, and a search that is not yet
refreshed can only make a claim fail, never make it wrong.

Counts: a chunk holds how many of its own files are in each status. They change only with
its files, in the same bulk request as the files (FileStore.flush), written by the lease
holder from what it read and wrote of each file; a write of a file that finds a newer state
(409) makes the holder read the file again before it counts it. So a DONE chunk's counts
are exact, and a job's are the sum over its chunks.

Verbs: record, open, claim, extend, release and finish write at once; none is staged.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..models import Chunk, ChunkStatus, FileStatus, now_ms
from .documents import DocumentStore, Write, bulk, refused

CANDIDATES = 32
STATUSES = [status.value for status in FileStatus]


@dataclass
class Lease:
    """A chunk this worker holds, with the sequence numbers of our last write to it.

    The heartbeat thread and the worker both write the chunk: they take `lock` around a write,
    so each write is conditional on the other's last one.
    """

    chunk: Chunk
    seq_no: int
    primary_term: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    lost: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


def new_chunk(job_id: str, ids: list[str], seq: int, workers: int, tag: str = "") -> Chunk:
    """A chunk whose id derives from its files, so recording the same run of files twice gives one chunk."""
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    return Chunk(chunk_id=f"{job_id}-{tag}{seq:06d}-{digest}", job_id=job_id, seq=seq, batch_id=seq % max(1, workers),
                 file_ids=ids)


def counts_of(statuses: Iterable[FileStatus]) -> dict[str, int]:
    """Files per status (every status present, zeros included)."""
    counted = Counter(status.value for status in statuses)
    return {status: counted.get(status, 0) for status in STATUSES}


class ChunkStore(DocumentStore):
    kind = "chunks"

    def record(self, chunks: Iterable[Chunk]) -> dict[str, tuple[int, int] | None]:
        """Create chunks PENDING in one bulk request; maps chunk id to (seq_no, primary_term) if new, None if it existed."""
        writes = [Write(self._index, chunk.chunk_id, {**chunk.model_dump(mode="json"), "status": ChunkStatus.PENDING.value},
                        op="create") for chunk in chunks]
        if not writes:
            return {}
        outcomes = bulk(self.store, writes, what="recording chunks")
        refused(outcomes, what="recording chunks")
        return {o.write.id: ((o.seq_no, o.primary_term) if o.written else None) for o in outcomes}

    def open(self, opened: list[tuple[Chunk, tuple[int, int], int | dict[str, int]]]) -> None:
        """Open PENDING chunks whose files are written: (chunk, its seq numbers, its own files per status).

        The third item may be a number: that many files, all NOT_STARTED. A chunk with nothing left
        to work (it owns no file, every file it lists being another chunk's, or its files were
        recorded already ended, as an incremental job's SKIPPED ones) is DONE at once. A chunk
        someone else changed meanwhile (a claim after pending_grace) is theirs.
        """
        writes = []
        for chunk, (seq_no, primary_term), owned in opened:
            counts = {**counts_of([]), **(owned if isinstance(owned, dict) else {FileStatus.NOT_STARTED.value: owned})}
            done = not counts[FileStatus.NOT_STARTED.value] and not counts[FileStatus.PROCESSING.value]
            update = {"status": (ChunkStatus.DONE if done else ChunkStatus.OPEN).value,
                      "counts": counts,
                      "done_at": now_ms() if done else None}
            writes.append(Write(self._index, chunk.chunk_id, {**chunk.model_dump(mode="json"), **update},
                                seq_no=seq_no, primary_term=primary_term))
        if writes:
            refused(bulk(self.store, writes, what="opening chunks"), what="opening chunks")

    def claim(self, job_id: str, worker_id: str, batch_id: int | None, lease_seconds: float, *,
              pending_grace: float) -> Lease | None:
        """Take an open chunk (or one whose lease expired, or left PENDING past pending_grace), of our own batch first.

        batch_id None skips the own-batch search (the caller knows its batch is worked out).
        The second round refreshes first: a chunk written since the last refresh is not missed.
        """
        for refresh in (False, True):
            if refresh:
                self.store.refresh("chunks")
            for batch in ((batch_id, None) if batch_id is not None else (None,)):
                for hit in self._candidates(job_id, batch, pending_grace):
                    lease = self._take(hit, worker_id, lease_seconds)
                    if lease:
                        return lease
        return None

    def _candidates(self, job_id: str, batch_id: int | None, pending_grace: float) -> list[dict]:
        now = now_ms()
        claimable = {
            "bool": {
                "should": [
                    {"term": {"status": ChunkStatus.OPEN.value}},
                    {"bool": {"filter": [{"term": {"status": ChunkStatus.LEASED.value}},
                                         {"range": {"lease_expires_at": {"lt": now}}}]}},
                    {"bool": {"filter": [{"term": {"status": ChunkStatus.PENDING.value}},
                                         {"range": {"created_at": {"lt": now - int(pending_grace * 1000)}}}]}},
                ],
                "minimum_should_match": 1,
            }
        }
        filters: list[dict] = [{"term": {"job_id": job_id}}, claimable]
        if batch_id is not None:
            filters.append({"term": {"batch_id": batch_id}})
        hits = self._search({"size": CANDIDATES, "query": {"bool": {"filter": filters}}, "sort": [{"seq": "asc"}],
                             "seq_no_primary_term": True})
        if batch_id is None:
            # stealing: spread thieves over the remaining chunks instead of all racing for the first
            random.shuffle(hits)
        return hits

    def _take(self, hit: dict, worker_id: str, lease_seconds: float) -> Lease | None:
        chunk = Chunk.model_validate(hit["_source"])
        if chunk.status == ChunkStatus.LEASED:
            # its holder's lease ran out with the chunk unfinished: it died (or lost Elasticsearch) mid-work
            chunk.suspect = True
        elif chunk.status == ChunkStatus.PENDING:
            # its writer is past the grace: it may yet write files to the chunk (JobStore.finalize reads them)
            chunk.adopted = True
        chunk.status = ChunkStatus.LEASED
        chunk.lease_owner = worker_id
        chunk.lease_expires_at = now_ms() + int(lease_seconds * 1000)
        chunk.claims += 1
        written = self._write_if(chunk.chunk_id, chunk.model_dump(mode="json"), hit["_seq_no"], hit["_primary_term"])
        if written is None:
            return None
        return Lease(chunk, *written)

    def lease_write(self, lease: Lease, lease_seconds: float, *, counts: dict[str, int] | None = None,
                    in_flight: int | None = None, status: ChunkStatus | None = None) -> Write:
        """The conditional write of a held chunk with its lease pushed forward (and new counts); see commit()."""
        chunk = lease.chunk.model_copy()
        chunk.lease_expires_at = now_ms() + int(lease_seconds * 1000)
        if counts is not None:
            chunk.counts = counts
        if in_flight is not None:
            chunk.in_flight = in_flight
        if status is not None:
            chunk.status = status
            if status == ChunkStatus.DONE:
                chunk.lease_expires_at, chunk.done_at, chunk.in_flight = 0, now_ms(), 0
            elif status == ChunkStatus.OPEN:
                chunk.lease_owner, chunk.lease_expires_at, chunk.in_flight = "", 0, 0
        return Write(self._index, chunk.chunk_id, chunk.model_dump(mode="json"), seq_no=lease.seq_no,
                     primary_term=lease.primary_term)

    def commit(self, lease: Lease, write: Write, outcome_status: int, seq_no: int | None, primary_term: int | None) -> bool:
        """Take the outcome of a lease_write: the lease moves on, or (409) it is lost to another worker."""
        if outcome_status in (200, 201):
            lease.chunk = Chunk.model_validate(write.source)
            lease.seq_no, lease.primary_term = seq_no, primary_term  # type: ignore[assignment]
            return True
        current = self.engine.get(self._index, lease.chunk.chunk_id)  # a conflict (409): the caller raised the rest
        if current is not None and current["_source"] == write.source:  # our own write, applied before a retry
            lease.chunk = Chunk.model_validate(write.source)
            lease.seq_no, lease.primary_term = current["_seq_no"], current["_primary_term"]
            return True
        lease.lost.set()
        return False

    def _change(self, lease: Lease, lease_seconds: float, **changes) -> bool:
        with lease.lock:
            if lease.lost.is_set():
                return False
            write = self.lease_write(lease, lease_seconds, **changes)
            outcome = bulk(self.store, [write], what=f"writing chunk {lease.chunk.chunk_id}")[0]
            refused([outcome], what=f"writing chunk {lease.chunk.chunk_id}")
            return self.commit(lease, write, outcome.status, outcome.seq_no, outcome.primary_term)

    def extend(self, lease: Lease, lease_seconds: float) -> bool:
        """Push the lease's expiry forward (the heartbeat); False when another worker has taken the chunk."""
        return self._change(lease, lease_seconds)

    def release(self, lease: Lease, counts: dict[str, int]) -> bool:
        """Let go of a chunk with work left (a worker stopping): OPEN again, claimable at once, not suspect."""
        return self._change(lease, 0, counts=counts, status=ChunkStatus.OPEN)

    def finish(self, lease: Lease, counts: dict[str, int]) -> bool:
        """Mark the chunk DONE with its final counts; False when another worker had taken it."""
        return self._change(lease, 0, counts=counts, status=ChunkStatus.DONE)

    def unfinished(self, job_id: str) -> int:
        """How many of the job's chunks are not DONE (refreshes first: this decides whether a job ends)."""
        self.store.refresh("chunks")
        return self.engine.count(self._index, {
            "bool": {
                "filter": [{"term": {"job_id": job_id}}],
                "must_not": [{"term": {"status": ChunkStatus.DONE.value}}],
            }
        })

    def sums(self, job_id: str) -> tuple[dict[str, int], int, int]:
        """(files per status, files in flight, files claimed but not begun) of a job: sums over its chunks."""
        aggs: dict = {status: {"sum": {"field": f"counts.{status}"}} for status in STATUSES}
        aggs["in_flight"] = {"sum": {"field": "in_flight"}}
        aggs["leased"] = {"filter": {"term": {"status": ChunkStatus.LEASED.value}},
                          "aggs": {"waiting": {"sum": {"field": f"counts.{FileStatus.NOT_STARTED.value}"}}}}
        result = self.engine.search(self._index, {"size": 0, "query": {"term": {"job_id": job_id}}, "aggs": aggs})
        found = result.get("aggregations", {})
        counts = {status: int((found.get(status) or {}).get("value") or 0) for status in STATUSES}
        in_flight = int((found.get("in_flight") or {}).get("value") or 0)
        waiting = int(((found.get("leased") or {}).get("waiting") or {}).get("value") or 0)
        return counts, in_flight, waiting

    def get(self, chunk_ids: list[str]) -> dict[str, tuple[Chunk, int, int]]:
        """Chunks by id (mget: always current), with their sequence numbers."""
        docs = self.engine.mget(self._index, chunk_ids) if chunk_ids else []
        return {doc["_id"]: (Chunk.model_validate(doc["_source"]), doc["_seq_no"], doc["_primary_term"])
                for doc in docs if doc.get("found")}

    def move_out(self, deltas: dict[str, dict[str, int]]) -> None:
        """Take files out of the counts of chunks they left (spotbot retry moves them to new chunks).

        deltas: chunk id -> {status: how many of its files in that status moved}. Read-modify-write,
        conditional, again on a conflict (only a lease holder or another mover writes a chunk).
        """
        for chunk_id, moved in deltas.items():
            def less(counts: dict[str, int], moved: dict[str, int] = moved) -> dict[str, int]:
                return {status: max(0, n - moved.get(status, 0)) for status, n in counts.items()}

            self._recount(chunk_id, less)

    def set_counts(self, chunk_id: str, counts: dict[str, int]) -> None:
        """Put exact counts on a DONE chunk (the job's final check found them off)."""
        self._recount(chunk_id, lambda _: counts, only_done=True)

    def _recount(self, chunk_id: str, change, *, only_done: bool = False) -> None:
        """Read-modify-write a chunk's counts, conditionally, again after a conflict."""
        for _ in range(50):
            found = self.get([chunk_id]).get(chunk_id)
            if found is None:
                return
            chunk, seq_no, primary_term = found
            counts = change({**counts_of([]), **chunk.counts})
            if counts == chunk.counts or (only_done and chunk.status != ChunkStatus.DONE):
                return
            if self._write_if(chunk_id, {**chunk.model_dump(mode="json"), "counts": counts}, seq_no,
                              primary_term) is not None:
                return

    def adopted(self, job_id: str) -> list[Chunk]:
        """The job's chunks that were claimed while PENDING (refreshed first): usually none."""
        self.store.refresh("chunks")
        query = {"bool": {"filter": [{"term": {"job_id": job_id}}, {"term": {"adopted": True}}]}}
        return [Chunk.model_validate(hit["_source"])
                for hit in self._all({"query": query}, [{"seq": "asc"}, {"chunk_id": "asc"}])]

    def of_job(self, job_id: str) -> Iterable[Chunk]:
        """Every chunk of a job, in seq order (refreshed first)."""
        self.store.refresh("chunks")
        for hit in self._all({"query": {"term": {"job_id": job_id}}}, [{"seq": "asc"}, {"chunk_id": "asc"}]):
            yield Chunk.model_validate(hit["_source"])
