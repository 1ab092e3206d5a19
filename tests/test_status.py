"""What `status`, `logs` and `jobs list` tell a user is true (issue 15: truthful at a glance, what a job costs)."""

from __future__ import annotations

import json

from conftest import cli_env, register_echo, spotbot, submit, upload, wait_for


def status(settings, job_id: str) -> dict:
    answer = spotbot(settings, "status", job_id, "--json")
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_status_tells_files_in_flight_from_files_claimed_and_rates_only_finished_files(settings, store, storage, bucket):
    # Given 40 files of a second each and two workers working one at a time
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": "SLOW 1" for i in range(40)})
    started = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                      f"s3://{bucket}/out/", "--bots", "2", "--json", env=cli_env(settings, SPOTBOT_CHUNK_SIZE="20"))
    job_id = json.loads(started.stdout)["job_id"]

    # When the job is a few seconds in
    line = wait_for(lambda: (s := status(settings, job_id))["counts"]["COMPLETED"] >= 2 and s, 60, "files to finish")

    # Then what is being worked (one a worker) is told apart from what is only claimed, and the rate is of finished files
    assert 0 < line["in_flight"] <= 2 and line["claimed"] > line["in_flight"]
    assert line["counts"]["PROCESSING"] <= 2 and line["counts"]["NOT_STARTED"] >= line["claimed"]
    assert line["rate_per_second"] > 0
    spotbot(settings, "cancel", job_id)


def test_a_job_says_what_its_workers_cost_and_why_each_stopped(settings, store, storage, bucket):
    # Given a price per worker-hour
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": "SLOW 0.2" for i in range(10)})
    env = cli_env(settings, SPOTBOT_COST_PER_WORKER_HOUR="0.36")

    # When a job runs to its end
    code, job, stderr = submit(settings, bucket, "--bots", "2", env=env)
    assert code == 0, stderr

    # Then its status gives worker time, files per worker-hour and money, consistent with each other
    line = json.loads(spotbot(settings, "status", job["job_id"], "--json", env=env).stdout)
    cost = line["cost"]
    assert cost["worker_seconds"] > 0
    assert abs(cost["cost"] - cost["worker_seconds"] / 3600 * 0.36) < 1e-4
    assert abs(cost["cost_per_1000_files"] - cost["cost"] / 10 * 1000) < 1e-3
    assert abs(cost["files_per_worker_hour"] / (10 / (cost["worker_seconds"] / 3600)) - 1) < 0.02
    # and every worker's record ends with how and why it stopped, and what it worked
    final = store.jobs.get(job["job_id"])
    worked = 0
    for worker in final.workers.values():
        assert worker.state.value == "EXITED" and worker.exit_code == 0, worker
        assert worker.reason.startswith("the job ended COMPLETED; worked "), worker.reason
        worked += int(worker.reason.split("worked ")[1].split()[0])
    assert worked == 10
    text = spotbot(settings, "status", job["job_id"], env=env).stdout
    assert "cost: worker time" in text and "per 1,000 files" in text


def test_logs_of_a_job_whose_endpoint_did_not_start_show_why(settings, store, storage, bucket):
    register_echo(settings, endpoint_ecr_image_path="python:broken_endpoint.py")
    upload(storage, bucket, {"in/a.txt": "a"})
    code, _, _ = submit(settings, bucket, "--job-id", "no-endpoint")
    assert code == 7
    logs = spotbot(settings, "logs", "no-endpoint")
    assert logs.returncode == 0
    assert "ended FAILED before any worker started" in logs.stdout
    assert "this endpoint cannot start: its model is missing" in logs.stdout


def test_jobs_list_has_a_header(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a"})
    code, job, _ = submit(settings, bucket)
    assert code == 0
    listed = spotbot(settings, "jobs", "list").stdout.splitlines()
    assert listed[0].split() == ["JOB", "BOT", "STATUS", "FILES", "INPUT"]
    assert listed[1].startswith(job["job_id"])
