"""Helpers shared by the fault-injection tests: run a job in the background and check the invariants.

Every fault test also runs with secrets configured (an API token, Elasticsearch basic-auth credentials)
and ends by searching everything it leaves behind for them: the workers' and endpoints' logs, the
embedded servers' logs and data, the files the test wrote, and every output of the spotbot commands
it ran. No secret may appear in any (issue 14): a fault is where a careless error message prints one.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import SPOTBOT, results, spotbot, wait_for  # noqa: F401 (wait_for is shared with the tests)
from pydantic import SecretStr

from framework.models import FileStatus
from framework.storage import S3Location

# made afresh for each session, so that no file written before can hold them by chance
API_TOKEN = "fault-api-token-" + secrets.token_hex(12)
ES_USER, ES_PASSWORD = "spotbot-faults", "fault-es-password-" + secrets.token_hex(12)
LARGEST_SEARCHED = 64 * 1024 * 1024
# what the commands of the running test printed: (command, stdout + stderr)
OUTPUTS: list[tuple[str, str]] = []


def forms(secret: str, user: str = "") -> list[bytes]:
    """A secret as it may leak: as is, and inside a basic-auth header (base64 of user:secret)."""
    found = [secret.encode()]
    if user:
        found.append(base64.b64encode(f"{user}:{secret}".encode()))
    return found


def leaks(needles: list[bytes], roots: list[Path], outputs: list[tuple[str, str]]) -> list[str]:
    """Where any needle appears: each file under the roots (up to LARGEST_SEARCHED bytes), then each output."""
    found = []
    paths = {p.resolve() for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    for path in sorted(paths):  # (a root may hold another: each file once)
        try:
            if path.stat().st_size > LARGEST_SEARCHED:
                continue
            data = path.read_bytes()
        except OSError:
            continue  # removed while we looked (a server's temporary file)
        found += [f"{path}: {needle[:12].decode()}..." for needle in needles if needle in data]
    for command, text in outputs:
        found += [f"output of `{command}`: {needle[:12].decode()}..." for needle in needles if needle in text.encode()]
    return found


@pytest.fixture
def settings(settings):
    """The suite's settings with secrets in them: the commands and workers of a fault test all receive them."""
    return settings.model_copy(update={"api_token": SecretStr(API_TOKEN), "es_username": ES_USER,
                                       "es_password": SecretStr(ES_PASSWORD)})


@pytest.fixture(autouse=True)
def secrets_stay_home(settings, local_stack, tmp_path, monkeypatch):
    """After the test, no configured secret in any log, file or command output it left behind."""
    OUTPUTS.clear()
    run = subprocess.run

    def recorded(args, *more, **options):
        result = run(args, *more, **options)
        if isinstance(args, (list, tuple)) and args and str(args[0]) == SPOTBOT:
            text = (result.stdout or "") + (result.stderr or "") if options.get("capture_output") else ""
            OUTPUTS.append((" ".join(map(str, args[:4])), text if isinstance(text, str) else text.decode("latin-1")))
        return result

    monkeypatch.setattr(subprocess, "run", recorded)
    yield
    needles = forms(API_TOKEN) + forms(ES_PASSWORD, ES_USER)
    found = leaks(needles, [settings.home, tmp_path, local_stack.home], OUTPUTS)
    assert not found, "secrets in logs or outputs:\n" + "\n".join(found[:20])


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
    OUTPUTS.append((" ".join(map(str, process.args[:4])), out + err))
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
