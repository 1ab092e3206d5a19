"""Chunks, leases and conditional writes: no file is lost and none is worked twice."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter

from conftest import cli_env, register_echo, results, spotbot, submit, upload, wait_for

from framework.models import Chunk, ChunkStatus, FileStatus, Job
from framework.store.chunks import Lease


def calls_by_key(path) -> Counter:
    return Counter(json.loads(line)["key"] for line in path.read_text().splitlines())


def assert_invariants(settings, store, storage, bucket, job_id, keys):
    """Every key has one file document, counts add up, every COMPLETED file has its output, none is PROCESSING."""
    rows = results(settings, job_id)
    assert sorted(r["file_key"] for r in rows) == sorted(keys)
    counts = Counter(r["status"] for r in rows)
    assert counts[FileStatus.PROCESSING.value] == 0 and counts[FileStatus.NOT_STARTED.value] == 0
    job = store.jobs.get(job_id)
    assert sum(job.counts.values()) == job.total == len(keys)
    outputs = {key for page in storage.pages(storage_location(bucket)) for key, _ in page}
    for row in rows:
        if row["status"] == "COMPLETED":
            assert f"out/{row['file_key']}.json" in outputs
    return rows, job


def storage_location(bucket):
    from framework.storage import S3Location

    return S3Location(bucket, "out/")


def test_three_workers_work_every_file_exactly_once(settings, store, storage, bucket, tmp_path):
    register_echo(settings)
    keys = [f"in/{i:03d}.txt" for i in range(60)]
    upload(storage, bucket, {key: key for key in keys})
    calls = tmp_path / "calls.jsonl"
    code, job, stderr = submit(settings, bucket, "--bots", "3", env=cli_env(settings, ECHO_CALLS_LOG=str(calls)))
    assert code == 0, stderr
    assert calls_by_key(calls) == Counter({key: 1 for key in keys})
    assert len({json.loads(line)["pid"] for line in calls.read_text().splitlines()}) >= 2
    assert_invariants(settings, store, storage, bucket, job["job_id"], keys)


def test_only_one_of_many_racing_claims_wins(settings, store):
    job = Job(job_id="race", bot="b", input_uri="s3://b/in/", output_uri="s3://b/out/")
    store.jobs.create(job)
    chunk = Chunk(chunk_id="race-0", job_id="race", seq=0, batch_id=0, file_ids=["f"])
    written = store.chunks.record([chunk])
    store.chunks.open([(chunk, written["race-0"], 1)])
    store.refresh("chunks")
    won: list[Lease] = []
    barrier = threading.Barrier(6)

    def claim(i):
        barrier.wait()
        lease = store.chunks.claim("race", f"worker-{i}", i % 2, lease_seconds=1.0, pending_grace=60)
        if lease:
            won.append(lease)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    winner = won[0]
    assert store.chunks.extend(winner, 1.0)
    # once the lease has expired, another worker takes the chunk, and the first can no longer touch it
    wait_for(lambda: store.chunks.claim("race", "thief", 0, lease_seconds=30, pending_grace=60), 10,
             "the expired lease to be claimable")
    assert not store.chunks.extend(winner, 1.0)
    assert not store.chunks.finish(winner, {})
    doc = store.engine.get(store.index("chunks"), "race-0")["_source"]
    assert doc["lease_owner"] == "thief" and doc["status"] == ChunkStatus.LEASED.value and doc["claims"] == 2
    assert doc["suspect"]  # taken over from an expired lease: its next holder works it carefully


def worker_pids(settings, job_id):
    status = json.loads(spotbot(settings, "status", job_id, "--json").stdout)
    return {w["id"]: w["pid"] for w in status["workers"] if w["state"] == "RUNNING"}


def test_a_killed_worker_loses_no_file(settings, store, storage, bucket, tmp_path):
    # Given slow files, so a kill lands mid-chunk, and a short lease
    register_echo(settings)
    keys = [f"in/{i:02d}.txt" for i in range(16)]
    upload(storage, bucket, {key: "SLOW 0.3" for key in keys})
    calls = tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_CALLS_LOG=str(calls), SPOTBOT_LEASE_SECONDS="3")
    started = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                      f"s3://{bucket}/out/", "--bots", "2", "--json", env=env)
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["job_id"]

    # When one worker is killed once it has begun working
    wait_for(lambda: calls.exists() and len(calls.read_text().splitlines()) >= 3, 60, "work to begin")
    victim_id, victim_pid = sorted(worker_pids(settings, job_id).items())[0]
    os.kill(victim_pid, signal.SIGKILL)

    # Then the surviving worker takes over the chunk once its lease expires, and the job completes
    job = wait_for(lambda: (j := store.jobs.get(job_id)).status.terminal and j, 120, "the job to end")
    assert job.status.value == "COMPLETED"
    rows, _ = assert_invariants(settings, store, storage, bucket, job_id, keys)
    assert all(r["status"] == "COMPLETED" for r in rows)
    redone = [key for key, n in calls_by_key(calls).items() if n > 1]
    assert len(redone) <= settings.chunk_size  # at most the one chunk the dead worker held


def test_a_retried_write_whose_answer_was_lost_is_recognised_as_ours(settings, store):
    # Given files marked PROCESSING by a bulk write whose answer (new sequence numbers) never arrived
    from framework.models import FileTask

    ids = [FileTask.doc_id("lost", "bk", f"k{i}") for i in range(3)]
    chunk = Chunk(chunk_id="lost-0", job_id="lost", seq=0, batch_id=0, file_ids=ids)
    files = [FileTask(job_id="lost", bot="b", bucket="bk", file_key=f"k{i}", chunk_id="lost-0", batch_id=0) for i in range(3)]
    store.record([(chunk, files)])
    lease = store.chunks.claim("lost", "w1", 0, lease_seconds=30, pending_grace=60)
    view, missing = store.files.of_chunk(lease.chunk)
    assert missing == 0 and len(view) == 3
    stale = [(c.seq_no, c.primary_term) for c in view]
    for claim in view:
        store.files.begin(claim, "w1")
    assert store.files.flush(view, lease, lease_seconds=30, in_flight=3)
    for claim, (seq_no, term) in zip(view, stale):
        claim.seq_no, claim.primary_term = seq_no, term  # as if the answer had been lost
        claim.dirty = True

    # When the same write is sent again, it is kept as ours, not dropped as someone else's
    assert store.files.flush(view, lease, lease_seconds=30, in_flight=3)
    assert not any(claim.dirty for claim in view)
    assert [c.task.status for c in view] == [FileStatus.PROCESSING] * 3
    # and it can go on: the results write conditionally on the adopted sequence numbers
    for claim in view:
        store.files.complete(claim, output_uri="s3://x/y", labels=[], output=None)
    assert store.files.flush(view, lease, lease_seconds=30, end=ChunkStatus.DONE)
    assert [t.status for t in store.files.get(ids)] == [FileStatus.COMPLETED] * 3
    assert store.chunks.get(["lost-0"])["lost-0"][0].counts["COMPLETED"] == 3
    # while a genuinely different document under the same stale numbers is refused: the newer state is kept
    view[0].task.labels = ["someone else's"]
    view[0].seq_no, view[0].primary_term = stale[0]
    view[0].dirty = True
    store.files._read_again([view[0]], overwrite=False)
    assert view[0].task.labels == [] and not view[0].dirty
    assert store.files.get(ids[:1])[0].labels == []
