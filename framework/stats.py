"""Class counts of a job per day and label (seed 001's PredictionsTable), from one aggregation over its files.

The seed's Lambda kept a running Count_ClassName per day: it scanned for the last count, added
one and wrote a new item, so two images classified at once both wrote the same count. Here
nothing is counted ahead of time: the files' own documents (labels, completed_at, confidence)
are aggregated when asked, after a refresh, so the counts are those of the files as they are.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .errors import ConfigError
from .models import FileStatus
from .store import Store

DIMENSIONS = ("day", "label", "status")
OFFSET = re.compile(r"^[+-](0\d|1[0-4]):[0-5]\d$")
OTHER = "(other)"


def parse_by(value: str) -> list[str]:
    """'day,label' -> ['day', 'label']; the error names --by and the choices."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    bad = [part for part in parts if part not in DIMENSIONS]
    if not parts or bad or len(set(parts)) != len(parts):
        raise ConfigError(f"{value!r}: give one or more of {', '.join(DIMENSIONS)}, comma-separated, each once "
                          "(e.g. day,label)", field="--by")
    return parts


def parse_offset(value: str) -> str:
    """A UTC offset like +02:00 (or UTC). Named zones are refused: the embedded server would silently ignore them."""
    if value.upper() in ("UTC", "Z", "GMT"):
        return "+00:00"
    if not OFFSET.match(value):
        raise ConfigError(f"{value!r} is not a UTC offset like +02:00 or -05:00 (or UTC)", field="--tz")
    return value


def _dimension(name: str, offset: str, top: int) -> dict:
    if name == "day":
        return {"date_histogram": {"field": "completed_at", "calendar_interval": "day", "time_zone": offset,
                                   "format": "yyyy-MM-dd", "min_doc_count": 1}}
    return {"terms": {"field": "labels" if name == "label" else "status", "size": top, "order": {"_key": "asc"}}}


LEAF = {
    # value_count tells whether any file had a confidence: an avg over none is null on Elasticsearch but 0 elsewhere
    "scored": {"value_count": {"field": "confidence"}},
    "confidence": {"avg": {"field": "confidence"}},
    "first": {"min": {"field": "completed_at"}},
    "last": {"max": {"field": "completed_at"}},
}


def class_counts(store: Store, job_id: str, by: list[str], *, offset: str = "+00:00", top: int = 100) -> dict[str, Any]:
    """Rows of (dimension values..., count, confidence_avg, first_at, last_at), and the files they cover.

    Files count under each of their labels (a file labelled "cat" and "pet" is in both rows). Without
    `status` among the dimensions only COMPLETED files count; with it, every file that ended.
    """
    store.jobs.get(job_id)  # NotFound names the job
    filters: list[dict] = [{"term": {"job_id": job_id}}, {"exists": {"field": "completed_at"}}]
    if "status" not in by:
        filters.append({"term": {"status": FileStatus.COMPLETED.value}})
    aggs: dict = {}
    inner = aggs
    for name in by:
        node = {**_dimension(name, offset, top)}
        inner["by_" + name] = node
        node["aggs"] = {}
        inner = node["aggs"]
    inner.update(LEAF)
    if "label" in by:  # each label's own score: the files' label_scores, a nested field
        inner["label_scores"] = {"nested": {"path": "label_scores"}, "aggs": {"label": {
            "terms": {"field": "label_scores.label", "size": 1000}, "aggs": {"score": {"avg": {"field": "label_scores.score"}}}}}}
    store.refresh("files")
    answer = store.engine.search(store.target("files"), {"size": 0, "track_total_hits": True,
                                                        "query": {"bool": {"filter": filters}}, "aggs": aggs})
    rows: list[dict[str, Any]] = []
    _walk(answer["aggregations"], by, {}, rows, offset)
    total = answer["hits"]["total"]
    return {"job_id": job_id, "by": by, "tz": offset, "files": total["value"] if isinstance(total, dict) else total,
            "rows": rows}


def _walk(node: dict, by: list[str], values: dict, rows: list, offset: str) -> None:
    if not by:
        rows.append({**values, **_leaf(node, offset, values.get("label"))})
        return
    name, rest = by[0], by[1:]
    group = node["by_" + name]
    for bucket in group.get("buckets", []):
        if bucket.get("doc_count", 0) == 0:
            continue  # an empty day between two others
        key = bucket.get("key_as_string", bucket["key"]) if name == "day" else bucket["key"]
        _walk(bucket, rest, {**values, name: key}, rows, offset)
    if group.get("sum_other_doc_count"):
        # more labels than --top: their files are counted apart, so the rows still add up
        rows.append({**values, name: OTHER, **{n: None for n in rest}, "count": group["sum_other_doc_count"],
                     "confidence_avg": None, "first_at": None, "last_at": None})


def _leaf(bucket: dict, offset: str, label: str | None = None) -> dict[str, Any]:
    """A row's figures. Under a label, its confidence is that label's own score where the files gave one
    (a photo labelled "cat 0.9, window screen 0.01" counts 0.01 for window screen), else the files' confidence."""
    scored = (bucket.get("scored") or {}).get("value") or 0
    confidence = (bucket.get("confidence") or {}).get("value")
    own = next((b for b in ((bucket.get("label_scores") or {}).get("label") or {}).get("buckets", [])
                if b["key"] == label), None) if label is not None else None
    if own is not None and (own.get("score") or {}).get("value") is not None:
        scored, confidence = own["doc_count"], own["score"]["value"]
    return {
        "count": bucket["doc_count"],
        "confidence_avg": round(confidence, 4) if scored and confidence is not None else None,
        "first_at": _stamp((bucket.get("first") or {}).get("value"), offset),
        "last_at": _stamp((bucket.get("last") or {}).get("value"), offset),
    }


def _stamp(millis: float | None, offset: str) -> str | None:
    if millis is None:
        return None
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    zone = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    return dt.datetime.fromtimestamp(millis / 1000, zone).isoformat(timespec="seconds")
