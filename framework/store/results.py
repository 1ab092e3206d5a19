"""The latest COMPLETED result of each bot for each object: what an incremental job reuses.

One document per (bot, bucket, key), its id derived from them (LatestResult.doc_id), so it is
found by id, never by search: an incremental scan reads a chunk's worth in one mget, and the
check costs the same however many results the bot has. A worker writes it in the same bulk
request as the file's completion (FileStore.flush), as a plain replace: the newest completion
of an object is its latest result. Bulk requests are not transactions: if Elasticsearch refuses
the file's own write in that request (another worker finished it first, a label too long), the
result still names an output that was written, of that object version, by that model.
"""

from __future__ import annotations

from typing import Iterable

from ..models import FileStatus, FileTask, LatestResult
from .documents import DocumentStore, Write

# ids per mget: a chunk at most, several small chunks together (SPOTBOT_CHUNK_SIZE may reach 5,000)
MGET_IDS = 1000


class ResultStore(DocumentStore):
    kind = "results"

    def write(self, task: FileTask) -> Write | None:
        """The write recording a COMPLETED file as its bot's latest result for that object; None if it names no version."""
        if task.status != FileStatus.COMPLETED or not task.fingerprint or not (task.etag or task.version_id):
            return None
        result = LatestResult(bot=task.bot, bucket=task.bucket, file_key=task.file_key, job_id=task.job_id,
                              etag=task.etag, version_id=task.version_id, size=task.size,
                              fingerprint=task.fingerprint, output_uri=task.output_uri,
                              completed_at=task.completed_at)
        return Write(self._index, LatestResult.doc_id(task.bot, task.bucket, task.file_key),
                     result.model_dump(mode="json"))

    def latest(self, tasks: Iterable[FileTask]) -> dict[str, LatestResult]:
        """The latest results of these files' objects, by file key (one mget per MGET_IDS files)."""
        tasks = list(tasks)
        found: dict[str, LatestResult] = {}
        for start in range(0, len(tasks), MGET_IDS):
            part = tasks[start:start + MGET_IDS]
            ids = [LatestResult.doc_id(task.bot, task.bucket, task.file_key) for task in part]
            for task, doc in zip(part, self.engine.mget(self._index, ids)):
                if doc.get("found"):
                    found[task.file_key] = LatestResult.model_validate(doc["_source"])
        return found


__all__ = ["ResultStore", "MGET_IDS"]
