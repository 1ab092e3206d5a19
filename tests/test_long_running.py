"""Long-running jobs (watch mode, the image API): files arrive while the job runs, and it ends only once closed."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import register_echo, upload, wait_for

from framework.errors import ConfigError, WrongState
from framework.launchers.process import ProcessLauncher
from framework.models import Job, JobStatus, WorkerState, now_ms
from framework.scheduler import Scheduler
from framework.storage import S3Location


def completed(store, job_id: str) -> int:
    return store.jobs.counts(job_id)["COMPLETED"]


def test_files_added_to_a_running_job_are_worked_once_and_it_ends_when_closed(settings, store, storage, bucket, tmp_path):
    # Given a long-running job of the echo bot with two workers and nothing to do yet
    register_echo(settings)
    scheduler = Scheduler(settings, store, storage)
    job = scheduler.open("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", workers=2, job_id="live-1")
    assert job.status == JobStatus.RUNNING and job.accepting and job.total == 0
    assert len(scheduler.alive_workers(store.jobs.get("live-1"))) == 2

    # When files arrive in two waves, one of them sent twice
    first = {f"in/a{i}.txt": f"first {i}" for i in range(3)}
    upload(storage, bucket, first)
    assert sorted(scheduler.add_files("live-1", [(key, 1) for key in first])) == sorted(first)
    wait_for(lambda: completed(store, "live-1") == 3, 60, "the first wave to be worked")
    assert scheduler.add_files("live-1", [(key, 1) for key in first]) == []  # known keys are not recorded again
    second = {"in/b0.txt": "second", "in/deep/b1.txt": "second deep"}
    upload(storage, bucket, second)
    assert sorted(scheduler.add_files("live-1", [(key, 1) for key in second])) == sorted(second)
    wait_for(lambda: completed(store, "live-1") == 5, 60, "the second wave to be worked")

    # Then the job keeps running with idle workers until it is closed, and then ends with every file once
    assert store.jobs.get("live-1").status == JobStatus.RUNNING
    closed = scheduler.close("live-1")
    final = wait_for(lambda: (j := store.jobs.get("live-1")).status.terminal and j, 60, "the job to end") \
        if not closed.status.terminal else closed
    assert final.status == JobStatus.COMPLETED and not final.accepting
    assert final.total == 5 and final.counts["COMPLETED"] == 5 and sum(final.counts.values()) == 5
    rows = list(store.files.page("live-1"))
    assert Counter(r.file_key for r in rows) == Counter({**first, **second}.keys())
    outputs = {key for page in storage.pages(S3Location(bucket, "out/")) for key, _ in page}
    assert outputs == {f"out/{key}.json" for key in {**first, **second}}
    body = json.loads(storage.read(bucket, "out/in/deep/b1.txt.json"))
    assert body["upper"] == "SECOND DEEP"

    # and its workers leave once it has ended; a closed job takes no more files
    launcher = ProcessLauncher(settings)
    wait_for(lambda: all(launcher.poll(w)[0] not in (WorkerState.STARTING, WorkerState.RUNNING)
                         for w in store.jobs.get("live-1").workers.values()), 60, "the workers to exit")
    with pytest.raises(WrongState, match="no longer takes files"):
        scheduler.add_files("live-1", [("in/late.txt", 1)])


def test_a_key_outside_the_input_prefix_is_refused(settings, store, storage, bucket):
    register_echo(settings)
    scheduler = Scheduler(settings, store, storage)
    scheduler.open("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", workers=1, job_id="live-2")
    with pytest.raises(ConfigError, match="not under the job's input"):
        scheduler.add_files("live-2", [("elsewhere/x.txt", 1)])
    assert store.jobs.get("live-2").total == 0
    scheduler.cancel("live-2", wait_seconds=10)


def test_a_closed_job_does_not_end_while_an_add_may_still_be_writing(settings, store):
    # Given a closed long-running job whose files are all done, but with an add under way
    job = Job(job_id="live-3", bot="b", input_uri="s3://b/in/", output_uri="s3://b/out/", status=JobStatus.RUNNING,
              adding={"t1": now_ms() + 60_000})
    store.jobs.create(job)
    # Then it cannot be finalized yet
    assert store.jobs.finalize("live-3").status == JobStatus.RUNNING

    # When the add's token has expired (its process died half-way), it can
    def expire(current: Job) -> Job:
        current.adding = {"t1": now_ms() - 1}
        return current

    store.jobs.change("live-3", expire)
    assert store.jobs.finalize("live-3").status == JobStatus.COMPLETED


def test_submit_refuses_the_id_of_a_long_running_job(settings, store, storage, bucket):
    register_echo(settings)
    scheduler = Scheduler(settings, store, storage)
    scheduler.open("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", workers=1, job_id="live-4")
    with pytest.raises(ConfigError, match="long-running"):
        scheduler.submit("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", job_id="live-4")
    scheduler.cancel("live-4", wait_seconds=10)
