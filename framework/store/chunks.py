"""Chunks: the unit of work. A worker owns a chunk through a lease (owner + expiry).

Every change to a chunk is conditional on the sequence number last read (if_seq_no /
if_primary_term), so two workers can never both own a chunk, and a search that is not yet
refreshed can only make a claim fail, never make it wrong.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

from ..models import Chunk, ChunkStatus, now_ms
from .documents import DocumentStore

CANDIDATES = 32


@dataclass
class Lease:
    """A chunk this worker holds, with the sequence numbers of our last write to it."""

    chunk: Chunk
    seq_no: int
    primary_term: int


class ChunkStore(DocumentStore):
    kind = "chunks"

    def record(self, chunks: Iterable[Chunk]) -> dict[str, tuple[int, int] | None]:
        """Create chunks in one bulk request; maps chunk id to (seq_no, primary_term) if new, None if it existed."""
        ops: list[dict] = []
        for chunk in chunks:
            ops.append({"create": {"_index": self._index, "_id": chunk.chunk_id}})
            ops.append(chunk.model_dump(mode="json"))
        if not ops:
            return {}
        result = self.engine.bulk(ops)
        out: dict[str, tuple[int, int] | None] = {}
        for item in result["items"]:
            info = item["create"]
            if info["status"] == 201:
                out[info["_id"]] = (info["_seq_no"], info["_primary_term"])
            elif info["status"] == 409:
                out[info["_id"]] = None
            else:
                raise RuntimeError(f"recording chunk {info['_id']} failed: {info.get('error')}")
        return out

    def claim(self, job_id: str, worker_id: str, batch_id: int | None, lease_seconds: float) -> Lease | None:
        """Take an open chunk (or one whose lease expired), of our own batch first; None if none is free.

        batch_id None skips the own-batch search (the caller knows its batch is worked out).
        The second round refreshes first: a chunk written since the last refresh is not missed.
        """
        for refresh in (False, True):
            if refresh:
                self.store.refresh("chunks")
            for batch in ((batch_id, None) if batch_id is not None else (None,)):
                for hit in self._candidates(job_id, batch):
                    lease = self._take(hit, worker_id, lease_seconds)
                    if lease:
                        return lease
        return None

    def _candidates(self, job_id: str, batch_id: int | None) -> list[dict]:
        claimable = {
            "bool": {
                "should": [
                    {"term": {"status": ChunkStatus.OPEN.value}},
                    {
                        "bool": {
                            "filter": [
                                {"term": {"status": ChunkStatus.LEASED.value}},
                                {"range": {"lease_expires_at": {"lt": now_ms()}}},
                            ]
                        }
                    },
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
        chunk.status = ChunkStatus.LEASED
        chunk.lease_owner = worker_id
        chunk.lease_expires_at = now_ms() + int(lease_seconds * 1000)
        chunk.claims += 1
        written = self._write(chunk, hit["_seq_no"], hit["_primary_term"])
        if written is None:
            return None
        return Lease(chunk, *written)

    def _write(self, chunk: Chunk, seq_no: int, primary_term: int) -> tuple[int, int] | None:
        return self._write_if(chunk.chunk_id, chunk.model_dump(mode="json"), seq_no, primary_term)

    def extend(self, lease: Lease, lease_seconds: float) -> bool:
        """Push the lease's expiry forward; False when another worker has taken the chunk."""
        chunk = lease.chunk.model_copy()
        chunk.lease_expires_at = now_ms() + int(lease_seconds * 1000)
        written = self._write(chunk, lease.seq_no, lease.primary_term)
        if written is None:
            return False
        lease.chunk, (lease.seq_no, lease.primary_term) = chunk, written
        return True

    def finish(self, lease: Lease) -> bool:
        """Mark the chunk DONE; False when another worker had taken it."""
        chunk = lease.chunk.model_copy()
        chunk.status = ChunkStatus.DONE
        chunk.lease_expires_at = 0
        chunk.done_at = now_ms()
        written = self._write(chunk, lease.seq_no, lease.primary_term)
        if written is None:
            return False
        lease.chunk, (lease.seq_no, lease.primary_term) = chunk, written
        return True

    def close(self, chunk: Chunk, seq_no: int, primary_term: int) -> None:
        """Mark DONE a chunk just recorded that got no file of its own (a re-scan's duplicate)."""
        done = chunk.model_copy(update={"status": ChunkStatus.DONE, "done_at": now_ms()})
        self._write(done, seq_no, primary_term)

    def unfinished(self, job_id: str) -> int:
        """How many of the job's chunks are not DONE (refreshes first: this decides whether a job ends)."""
        self.store.refresh("chunks")
        return self.engine.count(self._index, {
            "bool": {
                "filter": [{"term": {"job_id": job_id}}],
                "must_not": [{"term": {"status": ChunkStatus.DONE.value}}],
            }
        })
