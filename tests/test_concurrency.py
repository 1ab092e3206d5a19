"""Many files in flight per worker (issue 13): the bookkeeping keeps every guarantee it had at one at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

from conftest import SPOTBOT, cli_env, register_echo, results, spotbot, submit, upload, wait_for

from framework.models import JobStatus
from framework.storage import S3Location


def outputs(storage, bucket: str) -> Counter:
    return Counter(key for page in storage.pages(S3Location(bucket, "out/")) for key, _ in page)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def most_at_once(spans: list[dict]) -> int:
    """The most spans that overlapped at one moment."""
    edges = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def start(settings, bucket, *extra: str, **env: str) -> str:
    started = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                      f"s3://{bucket}/out/", "--json", *extra, env=cli_env(settings, **env))
    assert started.returncode == 0, started.stderr
    return json.loads(started.stdout)["job_id"]


def test_sixteen_files_run_at_once_in_one_worker(settings, store, storage, bucket, tmp_path):
    # Given one worker with concurrency 16 and 32 files that each take half a second
    register_echo(settings)
    keys = {f"in/{i:02d}.txt": "SLOW 0.5" for i in range(32)}
    upload(storage, bucket, keys)
    spans = tmp_path / "spans.jsonl"

    # When the job runs
    code, job, stderr = submit(settings, bucket, "--bots", "1", "--concurrency", "16",
                               env=cli_env(settings, ECHO_SPANS_LOG=str(spans), SPOTBOT_CHUNK_SIZE="100"))

    # Then sixteen ran at once, each file once, and the job records its concurrency
    assert code == 0, stderr
    assert most_at_once(lines(spans)) == 16
    assert Counter(s["key"] for s in lines(spans)) == Counter(dict.fromkeys(keys, 1))
    final = store.jobs.get(job["job_id"])
    assert final.concurrency == 16 and final.counts["COMPLETED"] == 32
    assert all(r["attempts"] == 1 for r in results(settings, job["job_id"]))


def test_a_worker_killed_with_sixteen_files_in_flight_loses_none_and_does_none_twice(settings, store, storage, bucket,
                                                                                     tmp_path):
    # Given one worker with 16 files in flight (of 40 slow ones), under --wait, with a short lease
    register_echo(settings)
    # (3 s each: sixteen stay in flight for seconds, longer than a real node takes to make the counts searchable)
    keys = {f"in/{i:02d}.txt": "SLOW 3" for i in range(40)}
    upload(storage, bucket, keys)
    spans, calls = tmp_path / "spans.jsonl", tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_SPANS_LOG=str(spans), ECHO_CALLS_LOG=str(calls), SPOTBOT_LEASE_SECONDS="3",
                  SPOTBOT_CHUNK_SIZE="20")
    waiting = subprocess.Popen([SPOTBOT, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                                f"s3://{bucket}/out/", "--bots", "1", "--concurrency", "16", "--wait", "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    job_id = wait_for(lambda: (listed := json.loads(spotbot(settings, "jobs", "list", "--json").stdout)) and
                      listed[0]["job_id"], 60, "the job to be recorded")
    wait_for(lambda: store.jobs.progress(job_id)[1] == 16, 60, "16 files in flight")

    # When the worker is SIGKILLed mid-chunk
    victim = next(iter(store.jobs.get(job_id).workers.values()))
    os.kill(victim.pid, signal.SIGKILL)

    # Then the job completes: every file COMPLETED once, one output each, nothing charged twice
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    rows = results(settings, job_id)
    assert sorted(r["file_key"] for r in rows) == sorted(keys) and {r["status"] for r in rows} == {"COMPLETED"}
    assert outputs(storage, bucket) == Counter({f"out/{key}.json": 1 for key in keys})
    final = store.jobs.get(job_id)
    assert final.status == JobStatus.COMPLETED and final.counts["COMPLETED"] == 40
    # the files the dead worker had in flight were suspects, worked again one at a time; none is charged for another
    assert all(r["attempts"] <= 2 for r in rows)
    assert final.counts == store.files.counts(final.job_id)  # the chunks' sums, checked against the files themselves


def test_a_poison_file_among_files_in_flight_ends_error_and_spares_its_neighbours(settings, store, storage, bucket):
    # Given one chunk of 16 files worked all at once, one of which kills its worker every time
    register_echo(settings)
    keys = [f"in/{i:02d}.txt" for i in range(16)]
    upload(storage, bucket, {**{key: "SLOW 0.3" for key in keys}, "in/07.txt": "EXIT now"})
    env = cli_env(settings, SPOTBOT_LEASE_SECONDS="2", SPOTBOT_MAX_ATTEMPTS="2", SPOTBOT_CHUNK_SIZE="16")

    # When the job runs under --wait (which relaunches dead workers)
    code, job, stderr = submit(settings, bucket, "--bots", "1", "--concurrency", "16", env=env, timeout=400)

    # Then the poison file ends ERROR after max_attempts, and every other file COMPLETED with one attempt
    assert code == 3, stderr
    rows = {r["file_key"]: r for r in results(settings, job["job_id"])}
    poison = rows.pop("in/07.txt")
    assert poison["status"] == "ERROR" and poison["attempts"] == 2
    assert poison["error"].startswith("worker lost while processing 2 time(s)")
    assert {r["status"] for r in rows.values()} == {"COMPLETED"} and {r["attempts"] for r in rows.values()} == {1}


def test_cancel_with_sixteen_in_flight_leaves_nothing_half_written(settings, store, storage, bucket, tmp_path):
    # Given one worker with 16 files in flight of 48 slow ones
    register_echo(settings)
    keys = {f"in/{i:02d}.txt": "SLOW 3" for i in range(48)}
    upload(storage, bucket, keys)
    spans = tmp_path / "spans.jsonl"
    job_id = start(settings, bucket, "--bots", "1", "--concurrency", "16", SPOTBOT_CHUNK_SIZE="100",
                   ECHO_SPANS_LOG=str(spans))
    wait_for(lambda: store.jobs.progress(job_id)[1] == 16, 60, "16 files in flight")

    # When the job is cancelled
    cancelled = spotbot(settings, "cancel", job_id, "--json")
    cancelled_at = time.time()

    # Then the files in flight finish with their outputs, the rest end CANCELLED unrun, and nothing else is written
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "CANCELLED"
    wait_for(lambda: store.chunks.unfinished(job_id) == 0, 60, "the worker to let go of its chunk")
    ran = {span["key"] for span in lines(spans)}
    # the worker learns of the cancel within SPOTBOT_FLUSH_SECONDS: it starts nothing after that
    assert not [span for span in lines(spans) if span["start"] > cancelled_at + settings.flush_seconds]
    rows = results(settings, job_id)
    by_status = Counter(r["status"] for r in rows)
    assert by_status["COMPLETED"] == len(ran) >= 16 and by_status["CANCELLED"] == 48 - len(ran)
    assert {r["file_key"] for r in rows if r["status"] == "COMPLETED"} == ran
    done = {f"out/{key}.json" for key in ran}
    assert set(outputs(storage, bucket)) == done
    assert all(r["attempts"] == 0 for r in rows if r["status"] == "CANCELLED")
    assert store.jobs.get(job_id).counts == {**dict.fromkeys(["NOT_STARTED", "PROCESSING", "ERROR", "SKIPPED"], 0),
                                              "COMPLETED": len(ran), "CANCELLED": 48 - len(ran)}


def test_bytes_in_flight_are_bounded(settings, store, storage, bucket, tmp_path):
    # Given files of 1 MB and room for 2.5 MB of them in memory, at concurrency 16
    register_echo(settings)
    padding = " " + "x" * (1024 * 1024)
    keys = {f"in/{i:02d}.txt": "SLOW 0.3" + padding for i in range(8)}
    upload(storage, bucket, keys)
    spans = tmp_path / "spans.jsonl"
    code, job, stderr = submit(settings, bucket, "--bots", "1", "--concurrency", "16",
                               env=cli_env(settings, ECHO_SPANS_LOG=str(spans), SPOTBOT_MAX_INFLIGHT_BYTES=str(2_600_000),
                                           SPOTBOT_CHUNK_SIZE="100"))
    assert code == 0, stderr
    assert most_at_once(lines(spans)) == 2


def test_main_batch_maps_results_to_their_files_and_a_bad_file_fails_alone(settings, store, storage, bucket, tmp_path):
    # Given a task with main_batch, groups of up to 4, and one bad file among 12
    register_echo(settings, bot_image="python:batch_task.py")
    keys = {f"in/{i:02d}.txt": f"text {i}" for i in range(12)}
    keys["in/05.txt"] = "RAISE this one"
    upload(storage, bucket, keys)
    calls = tmp_path / "calls.jsonl"
    code, job, stderr = submit(settings, bucket, "--bots", "1", "--concurrency", "8",
                               env=cli_env(settings, ECHO_CALLS_LOG=str(calls), SPOTBOT_TASK_BATCH_SIZE="4",
                                           SPOTBOT_MAX_ATTEMPTS="2", SPOTBOT_CHUNK_SIZE="100"))

    # Then each good file's output is its own, the bad one ends ERROR alone, its batch-mates COMPLETED
    assert code == 3, stderr
    rows = {r["file_key"]: r for r in results(settings, job["job_id"])}
    assert rows.pop("in/05.txt")["status"] == "ERROR"
    assert {r["status"] for r in rows.values()} == {"COMPLETED"}
    for key in rows:
        body = json.loads(storage.read(bucket, f"out/{key}.json"))
        assert body["key"] == key and body["upper"] == keys[key].upper()
    groups = [call["keys"] for call in lines(calls)]
    assert max(len(group) for group in groups) == 4  # batched at first
    assert [["in/05.txt"]] == [g for g in groups if "in/05.txt" in g and len(g) == 1][:1]  # then alone


def test_an_async_main_task_runs_many_files_at_once(settings, store, storage, bucket, tmp_path):
    register_echo(settings, bot_image="python:async_task.py")
    keys = {f"in/{i:02d}.txt": "SLOW 0.5" for i in range(16)}
    upload(storage, bucket, keys)
    spans = tmp_path / "spans.jsonl"
    code, job, stderr = submit(settings, bucket, "--bots", "1", "--concurrency", "8",
                               env=cli_env(settings, ECHO_SPANS_LOG=str(spans), SPOTBOT_CHUNK_SIZE="100"))
    assert code == 0, stderr
    assert most_at_once(lines(spans)) == 8
    assert {r["status"] for r in results(settings, job["job_id"])} == {"COMPLETED"}


def test_a_small_job_keeps_every_worker_busy(settings, store, storage, bucket, tmp_path):
    # Given 60 files, two workers and the default chunk size (100): one chunk would leave a worker idle
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": "SLOW 0.1" for i in range(60)})
    calls = tmp_path / "calls.jsonl"
    code, job, stderr = submit(settings, bucket, "--bots", "2",
                               env=cli_env(settings, ECHO_CALLS_LOG=str(calls), SPOTBOT_CHUNK_SIZE="100"))
    assert code == 0, stderr
    by_worker = Counter(call["pid"] for call in lines(calls))
    assert len(by_worker) == 2 and min(by_worker.values()) >= 15
    assert store.jobs.get(job["job_id"]).chunks == 4


def test_a_retry_spreads_its_files_over_the_workers(settings, store, storage, bucket, tmp_path):
    # Given a job whose 105 files all failed
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:03d}.txt": "RAISE" for i in range(105)})
    code, job, stderr = submit(settings, bucket, "--bots", "2", env=cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1",
                                                                            SPOTBOT_CHUNK_SIZE="100"))
    assert code == 3, stderr
    # When they are fixed and retried with two workers
    upload(storage, bucket, {f"in/{i:03d}.txt": "SLOW 0.05" for i in range(105)})
    calls = tmp_path / "calls.jsonl"
    again = spotbot(settings, "retry", job["job_id"], "--wait", "--json",
                    env=cli_env(settings, ECHO_CALLS_LOG=str(calls), SPOTBOT_CHUNK_SIZE="100"))
    assert again.returncode == 0, again.stderr
    by_worker = Counter(call["pid"] for call in lines(calls))
    assert len(by_worker) == 2 and min(by_worker.values()) >= 20


def cpu_seconds(pid: int) -> float:
    """A process's own user + system CPU time so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_worker_waiting_on_its_files_in_flight_sleeps(settings, store, storage, bucket):
    # Given one worker with all sixteen of its files (one chunk) in flight, each taking 10 s, and nothing else to claim
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": "SLOW 10" for i in range(16)})
    job_id = start(settings, bucket, "--bots", "1", "--concurrency", "16", SPOTBOT_CHUNK_SIZE="16")
    wait_for(lambda: store.jobs.progress(job_id)[1] == 16, 60, "16 files in flight")
    pid = next(w.pid for w in store.jobs.get(job_id).workers.values() if w.pid)

    # When it waits for them for two seconds
    before = cpu_seconds(pid)
    time.sleep(2)
    used = cpu_seconds(pid) - before

    # Then it sleeps meanwhile (its deciding loop once polled without pause, a core's worth of CPU)
    assert used < 0.3, f"the worker used {used:.2f} s of CPU in 2 s with nothing to do but wait"
    spotbot(settings, "cancel", job_id)
