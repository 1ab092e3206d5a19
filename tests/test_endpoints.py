"""Endpoints over the serving contract: handler defaults, model_s3_path unpacking, errors."""

from __future__ import annotations

import io
import tarfile

import requests
from conftest import BOTS, register_echo, results, submit, upload

from framework.endpoints import EndpointManager
from framework.models import EndpointSpec


def test_model_s3_path_is_unpacked_into_the_model_dir(settings, store, storage, bucket):
    # Given a model archive that raises the echo endpoint's "short" threshold to 100 characters
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"100"
        info = tarfile.TarInfo("threshold.txt")
        info.size = len(data)
        info.mode = 0o600  # packed by someone's umask: the endpoint (uid 1000 in a container) must still read it
        tar.addfile(info, io.BytesIO(data))
    storage.write(bucket, "models/echo.tar.gz", archive.getvalue())
    register_echo(settings, model_s3_path=f"s3://{bucket}/models/echo.tar.gz")
    upload(storage, bucket, {"in/a.txt": "a text longer than ten characters"})

    code, job, stderr = submit(settings, bucket)

    assert code == 0, stderr
    assert results(settings, job["job_id"])[0]["labels"] == ["short", "echo"]
    # unpacked into a folder of a random name (no reference can name it ahead), the archive itself gone
    (unpacked,) = (settings.home / "models" / "echo-upper").glob("model-*/threshold.txt")
    assert unpacked.stat().st_mode & 0o777 == 0o644
    assert not list((settings.home / "models" / "echo-upper").glob("*.tar.gz"))


def test_serving_contract_ping_invocations_and_errors(settings, store):
    manager = EndpointManager(settings, store)
    spec = EndpointSpec(name="contract", image=f"python:{BOTS / 'echo' / 'endpoint.py'}")
    endpoint = manager.ensure_one(spec)
    assert requests.get(endpoint.url + "/ping", timeout=5).status_code == 200
    ok = requests.post(endpoint.url + "/invocations", json={"text": "abc"}, timeout=5)
    assert ok.status_code == 200 and ok.json()["upper"] == "ABC"
    assert ok.headers["Content-Type"] == "application/json"
    broken = requests.post(endpoint.url + "/invocations", data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert broken.status_code == 400 and "JSONDecodeError" in broken.json()["error"]  # the caller's mistake: not retried
    assert requests.get(endpoint.url + "/nothing", timeout=5).status_code == 404
    # ensuring it again reuses the same process; it is never recreated while it answers
    assert manager.ensure_one(spec).pid == endpoint.pid
    # once its process is gone, ensuring starts a new one
    manager.backend("process").stop(endpoint)
    again = manager.ensure_one(spec)
    assert again.pid != endpoint.pid and requests.get(again.url + "/ping", timeout=5).status_code == 200


def test_a_bot_without_endpoints_runs_its_task(settings, store, storage, bucket, tmp_path):
    task = tmp_path / "plain_task.py"
    task.write_text("from framework import bot\n\ndef main_task(name):\n    return bot.read_input(name).decode()[::-1]\n")
    register_echo(settings, bot_image=f"python:{task}", endpoint_name="", endpoint_ecr_image_path="")
    upload(storage, bucket, {"in/a.txt": "stressed"})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    row = results(settings, job["job_id"])[0]
    assert storage.read(bucket, "out/in/a.txt.json") == b"desserts"
    assert row["status"] == "COMPLETED"


def test_a_task_without_main_task_fails_its_workers_clearly(settings, store, storage, bucket, tmp_path):
    task = tmp_path / "empty_task.py"
    task.write_text("def not_main(name):\n    return {}\n")
    register_echo(settings, bot_image=f"python:{task}")
    upload(storage, bucket, {"in/a.txt": "x"})
    code, job, stderr = submit(settings, bucket, "--bots", "1")
    assert code == 4 and job["status"] == "FAILED"
    logs = list((settings.home / "logs" / job["job_id"]).glob("*.log"))
    assert logs and "defines no main_task(file_name)" in logs[0].read_text()
    assert "defines no main_task(file_name)" in store.jobs.get(job["job_id"]).error
    assert len(store.jobs.get(job["job_id"]).workers) == 1  # not relaunched: it would fail the same way
