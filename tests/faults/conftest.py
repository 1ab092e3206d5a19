"""Helpers shared by the fault-injection tests: run a job in the background and check the invariants."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

from conftest import SPOTBOT, results, spotbot, wait_for  # noqa: F401 (wait_for is shared with the tests)

from framework.models import FileStatus
from framework.storage import S3Location


def calls(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def calls_by_key(path) -> Counter:
    return Counter(call["key"] for call in calls(path))


def background_submit(bucket: str, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([SPOTBOT, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                             f"s3://{bucket}/out/", "--wait", "--json", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, dict, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, (json.loads(out) if out.strip() else {}), err


def running_workers(settings, job_id: str) -> dict[str, int]:
    result = spotbot(settings, "status", job_id, "--json")
    if result.returncode != 0:
        return {}
    return {w["id"]: w["pid"] for w in json.loads(result.stdout)["workers"] if w["state"] == "RUNNING"}


def job_id_of(settings) -> str:
    listed = json.loads(spotbot(settings, "jobs", "list", "--json").stdout or "[]")
    return listed[0]["job_id"] if listed else ""


def check_invariants(settings, store, storage, bucket: str, job_id: str, keys: list[str], final: str):
    """Every key one file document; counts add up; every COMPLETED file one output; none PROCESSING; final state."""
    rows = results(settings, job_id)
    assert sorted(r["file_key"] for r in rows) == sorted(keys)
    store.refresh("files")
    assert store.count("files", {"term": {"job_id": job_id}}) == len(keys)
    by_status = Counter(r["status"] for r in rows)
    assert by_status[FileStatus.PROCESSING.value] == 0 and by_status[FileStatus.NOT_STARTED.value] == 0
    job = store.jobs.get(job_id)
    assert job.status.value == final
    assert sum(job.counts.values()) == job.total == len(keys)
    assert {k: v for k, v in job.counts.items() if v} == dict(by_status)
    outputs = Counter(key for page in storage.pages(S3Location(bucket, "out/")) for key, _ in page)
    for row in rows:
        if row["status"] == "COMPLETED":
            assert outputs[f"out/{row['file_key']}.json"] == 1
    return rows, job
