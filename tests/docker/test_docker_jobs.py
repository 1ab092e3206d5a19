"""Jobs with the docker launcher and docker endpoints: real containers on a real engine, against the
suite's embedded Elasticsearch and S3. Figures each test saw are printed (pytest -s shows them)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections import Counter

import requests
from docker_support import (OCR_ENDPOINT, TASKS, background_submit, containers_of, engine,  # noqa: F401
                            no_container_left, register_task_bot, settings)
from faults.conftest import check_invariants, finish

from conftest import ROOT, SPOTBOT, cli_env, results, spotbot, upload, wait_for

from framework.storage import parse_uri

sys.path.insert(0, str(ROOT / "bots" / "doc_ocr"))
from samples import DOCUMENTS, render  # noqa: E402


def png(lines: list[str]) -> bytes:
    image = io.BytesIO()
    render(lines).save(image, format="PNG")
    return image.getvalue()


def test_sample_bot_runs_in_containers_end_to_end(settings, store, storage, bucket, engine):
    # Given three rendered documents and the doc_ocr bot registered with its container images
    chosen = dict(list(DOCUMENTS.items())[:3])
    upload(storage, bucket, {f"in/{name}": png(lines) for name, lines in chosen.items()})
    assert spotbot(settings, "bots", "register", str(ROOT / "bots" / "doc_ocr" / "bot_config.docker.json")).returncode == 0
    started = time.monotonic()

    # When a job runs with two worker containers and the OCR model in an endpoint container
    result = spotbot(settings, "submit", "--bot", "doc_ocr", "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", "--bots", "2", "--wait", "--json", timeout=600)

    # Then every document's text was read word for word
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    took = time.monotonic() - started
    rows = results(settings, job["job_id"])
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" and r["attempts"] == 1 for r in rows)
    for row in rows:
        location = parse_uri(row["output_uri"])
        text = json.loads(storage.read(location.bucket, location.prefix))["text"]
        assert "".join(text.split()) == "".join("\n".join(chosen[row["file_key"].removeprefix("in/")]).split())

    # and the endpoint is a running container of the image, answering /ping and /invocations itself
    (endpoint,) = containers_of(engine, settings, "endpoint")
    assert endpoint.status == "running" and endpoint.image.tags == [OCR_ENDPOINT]
    assert endpoint.labels["spotbot.endpoint"] == "doc-ocr-container"
    recorded = store.endpoints.get("doc-ocr-container")[0]
    assert recorded.backend == "docker" and recorded.url == f"http://127.0.0.1:{endpoint.labels['spotbot.port']}"
    assert requests.get(recorded.url + "/ping", timeout=5).status_code == 200
    answer = requests.post(recorded.url + "/invocations", data=png(["HELLO CONTAINER"]),
                           headers={"Content-Type": "image/png"}, timeout=60)
    assert answer.status_code == 200 and "".join("".join(line["text"].split()) for line in answer.json()["lines"]) == "HELLOCONTAINER"

    # and the workers were containers of the worker image, removed once done, their logs kept
    status = json.loads(spotbot(settings, "status", job["job_id"], "--json").stdout)
    assert len(status["workers"]) == 2 and {w["backend"] for w in status["workers"]} == {"docker"}
    assert {w["state"] for w in status["workers"]} == {"EXITED"}
    assert containers_of(engine, settings, "worker") == []
    logs = spotbot(settings, "logs", job["job_id"])
    assert logs.returncode == 0, logs.stderr
    assert "file(s) worked" in logs.stdout and all(f"[{w['id']}] " in logs.stdout for w in status["workers"])
    print(f"\ndoc_ocr in containers: 3 documents, 2 workers, {took:.1f}s including the endpoint's start")


def test_container_exits_are_recorded_and_relaunched(settings, store, storage, bucket):
    # Given files of which one makes its worker exit 3 and one makes it run out of its 256 MiB
    register_task_bot(settings)
    keys = [f"in/{i:02d}.txt" for i in range(8)]
    upload(storage, bucket, {**{key: "fine" for key in keys}, "in/02.txt": "EXIT 3", "in/05.txt": "EAT 1024"})
    env = cli_env(settings, SPOTBOT_DOCKER_MOUNTS=f"{TASKS}:/opt/tests", SPOTBOT_DOCKER_MEMORY="256m",
                  SPOTBOT_LEASE_SECONDS="2", SPOTBOT_MAX_ATTEMPTS="2", SPOTBOT_CHUNK_SIZE="4")
    started = time.monotonic()

    # When a job runs them with two worker containers under --wait
    code, data, err = finish(background_submit(bucket, env, "containers", "--bots", "2"))

    # Then both files end ERROR after two attempts each, the rest COMPLETED
    assert code == 3, err
    rows, job = check_invariants(settings, store, storage, bucket, data["job_id"], keys, "COMPLETED_WITH_ERRORS")
    for key in ("in/02.txt", "in/05.txt"):
        row = next(r for r in rows if r["file_key"] == key)
        assert row["status"] == "ERROR" and row["attempts"] == 2
        assert row["error"].startswith("worker lost while processing 2 time(s)")
    assert all(r["status"] == "COMPLETED" for r in rows if r["file_key"] not in ("in/02.txt", "in/05.txt"))
    # and every container exit is on the job, with its code and (for the OOM kill) why
    exits = Counter(w.exit_code for w in job.workers.values() if w.state.value == "FAILED")
    shown = "\n".join(f"{w.id} {w.exit_code} {w.reason}" for w in job.workers.values())
    assert set(exits) == {3, 137} and exits[3] >= 2 and exits[137] >= 2, shown
    oom = [w for w in job.workers.values() if w.exit_code == 137]
    assert all(w.reason == "exit code 137 (out of memory: the container was killed at 256 MiB (SPOTBOT_DOCKER_MEMORY))"
               for w in oom), shown
    # and each dead container was replaced, within the relaunch budget (2 x 2 workers + 2 attempts + 1)
    relaunches = [e for e in job.events if "relaunched worker" in e]
    assert len(relaunches) == sum(exits.values()) <= 7
    assert len(job.workers) == 2 + len(relaunches)
    print(f"\ncontainer exits: {len(job.workers)} containers, {dict(exits)} exits by code, "
          f"{time.monotonic() - started:.1f}s")


def test_relaunches_stop_at_the_budget_and_every_log_is_kept(settings, store, storage, bucket, engine):
    # Given a worker command that always fails, and one attempt per file (a budget of 4 relaunches for 1 worker)
    register_task_bot(settings, bot_image_cmd="python3 -c \"print('cannot reach the model store'); raise SystemExit(3)\"")
    upload(storage, bucket, {f"in/{i}.txt": "fine" for i in range(3)})

    # When the job runs
    code, data, err = finish(background_submit(bucket, cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1"), "containers",
                                               "--bots", "1"))

    # Then it fails once the budget is spent, each container's exit recorded with its last words
    assert code == 4, err
    job = store.jobs.get(data["job_id"])
    assert job.status.value == "FAILED" and "relaunch budget is spent" in job.error
    assert len(job.workers) == 5 and all(w.exit_code == 3 for w in job.workers.values())
    assert all(w.reason == "exit code 3 (cannot reach the model store)" for w in job.workers.values())
    assert len([e for e in job.events if "relaunched worker" in e]) == 4
    # and the containers are gone, their output still readable
    assert containers_of(engine, settings, "worker") == []
    first = min(job.workers.values(), key=lambda w: w.started_at)
    one = spotbot(settings, "logs", job.job_id, "--worker", first.id)
    assert one.returncode == 0 and one.stdout.strip() == "cannot reach the model store"
    every = spotbot(settings, "logs", job.job_id)
    assert sorted(every.stdout.splitlines()) == sorted(f"[{w}] cannot reach the model store" for w in job.workers)
    unknown = spotbot(settings, "logs", job.job_id, "--worker", "w9-nobody")
    assert unknown.returncode == 5 and f"has no worker 'w9-nobody'; its workers: {', '.join(sorted(job.workers))}" in unknown.stderr


def test_killing_a_worker_container_mid_job_loses_nothing(settings, store, storage, bucket, engine, tmp_path):
    # Given 24 slow files, two worker containers, and a folder where the task notes every call
    register_task_bot(settings)
    files = {f"in/{i:03d}.txt": "SLOW 0.3" for i in range(24)}
    upload(storage, bucket, files)
    calls = tmp_path / "calls"
    calls.mkdir()
    calls.chmod(0o777)  # the containers write as uid 1000
    log = calls / "calls.jsonl"
    env = cli_env(settings, SPOTBOT_DOCKER_MOUNTS=f"{TASKS}:/opt/tests,{calls}:/calls:rw", SPOTBOT_LEASE_SECONDS="3",
                  SPOTBOT_DOCKER_CPUS="0.5")
    started = time.monotonic()
    job = background_submit(bucket, env, "containers", "--bots", "2")
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, 120, "work to begin")
    job_id = json.loads(spotbot(settings, "jobs", "list", "--json").stdout)[0]["job_id"]
    follower = subprocess.Popen([SPOTBOT, "logs", job_id, "--follow"], env=cli_env(settings), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    # the worker containers run as the settings say: labelled, limited, unprivileged, host network, given mounts only
    running = containers_of(engine, settings, "worker")
    assert len(running) == 2
    victim = running[0]
    config = victim.attrs["HostConfig"]
    assert victim.labels["spotbot.bot"] == "containers" and victim.labels["spotbot.worker"].startswith("w")
    assert config["Privileged"] is False and config["CapDrop"] == ["ALL"] and "no-new-privileges" in config["SecurityOpt"]
    assert config["NetworkMode"] == "host" and config["NanoCpus"] == 500_000_000 and config["Memory"] == 2**30
    assert sorted((m["Destination"], m["RW"]) for m in victim.attrs["Mounts"]) == [("/calls", True), ("/opt/tests", False)]
    assert victim.attrs["Config"]["Env"].count("SPOTBOT_HOME=/tmp/spotbot") == 1
    # and hold the settings a worker uses, none of the API's (its token above all) nor the launchers'
    names = {entry.partition("=")[0] for entry in victim.attrs["Config"]["Env"]}
    assert "SPOTBOT_ES_URL" in names and not {n for n in names if n.startswith(("SPOTBOT_API_", "SPOTBOT_DOCKER_MOUNTS"))}

    # When one worker container is killed mid-work
    victim.kill()

    # Then the job completes with every file done once; the killed worker's exit is on the job
    code, data, err = finish(job)
    assert code == 0, err
    rows, final = check_invariants(settings, store, storage, bucket, data["job_id"], list(files), "COMPLETED")
    worked = Counter(json.loads(line)["key"] for line in log.read_text().splitlines())
    redone = {key: n for key, n in worked.items() if n > 1}
    assert len(redone) <= settings.chunk_size
    killed = final.workers[victim.labels["spotbot.worker"]]
    assert killed.exit_code == 137 and killed.reason.startswith("exit code 137")
    assert any(f"relaunched worker {killed.id}" in e for e in final.events)
    assert containers_of(engine, settings, "worker") == []
    # and `logs --follow` showed both first workers' lines as they came, and ended with them
    followed, errors = follower.communicate(timeout=60)
    assert follower.returncode == 0, errors
    for worker in running:
        assert f"[{worker.labels['spotbot.worker']}] working on in/" in followed
    print(f"\nkill a worker container: {len(files)} files, {len(redone)} worked twice, "
          f"{len(final.workers)} containers in all, {time.monotonic() - started:.1f}s")
