"""Fault injection with real processes and real servers. Each test ends with the invariants:
every key one file document, counts adding up, one output per COMPLETED file, nothing left
PROCESSING, the right final state. Figures each test saw are printed (pytest -s shows them)."""

from __future__ import annotations

import json
import os
import signal
import time

from conftest import BOTS, cli_env, embedded_only, register_echo, spotbot, upload

from .conftest import background_submit, calls, calls_by_key, check_invariants, finish, job_id_of, running_workers, wait_for


def slow_files(n: int, seconds: float = 0.2) -> dict[str, str]:
    return {f"in/{i:03d}.txt": f"SLOW {seconds}" for i in range(n)}


def start_slow_job(settings, storage, bucket, tmp_path, files: dict, workers: int, begun: int, **env: str):
    """Submit the echo bot over files in the background (--wait) and return once `begun` calls were made."""
    register_echo(settings)
    upload(storage, bucket, files)
    log = tmp_path / "calls.jsonl"
    job = background_submit(bucket, cli_env(settings, ECHO_CALLS_LOG=str(log), **env), "--bots", str(workers))
    wait_for(lambda: len(calls(log)) >= begun, 60, "work to begin")
    return job, log


def test_killing_two_workers_mid_job_loses_nothing(settings, store, storage, bucket, tmp_path):
    # Given 48 slow files and three workers under --wait (about 6 s of work: enough for two kills to land
    # mid-job even when each CLI call that finds a worker takes a second or two on a loaded machine)
    files = slow_files(48, 0.4)
    started = time.monotonic()
    job, log = start_slow_job(settings, storage, bucket, tmp_path, files, 3, 4, SPOTBOT_LEASE_SECONDS="3")

    # When one worker is killed mid-work, and then a second one
    job_id = job_id_of(settings)
    first = sorted(running_workers(settings, job_id).items())[0]
    os.kill(first[1], signal.SIGKILL)
    seen = len(calls(log))
    wait_for(lambda: len(calls(log)) >= seen + 4, 60, "work to go on")
    second = next(item for item in sorted(running_workers(settings, job_id).items()) if item[0] != first[0])
    os.kill(second[1], signal.SIGKILL)

    # Then the job completes; the killed workers' unfinished files were worked again
    code, data, err = finish(job)
    assert code == 0, err
    rows, final = check_invariants(settings, store, storage, bucket, job_id, list(files), "COMPLETED")
    redone = {key: n for key, n in calls_by_key(log).items() if n > 1}
    assert len(redone) <= 2 * settings.chunk_size
    relaunches = [e for e in final.events if "relaunched worker" in e]
    assert {first[0], second[0]} <= {w for w, info in final.workers.items() if info.exit_code == -9 or info.state.value != "EXITED"}
    print(f"\nkill two workers: {len(files)} files, {len(redone)} worked twice, {len(relaunches)} relaunch(es), "
          f"{time.monotonic() - started:.1f}s in all")


def test_poison_file_ends_error_after_max_attempts(settings, store, storage, bucket):
    register_echo(settings)
    keys = [f"in/{i:02d}.txt" for i in range(8)]
    upload(storage, bucket, {**{key: "fine" for key in keys}, "in/03.txt": "EXIT now"})
    env = cli_env(settings, SPOTBOT_LEASE_SECONDS="2", SPOTBOT_MAX_ATTEMPTS="2", SPOTBOT_CHUNK_SIZE="4")
    started = time.monotonic()
    code, data, err = finish(background_submit(bucket, env, "--bots", "1"))
    assert code == 3, err
    rows, final = check_invariants(settings, store, storage, bucket, data["job_id"], keys, "COMPLETED_WITH_ERRORS")
    poison = next(r for r in rows if r["file_key"] == "in/03.txt")
    assert poison["status"] == "ERROR" and poison["attempts"] == 2
    assert poison["error"].startswith("worker lost while processing 2 time(s) (workers: ")
    assert all(r["status"] == "COMPLETED" for r in rows if r is not poison)
    deaths = sum(1 for w in final.workers.values() if w.exit_code == 17)
    print(f"\npoison file: {deaths} worker deaths, {len(final.workers)} workers in all, {time.monotonic() - started:.1f}s")


def run_through_outage(settings, store, storage, bucket, tmp_path, stop, restart) -> tuple[list[dict], float, int]:
    """A job of 20 slow files, with a server stopped for three seconds once work has begun.

    Returns the files' rows (invariants checked), how long the server was away, and how many
    files were worked twice."""
    files = slow_files(20, 0.1)
    job, log = start_slow_job(settings, storage, bucket, tmp_path, files, 2, 4)
    job_id = job_id_of(settings)

    stop()
    down_at = time.monotonic()
    time.sleep(3)  # the fault: the server away for three seconds
    restart()
    back_at = time.monotonic()

    code, data, err = finish(job)
    assert code == 0, err
    rows, _ = check_invariants(settings, store, storage, bucket, job_id, list(files), "COMPLETED")
    redone = sum(1 for n in calls_by_key(log).values() if n > 1)
    print(f"\n{time.monotonic() - back_at:.1f}s to finish after the server came back", end="")
    return rows, back_at - down_at, redone


@embedded_only
def test_elasticsearch_restart_mid_job(settings, store, storage, bucket, tmp_path, local_stack):
    rows, away, redone = run_through_outage(settings, store, storage, bucket, tmp_path, local_stack.stop_es, local_stack.up)
    print(f"; ES restart: away {away:.1f}s, {redone} file(s) worked twice")


def test_s3_restart_mid_job(settings, store, storage, bucket, tmp_path, local_stack):
    rows, away, redone = run_through_outage(settings, store, storage, bucket, tmp_path, local_stack.stop_s3, local_stack.up)
    assert all(r["attempts"] == 1 for r in rows)  # the outage was retried, not charged to the files
    print(f"; S3 restart: away {away:.1f}s, {redone} file(s) worked twice")


def test_failing_and_hanging_endpoint(settings, store, storage, bucket, tmp_path):
    # Given an endpoint that fails each input's first call, always fails one input and hangs on another
    register_echo(settings, endpoint_name="flaky", endpoint_ecr_image_path=f"python:{BOTS / 'echo' / 'flaky_endpoint.py'}")
    files = {f"in/{i:02d}.txt": f"text {i}" for i in range(12)}
    upload(storage, bucket, {**files, "in/always.txt": "ALWAYS500", "in/hang.txt": "HANG"})
    env = cli_env(settings, SPOTBOT_ENDPOINT_TIMEOUT="1", SPOTBOT_RETRY_SECONDS="3", SPOTBOT_MAX_ATTEMPTS="2")
    started = time.monotonic()

    code, data, err = finish(background_submit(bucket, env, "--bots", "2"))

    # Then passing failures were retried away and the persistent ones are ERROR with the reason
    assert code == 3, err
    keys = [*files, "in/always.txt", "in/hang.txt"]
    rows, _ = check_invariants(settings, store, storage, bucket, data["job_id"], keys, "COMPLETED_WITH_ERRORS")
    by_key = {r["file_key"]: r for r in rows}
    assert all(by_key[k]["status"] == "COMPLETED" and by_key[k]["attempts"] == 1 for k in files)
    assert by_key["in/always.txt"]["status"] == "ERROR" and "answered 500" in by_key["in/always.txt"]["error"]
    assert "this input always fails" in by_key["in/always.txt"]["error"]
    assert by_key["in/hang.txt"]["status"] == "ERROR" and "did not answer within 1s" in by_key["in/hang.txt"]["error"]
    assert by_key["in/always.txt"]["attempts"] == 2
    print(f"\nflaky endpoint: {len(files)} completed despite a failed first call each, 2 ERROR, {time.monotonic() - started:.1f}s")


def test_killed_endpoint_is_restarted_and_the_job_finishes(settings, store, storage, bucket, tmp_path):
    files = slow_files(30, 0.3)  # about 4.5 s of work for two workers: the kill lands mid-job
    job, log = start_slow_job(settings, storage, bucket, tmp_path, files, 2, 3)
    before = json.loads(spotbot(settings, "endpoints", "list", "--json").stdout)[0]
    os.killpg(before["pid"], signal.SIGKILL)
    killed_at = time.monotonic()

    code, data, err = finish(job)
    assert code == 0, err
    rows, final = check_invariants(settings, store, storage, bucket, data["job_id"], list(files), "COMPLETED")
    after = json.loads(spotbot(settings, "endpoints", "list", "--json").stdout)[0]
    assert after["pid"] != before["pid"] and after["healthy"]
    assert all(r["attempts"] == 1 for r in rows)
    print(f"\nkilled endpoint: restarted (pid {before['pid']} -> {after['pid']}), job done "
          f"{time.monotonic() - killed_at:.1f}s after the kill")


def test_two_submits_of_one_job_id_at_once(settings, store, storage, bucket, tmp_path):
    register_echo(settings)
    files = {f"in/{i:03d}.txt": str(i) for i in range(40)}
    upload(storage, bucket, files)
    log = tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_CALLS_LOG=str(log))
    first = background_submit(bucket, env, "--job-id", "twin")
    second = background_submit(bucket, env, "--job-id", "twin")
    results_ = [finish(first), finish(second)]
    assert [r[0] for r in results_] == [0, 0], [r[2] for r in results_]
    assert json.loads(spotbot(settings, "jobs", "list", "--json").stdout)[0]["job_id"] == "twin"
    check_invariants(settings, store, storage, bucket, "twin", list(files), "COMPLETED")
    assert calls_by_key(log) == {key: 1 for key in files}


def test_cancel_mid_job_then_retry(settings, store, storage, bucket, tmp_path):
    # Given a slow job under way (about 8 s of work for two workers, so the cancel lands mid-job on a loaded machine)
    register_echo(settings)
    files = slow_files(40, 0.4)
    upload(storage, bucket, files)
    log = tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_CALLS_LOG=str(log), SPOTBOT_FLUSH_SECONDS="0.5")
    started = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                      f"s3://{bucket}/out/", "--bots", "2", "--json", env=env)
    job_id = json.loads(started.stdout)["job_id"]
    wait_for(lambda: len(calls(log)) >= 4, 60, "work to begin")

    # When it is cancelled
    cancelled = spotbot(settings, "cancel", job_id, "--json", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    _, job = check_invariants(settings, store, storage, bucket, job_id, list(files), "CANCELLED")
    assert job.counts["CANCELLED"] > 0 and job.counts["COMPLETED"] > 0
    worked_before = set(calls_by_key(log))
    wait_for(lambda: not running_workers(settings, job_id), 30, "the workers to stop")

    # Then a retry runs exactly the cancelled files, once each
    retried = spotbot(settings, "retry", job_id, "--wait", "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    rows, final = check_invariants(settings, store, storage, bucket, job_id, list(files), "COMPLETED")
    assert calls_by_key(log) == {key: 1 for key in files}
    assert len(worked_before) == job.counts["COMPLETED"]
    assert any("retry 1" in e for e in final.events)
    print(f"\ncancel + retry: {job.counts['COMPLETED']} done before the cancel, {job.counts['CANCELLED']} cancelled, "
          f"all {len(files)} completed after the retry, each worked once")
