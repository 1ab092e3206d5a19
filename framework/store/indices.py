"""Index names and their explicit, strict, versioned mappings."""

from __future__ import annotations

# 2: jobs.accepting, jobs.adding, jobs.cursor (long-running jobs); 3: files.confidence;
# 4: chunks.counts, chunks.in_flight, chunks.suspect, chunks.adopted (counts kept per chunk), jobs.closed_at,
# jobs.concurrency, files.label_scores; 5: incremental runs and interruptions (issue 16): the results index,
# files.etag/version_id/modified_at/fingerprint/reused_from, chunks.counts.SKIPPED, jobs.fingerprint/incremental;
# 6: files.error_signature, files.failures, files.duration_ms (errors grouped by cause, /metrics)
MAPPING_VERSION = 6

KEYWORD = {"type": "keyword"}
MILLIS = {"type": "date", "format": "epoch_millis"}
STORED = {"type": "object", "enabled": False}
INT = {"type": "integer"}

MAPPINGS: dict[str, dict] = {
    "bots": {
        "name": KEYWORD,
        "file_types": KEYWORD,
        "bot_image": KEYWORD,
        "bot_image_cmd": {"type": "keyword", "index": False},
        "endpoint_name": KEYWORD,
        "endpoint_ecr_image_path": KEYWORD,
        "instance_type": KEYWORD,
        "model_s3_path": KEYWORD,
        "es_url": {"type": "keyword", "index": False},
        "create_date": KEYWORD,
        "update_date": KEYWORD,
    },
    "jobs": {
        "job_id": KEYWORD,
        "bot": KEYWORD,
        "input_uri": KEYWORD,
        "output_uri": KEYWORD,
        "status": KEYWORD,
        "total": {"type": "long"},
        "chunks": INT,
        "workers_requested": INT,
        "concurrency": INT,
        "workers": STORED,
        "counts": STORED,
        "error": {"type": "text"},
        "events": {"type": "text", "index": False},
        "retries": INT,
        "fingerprint": KEYWORD,
        "incremental": {"type": "boolean"},
        "accepting": {"type": "boolean"},
        "adding": STORED,
        "cursor": STORED,
        "created_at": MILLIS,
        "running_at": MILLIS,
        "finished_at": MILLIS,
        "closed_at": MILLIS,
    },
    "chunks": {
        "chunk_id": KEYWORD,
        "job_id": KEYWORD,
        "seq": INT,
        "batch_id": INT,
        "file_ids": {"type": "keyword", "index": False},
        "status": KEYWORD,
        "lease_owner": KEYWORD,
        "lease_expires_at": MILLIS,
        "claims": INT,
        # per status, how many of its own files are in it: summed per job (the files index is never aggregated to count)
        "counts": {"type": "object", "properties": {status: INT for status in (
            "NOT_STARTED", "PROCESSING", "COMPLETED", "ERROR", "CANCELLED", "SKIPPED")}},
        "in_flight": INT,
        "suspect": {"type": "boolean"},
        "adopted": {"type": "boolean"},
        "created_at": MILLIS,
        "done_at": MILLIS,
    },
    "files": {
        "job_id": KEYWORD,
        "bot": KEYWORD,
        "bucket": KEYWORD,
        "file_key": KEYWORD,
        "chunk_id": KEYWORD,
        "batch_id": INT,
        "status": KEYWORD,
        "attempts": INT,
        "in_flight": {"type": "boolean"},
        "worker_id": KEYWORD,
        "workers": KEYWORD,
        "output_uri": KEYWORD,
        "labels": KEYWORD,
        "confidence": {"type": "float"},
        "label_scores": {"type": "nested", "properties": {"label": KEYWORD, "score": {"type": "float"}}},
        "output": STORED,
        "error": {"type": "text"},
        "error_signature": KEYWORD,
        "failures": INT,
        "duration_ms": INT,
        "size": {"type": "long"},
        "etag": KEYWORD,
        "version_id": KEYWORD,
        "modified_at": MILLIS,
        "fingerprint": KEYWORD,
        "reused_from": KEYWORD,
        "created_at": MILLIS,
        "started_at": MILLIS,
        "completed_at": MILLIS,
    },
    # the latest COMPLETED result per (bot, bucket, key), id = LatestResult.doc_id: read by id by incremental jobs.
    # One index: each document is written once per completion and never updated in between
    "results": {
        "bot": KEYWORD,
        "bucket": KEYWORD,
        "file_key": KEYWORD,
        "job_id": KEYWORD,
        "etag": KEYWORD,
        "version_id": KEYWORD,
        "size": {"type": "long"},
        "fingerprint": KEYWORD,
        "output_uri": KEYWORD,
        "completed_at": MILLIS,
    },
    "endpoints": {
        "name": KEYWORD,
        "backend": KEYWORD,
        "image": KEYWORD,
        "model_s3_path": KEYWORD,
        "status": KEYWORD,
        "url": KEYWORD,
        "pid": INT,
        "host": KEYWORD,
        "error": {"type": "text"},
        "created_at": MILLIS,
        "updated_at": MILLIS,
    },
}


def mapping(kind: str) -> dict:
    return {"dynamic": "strict", "_meta": {"spotbot_mapping_version": MAPPING_VERSION}, "properties": MAPPINGS[kind]}


def index_settings(replicas: int | None) -> dict:
    """Settings of a new index: the engine's defaults unless a number of replicas is asked for."""
    return {} if replicas is None else {"number_of_replicas": replicas}
