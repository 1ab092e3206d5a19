"""Graceful stops (issue 16): a worker SIGTERMed, or warned of a Spot interruption by the instance metadata
service, gives its chunks back at once: the rest is worked elsewhere before its lease would have expired,
no attempt is charged for what it gave back, every file is worked once and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter
from pathlib import Path

from conftest import cli_env, register_echo, results, spotbot, submit, upload, wait_for
from imds_standin import InstanceMetadata

from framework.launchers import WorkerSpec
from framework.models import ChunkStatus, FileStatus, JobStatus, now_ms
from framework.scheduler import Scheduler
from framework.storage import S3Location

FILES = 24


def outputs(storage, bucket: str) -> Counter:
    return Counter(key for page in storage.pages(S3Location(bucket, "out/")) for key, _ in page)


def calls(log: Path) -> Counter:
    return Counter(json.loads(line)["key"] for line in log.read_text().splitlines()) if log.exists() else Counter()


def held_by(store, job_id: str, worker_id: str) -> list:
    """The chunks a worker holds now, as stored."""
    return [chunk for chunk in store.chunks.of_job(job_id)
            if chunk.status == ChunkStatus.LEASED and chunk.lease_owner == worker_id]


def start_job(settings, store, storage, bucket, log: Path, victim_env: dict[str, str]):
    """A job of slow files worked by two workers, one of them (`victim`, batch 1) with an environment of its own.

    A long lease (30 s): a chunk taken over only once it expired would be taken long after the stop.
    """
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": "SLOW 3" for i in range(FILES)})
    settings = settings.model_copy(update={"lease_seconds": 30, "concurrency": 2, "stop_grace_seconds": 0.5})
    scheduler = Scheduler(settings, store, storage)
    job = scheduler.create_job("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", workers=2, job_id="stopping")
    bot = store.bots.get("echo")
    scheduler.scan(job, bot, S3Location(bucket, "in/"))
    job = store.jobs.get(job.job_id)
    scheduler.endpoints.ensure(bot)
    spec = WorkerSpec(job.job_id, bot, "victim", 1)
    spec.environment = {**scheduler.worker_environment(job, bot, spec), "ECHO_CALLS_LOG": str(log), **victim_env}
    victim = scheduler.launcher.launch(spec)
    store.jobs.record_workers(job.job_id, [victim])
    other = WorkerSpec(job.job_id, bot, "other", 0)
    other.environment = {**scheduler.worker_environment(job, bot, other), "ECHO_CALLS_LOG": str(log)}
    store.jobs.record_workers(job.job_id, [scheduler.launcher.launch(other)])
    # mid-chunk: the victim has finished files of a chunk it holds and has more in flight
    wait_for(lambda: any(c.counts.get("COMPLETED", 0) >= 2 and c.in_flight for c in held_by(store, job.job_id, "victim")),
             120, "the victim to be mid-chunk")
    return job, victim, held_by(store, job.job_id, "victim")


def check_taken_over(settings, store, storage, bucket, log: Path, job_id: str, held: list, stopped_at: int) -> None:
    """What a graceful stop guarantees, checked on the stored documents after the job ended."""
    final = wait_for(lambda: (j := store.jobs.get(job_id)).status.terminal and j, 180, "the job to end")

    # every file COMPLETED once, one output each, no attempt charged for what the victim gave back
    assert final.status == JobStatus.COMPLETED and final.counts["COMPLETED"] == FILES
    assert final.counts == store.files.counts(job_id)  # the chunks' sums, checked against the files themselves
    rows = results(settings, job_id)
    assert {r["status"] for r in rows} == {"COMPLETED"} and len(rows) == FILES
    assert all(r["attempts"] == 1 for r in rows), [r for r in rows if r["attempts"] != 1]
    assert outputs(storage, bucket) == Counter({f"out/in/{i:02d}.txt.json": 1 for i in range(FILES)})
    assert set(calls(log)) == {r["file_key"] for r in rows}  # (a file given back mid-call was called twice)

    # the victim's chunks went to the other worker released, not expired: worked normally, not as suspects,
    # and their remaining files were started there before the victim's lease would have run out
    for chunk in held:
        after, *_ = store.chunks.get([chunk.chunk_id])[chunk.chunk_id]
        assert after.status == ChunkStatus.DONE and not after.suspect and after.claims >= 2
        files = [task for task in store.files.get(chunk.file_ids) if task and task.chunk_id == chunk.chunk_id]
        taken = [task for task in files if task.worker_id == "other"]
        assert taken, "the victim's chunk was finished by the victim itself"
        first_start = min(task.started_at for task in taken)
        assert stopped_at <= first_start < chunk.lease_expires_at, (stopped_at, first_start, chunk.lease_expires_at)
        assert all(task.workers == ["other"] for task in taken)  # a file given back does not name the victim

    # the victim stopped cleanly and is counted as interrupted on the job, in `status` too
    victim = final.workers["victim"]
    assert victim.state.value == "EXITED" and victim.exit_code == 0 and victim.interrupted
    assert not final.workers["other"].interrupted
    assert any(event.endswith(victim.reason) and "interrupted" in event for event in final.events)
    status = spotbot(settings, "status", job_id, "--json")
    assert json.loads(status.stdout)["interrupted"] == 1
    assert "interrupted=1" in spotbot(settings, "status", job_id).stdout


def test_a_sigtermed_worker_gives_its_chunk_back_at_once(settings, store, storage, bucket, tmp_path):
    # Given a job mid-chunk on two workers
    log = tmp_path / "calls.jsonl"
    job, victim, held = start_job(settings, store, storage, bucket, log, {})
    assert held

    # When one is sent SIGTERM (docker stop, AWS Batch, Kubernetes)
    stopped_at = now_ms()
    os.kill(victim.pid, signal.SIGTERM)

    # Then it exits, and the other worker takes over its chunk before the lease would have expired
    check_taken_over(settings, store, storage, bucket, log, job.job_id, held, stopped_at)
    reason = store.jobs.get(job.job_id).workers["victim"].reason
    assert reason.startswith("SIGTERM") and "gave back" in reason


def test_a_spot_interruption_notice_stops_a_worker_as_sigterm_does(settings, store, storage, bucket, tmp_path):
    # Given a job mid-chunk on two workers, one of which watches a stand-in of the instance metadata service
    log = tmp_path / "calls.jsonl"
    with InstanceMetadata() as imds:
        job, victim, held = start_job(settings, store, storage, bucket, log, {
            "SPOTBOT_SPOT_NOTICE": "on", "SPOTBOT_IMDS_URL": imds.url, "SPOTBOT_SPOT_NOTICE_SECONDS": "0.2"})
        assert held
        path = "/latest/meta-data/spot/instance-action"
        assert imds.asked("GET", path) >= 1  # it has been asking, with a token, and found no notice

        # When EC2 posts the two minutes' notice for its instance
        stopped_at = now_ms()
        imds.post_notice("terminate", "2026-12-06T12:02:00Z")

        # Then it stops as on SIGTERM and the other worker takes over its chunk before the lease would have expired
        check_taken_over(settings, store, storage, bucket, log, job.job_id, held, stopped_at)
        reason = store.jobs.get(job.job_id).workers["victim"].reason
        assert reason.startswith("Spot interruption notice: terminate at 2026-12-06T12:02:00Z") and "gave back" in reason
        # the IMDSv2 way: one session token, every read carrying it
        assert imds.asked("PUT", "/latest/api/token") == 1 and imds.refused() == 0
        assert imds.asked("GET", path) >= 2


def test_a_worker_told_to_watch_for_notices_where_nothing_answers_works_as_usual(settings, store, storage, bucket):
    # Given an address where no instance metadata service answers (a closed port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "SLOW 1", "in/b.txt": "SLOW 1"})
    env = {"SPOTBOT_SPOT_NOTICE": "on", "SPOTBOT_IMDS_URL": f"http://127.0.0.1:{closed}",
           "SPOTBOT_SPOT_NOTICE_SECONDS": "0.1"}

    # When a job runs with workers told to watch it
    code, job, stderr = submit(settings, bucket, "--bots", "1", env=cli_env(settings, **env))

    # Then the job completes, and the worker said once that it does not watch
    assert code == 0, stderr
    assert {r["status"] for r in results(settings, job["job_id"])} == {FileStatus.COMPLETED.value}
    logs = spotbot(settings, "logs", job["job_id"]).stdout
    assert logs.count("no instance metadata service answers") == 1 and "Traceback" not in logs

