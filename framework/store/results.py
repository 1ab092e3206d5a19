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

from ..models import FileStatus, FileTask, LatestResult
from .documents import DocumentStore, Write

# ids per mget: a listing page's worth (S3 lists up to 1,000 keys a page)
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

    def latest(self, bot: str, bucket: str, keys: list[str]) -> dict[str, LatestResult]:
        """The bot's latest results for these objects, by key (one mget per MGET_IDS keys)."""
        found: dict[str, LatestResult] = {}
        for start in range(0, len(keys), MGET_IDS):
            part = keys[start:start + MGET_IDS]
            docs = self.engine.mget(self._index, [LatestResult.doc_id(bot, bucket, key) for key in part])
            for key, doc in zip(part, docs):
                if doc.get("found"):
                    found[key] = LatestResult.model_validate(doc["_source"])
        return found


__all__ = ["ResultStore", "MGET_IDS"]
