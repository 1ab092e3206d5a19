"""Read-only summaries for people and monitors: error groups, pages of files, timelines, heartbeats, per-bot figures.

Everything here is an aggregation or one page of a search, so it costs the same for a job of
a hundred files and one of a million: nothing reads every file. Nothing here writes, and
reports refresh what they read at most once a second (a summary a second old is fine; the writers' verbs live in
files.py, chunks.py and jobs.py). A job's counts per status are not here: they are
`store.jobs.counts(job_id)`, the one place that knows where they come from.
"""

from __future__ import annotations

import time

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..models import FileStatus, FileTask

if TYPE_CHECKING:
    from . import Store

TIMELINE_BUCKETS = 60
# the interval of a timeline's buckets: the smallest of these that gives at most TIMELINE_BUCKETS
INTERVALS_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


@dataclass
class ErrorGroup:
    """The ERROR files of one job that share an error signature."""

    signature: str
    count: int
    first_at: int | None
    last_at: int | None
    examples: list[dict[str, Any]] = field(default_factory=list)  # {"id", "file_key", "error", "attempts"}


@dataclass
class ErrorGroups:
    groups: list[ErrorGroup]
    errors: int  # every ERROR file of the job
    other: int  # ERROR files in groups beyond those listed
    unsigned: int  # ERROR files without a signature (failed before signatures existed)


@dataclass
class FileRow:
    id: str
    task: FileTask


@dataclass
class FilesPage:
    files: list[FileRow]
    next: str | None  # the last key of this page when there may be more: pass it as `after`


@dataclass
class BotFigures:
    """Per bot, over all its jobs: files completed, failures, and the completed files' processing times."""

    bot: str
    completed: int
    failures: int
    durations_le: list[tuple[float, int]]  # (upper bound in seconds, files at most that long), cumulative
    duration_count: int
    duration_sum_seconds: float


def _value(agg: dict | None) -> float | None:
    """A min/max/sum's value (no value_as_string: the embedded server gives none), None when there was nothing."""
    value = (agg or {}).get("value")
    return None if value is None else float(value)


REFRESH_SECONDS = 1.0


class Reports:
    def __init__(self, store: "Store"):
        self.store = store
        self.engine = store.engine
        self._refreshed: dict[str, float] = {}

    def _search(self, kind: str, body: dict) -> dict:
        # Workers write without refreshing, and a job's end no longer searches its files; so a report
        # refreshes what it reads, at most once a second (cheap on a real node when nothing changed),
        # and a report made right after a job ended sees its last files.
        if time.monotonic() - self._refreshed.get(kind, 0.0) >= REFRESH_SECONDS:
            self.store.refresh(kind)
            self._refreshed[kind] = time.monotonic()
        return self.engine.search(self.store.target(kind), body)

    # --- errors ---------------------------------------------------------------------------------

    def error_groups(self, job_id: str, *, size: int = 50, examples: int = 3) -> ErrorGroups:
        """The job's ERROR files grouped by signature, largest group first, each with its first and last failure."""
        result = self._search("files", {
            "size": 0,
            "track_total_hits": True,
            "query": {"bool": {"filter": [{"term": {"job_id": job_id}}, {"term": {"status": FileStatus.ERROR.value}}]}},
            "aggs": {"groups": {
                "terms": {"field": "error_signature", "size": size, "order": [{"_count": "desc"}, {"_key": "asc"}]},
                "aggs": {
                    "first": {"min": {"field": "completed_at"}},
                    "last": {"max": {"field": "completed_at"}},
                    "examples": {"top_hits": {"size": examples, "sort": [{"file_key": "asc"}],
                                              "_source": ["file_key", "error", "attempts"]}},
                },
            }},
        })
        total = result["hits"]["total"]
        errors = total["value"] if isinstance(total, dict) else int(total)
        agg = result["aggregations"]["groups"]
        groups = []
        for bucket in agg["buckets"]:
            first, last = _value(bucket["first"]), _value(bucket["last"])
            shown = [{"id": hit["_id"], **hit["_source"]} for hit in bucket["examples"]["hits"]["hits"]]
            groups.append(ErrorGroup(signature=bucket["key"], count=bucket["doc_count"],
                                     first_at=int(first) if first is not None else None,
                                     last_at=int(last) if last is not None else None, examples=shown))
        other = int(agg.get("sum_other_doc_count", 0))
        # a file that failed before signatures existed has none (an empty keyword is not a bucket on every engine)
        blank = next((g for g in groups if not g.signature), None)
        if blank is not None:
            groups.remove(blank)
        unsigned = max(0, errors - sum(g.count for g in groups) - other)
        return ErrorGroups(groups=groups, errors=errors, other=other, unsigned=unsigned)

    def group_size(self, job_id: str, signature: str) -> int:
        """How many ERROR files of the job have this signature (refreshed first: it decides whether a retry has work)."""
        self.store.refresh("files")
        return self.store.count("files", {"bool": {"filter": [
            {"term": {"job_id": job_id}}, {"term": {"status": FileStatus.ERROR.value}},
            {"term": {"error_signature": signature}}]}})

    # --- files ----------------------------------------------------------------------------------

    def files_page(self, job_id: str, *, status: str | None = None, label: str | None = None,
                   prefix: str | None = None, signature: str | None = None, after: str | None = None,
                   size: int = 50) -> FilesPage:
        """One page of the job's files in key order, after the key `after` (search_after, never deep from+size)."""
        filters: list[dict] = [{"term": {"job_id": job_id}}]
        if status:
            filters.append({"term": {"status": status}})
        if label:
            filters.append({"term": {"labels": label}})
        if prefix:
            filters.append({"prefix": {"file_key": prefix}})
        if signature:
            filters.append({"term": {"error_signature": signature}})
        body: dict[str, Any] = {"size": size + 1, "query": {"bool": {"filter": filters}}, "sort": [{"file_key": "asc"}],
                                "_source": {"excludes": ["output"]}, "track_total_hits": False}
        if after is not None:
            body["search_after"] = [after]
        hits = self._search("files", body)["hits"]["hits"]
        rows = [FileRow(hit["_id"], FileTask.model_validate(hit["_source"])) for hit in hits[:size]]
        return FilesPage(rows, rows[-1].task.file_key if len(hits) > size else None)

    def file(self, job_id: str, file_id: str) -> FileTask | None:
        """One file of the job, read by id (current, with its output); None when the id is not the job's."""
        doc = self.engine.get(self.store.file_index(file_id), file_id)
        if doc is None:
            return None
        task = FileTask.model_validate(doc["_source"])
        return task if task.job_id == job_id else None

    # --- over time --------------------------------------------------------------------------------

    def timeline(self, job_id: str, start_ms: int, end_ms: int) -> tuple[int, list[tuple[int, dict[str, int]]]]:
        """Files that ended per interval and status, from start to end: (interval in ms, [(bucket start, counts)])."""
        span = max(1, (end_ms - start_ms) // 1000)
        seconds = next((s for s in INTERVALS_SECONDS if span / s <= TIMELINE_BUCKETS), INTERVALS_SECONDS[-1])
        interval = seconds * 1000
        result = self._search("files", {
            "size": 0,
            "query": {"bool": {"filter": [{"term": {"job_id": job_id}},
                                          {"range": {"completed_at": {"gte": start_ms, "lte": end_ms}}}]}},
            "aggs": {"time": {
                "date_histogram": {"field": "completed_at", "fixed_interval": f"{seconds}s", "min_doc_count": 0,
                                   "extended_bounds": {"min": start_ms, "max": end_ms}},
                "aggs": {"status": {"terms": {"field": "status", "size": 10}}},
            }},
        })
        points = []
        for bucket in result["aggregations"]["time"]["buckets"]:
            counts = {b["key"]: b["doc_count"] for b in bucket["status"]["buckets"]}
            points.append((int(bucket["key"]), counts))
        return interval, points

    # --- workers ---------------------------------------------------------------------------------

    def heartbeats(self, job_id: str, lease_seconds: float) -> dict[str, dict[str, int]]:
        """Per worker (lease owner), from the job's chunks: when it last renewed a lease or finished a chunk, and chunks done.

        A lease is renewed every few seconds while its worker works, so the newest expiry minus
        the lease period is the worker's last heartbeat.
        """
        result = self._search("chunks", {
            "size": 0,
            "query": {"bool": {"filter": [{"term": {"job_id": job_id}}]}},
            "aggs": {"owners": {"terms": {"field": "lease_owner", "size": 1000}, "aggs": {
                "expires": {"max": {"field": "lease_expires_at"}},
                "done": {"max": {"field": "done_at"}},
                "chunks_done": {"filter": {"term": {"status": "DONE"}}},
            }}},
        })
        out = {}
        for bucket in result["aggregations"]["owners"]["buckets"]:
            if not bucket["key"]:
                continue
            expires, done = _value(bucket["expires"]), _value(bucket["done"])
            seen = [int(expires - lease_seconds * 1000)] if expires else []
            seen += [int(done)] if done else []
            out[bucket["key"]] = {"last_seen": max(seen) if seen else 0, "chunks_done": bucket["chunks_done"]["doc_count"]}
        return out

    # --- everything -------------------------------------------------------------------------------

    def jobs_per_status(self) -> dict[str, int]:
        result = self._search("jobs", {"size": 0, "aggs": {"status": {"terms": {"field": "status", "size": 20}}}})
        return {b["key"]: b["doc_count"] for b in result["aggregations"]["status"]["buckets"]}

    def bot_figures(self, bounds_seconds: list[float]) -> list[BotFigures]:
        """Per bot over all its files, in one aggregation: completed files, failures, a histogram of processing times."""
        # a range bucket's `to` is exclusive and durations are whole ms: `le` t is `to` t+1 ms
        ranges = [{"key": str(bound), "to": int(round(bound * 1000)) + 1} for bound in bounds_seconds]
        result = self._search("files", {
            "size": 0,
            "aggs": {"bots": {"terms": {"field": "bot", "size": 1000}, "aggs": {
                "failures": {"sum": {"field": "failures"}},
                # durations under the completed files only: the embedded server counts a null field as 0 in ranges
                "completed": {"filter": {"term": {"status": FileStatus.COMPLETED.value}}, "aggs": {
                    "timed": {"filter": {"exists": {"field": "duration_ms"}}, "aggs": {
                        "le": {"range": {"field": "duration_ms", "ranges": ranges}},
                        "sum": {"sum": {"field": "duration_ms"}},
                    }},
                }},
            }}},
        })
        figures = []
        for bucket in result["aggregations"]["bots"]["buckets"]:
            timed = bucket["completed"]["timed"]
            by_bound = {float(b["to"]): b["doc_count"] for b in timed["le"]["buckets"]}
            figures.append(BotFigures(
                bot=bucket["key"], completed=bucket["completed"]["doc_count"],
                failures=int(_value(bucket["failures"]) or 0),
                durations_le=[(bound, by_bound.get(float(int(round(bound * 1000)) + 1), 0)) for bound in bounds_seconds],
                duration_count=timed["doc_count"],
                duration_sum_seconds=(_value(timed["sum"]) or 0.0) / 1000,
            ))
        return figures
