"""Incremental jobs and object versions (issue 16): nothing is worked twice for the same object and model,
and nothing is worked on an object other than the one the job recorded. Real servers throughout."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections import Counter
from pathlib import Path

from conftest import cli_env, register_echo, results, spotbot, submit, upload, wait_for
from es_fault_proxy import FaultProxy

from framework.models import FileStatus, JobStatus, LatestResult
from framework.scheduler import Scheduler
from framework.storage import S3Location
from framework.store import Store


def calls(log: Path) -> Counter:
    return Counter(json.loads(line)["key"] for line in log.read_text().splitlines()) if log.exists() else Counter()


def by_key(rows: list[dict]) -> dict[str, dict]:
    return {row["file_key"]: row for row in rows}


def model_tar(threshold: int) -> bytes:
    data = str(threshold).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("threshold.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def run(settings, bucket, log: Path, *extra: str) -> tuple[dict, list[dict]]:
    """submit --wait with the calls logged; the job's final record and its rows."""
    code, job, stderr = submit(settings, bucket, *extra, env=cli_env(settings, ECHO_CALLS_LOG=str(log)))
    assert code in (0, 3), stderr
    return job, results(settings, job["job_id"])


def test_an_incremental_rerun_works_only_changed_and_new_files_and_points_the_rest_at_their_output(
        settings, store, storage, bucket, tmp_path):
    # Given a job that worked ten files
    register_echo(settings)
    keys = {f"in/{i:02d}.txt": f"file {i}" for i in range(10)}
    upload(storage, bucket, keys)
    first_log = tmp_path / "first.jsonl"
    first, first_rows = run(settings, bucket, first_log)
    assert calls(first_log) == Counter(dict.fromkeys(keys, 1))
    first_job = store.jobs.get(first["job_id"])
    assert first_job.fingerprint and all(r["status"] == "COMPLETED" for r in first_rows)

    # When one object is overwritten, one is added, and the job is run again incrementally
    upload(storage, bucket, {"in/03.txt": "file 3, edited", "in/10.txt": "a new file"})
    log = tmp_path / "again.jsonl"
    again, rows = run(settings, bucket, log, "--incremental")

    # Then only the changed and the new object were worked (the endpoint was called for them alone)
    assert calls(log) == Counter({"in/03.txt": 1, "in/10.txt": 1})
    rows = by_key(rows)
    assert rows["in/03.txt"]["status"] == "COMPLETED" and rows["in/10.txt"]["status"] == "COMPLETED"
    # and every other file is SKIPPED, pointing at the first job's result, whose output is there
    earlier = by_key(first_rows)
    skipped = [key for key in keys if key != "in/03.txt"]
    for key in skipped:
        assert rows[key]["status"] == "SKIPPED" and rows[key]["attempts"] == 0
        assert rows[key]["reused_from"] == first["job_id"] and rows[key]["output_uri"] == earlier[key]["output_uri"]
        assert json.loads(storage.read(bucket, earlier[key]["output_uri"].split("/", 3)[3]))["key"] == key
    # counted apart, in the job's counts and in status, which add up to its total
    job = store.jobs.get(again["job_id"])
    assert job.status == JobStatus.COMPLETED and job.incremental and job.fingerprint == first_job.fingerprint
    assert job.counts["SKIPPED"] == 9 and job.counts["COMPLETED"] == 2 and job.total == 11 == sum(job.counts.values())
    assert job.counts == store.files.counts(job.job_id)  # the chunks' sums, checked against the files themselves
    # the files to work were chunked apart from the SKIPPED ones, however scattered among them
    chunks = list(store.chunks.of_job(job.job_id))
    assert all(not c.counts["SKIPPED"] for c in chunks if c.counts["COMPLETED"])
    assert all(not c.counts["COMPLETED"] and not c.claims for c in chunks if c.counts["SKIPPED"])
    status = json.loads(spotbot(settings, "status", job.job_id, "--json").stdout)
    assert status["counts"]["SKIPPED"] == 9 and status["incremental"] is True
    assert {r["file_key"] for r in results(settings, job.job_id, "--status", "SKIPPED")} == set(skipped)

    # When nothing changed at all, the next incremental job ends at once: every file SKIPPED, no worker started
    log = tmp_path / "third.jsonl"
    third, rows = run(settings, bucket, log, "--incremental")
    assert calls(log) == Counter()
    job = store.jobs.get(third["job_id"])
    assert job.status == JobStatus.COMPLETED and job.counts["SKIPPED"] == 11 and not job.workers
    # the reworked file points at the second job, the others still at the first
    assert by_key(rows)["in/03.txt"]["reused_from"] == again["job_id"]
    assert by_key(rows)["in/00.txt"]["reused_from"] == first["job_id"]


def test_a_job_that_is_not_incremental_works_everything_and_records_results(settings, store, storage, bucket, tmp_path):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a", "in/b.txt": "b"})
    run(settings, bucket, tmp_path / "one.jsonl")
    log = tmp_path / "two.jsonl"
    second, rows = run(settings, bucket, log)
    assert calls(log) == Counter({"in/a.txt": 1, "in/b.txt": 1})
    assert {r["status"] for r in rows} == {"COMPLETED"}
    # the latest result of each object is the second job's now: found by id
    docs = store.engine.mget(store.index("results"), [LatestResult.doc_id("echo", bucket, key) for key in ("in/a.txt", "in/b.txt")])
    assert [doc["_source"]["job_id"] for doc in docs] == [second["job_id"]] * 2


def test_a_new_model_reworks_everything(settings, store, storage, bucket, tmp_path):
    # Given the echo bot with a model (a tar.gz in S3) and a job that worked three files with it
    upload(storage, bucket, {"models/echo.tar.gz": model_tar(10)})
    register_echo(settings, model_s3_path=f"s3://{bucket}/models/echo.tar.gz")
    keys = {f"in/{i}.txt": f"text {i}" for i in range(3)}
    upload(storage, bucket, keys)
    first, _ = run(settings, bucket, tmp_path / "first.jsonl")

    # When the model is retrained (a new object at the same path) and the job is run again incrementally
    upload(storage, bucket, {"models/echo.tar.gz": model_tar(3)})
    log = tmp_path / "again.jsonl"
    again, rows = run(settings, bucket, log, "--incremental")

    # Then its fingerprint is new and every file is worked again
    assert store.jobs.get(again["job_id"]).fingerprint != store.jobs.get(first["job_id"]).fingerprint
    assert calls(log) == Counter(dict.fromkeys(keys, 1))
    assert {r["status"] for r in rows} == {"COMPLETED"}

    # and with the model unchanged since, the next incremental job reuses the second job's results
    log = tmp_path / "third.jsonl"
    third, rows = run(settings, bucket, log, "--incremental")
    assert calls(log) == Counter() and {r["reused_from"] for r in rows} == {again["job_id"]}


def test_a_file_that_ended_error_before_is_worked_again(settings, store, storage, bucket, tmp_path):
    # Given a job where one file failed every attempt and one completed
    register_echo(settings)
    upload(storage, bucket, {"in/bad.txt": "RAISE please", "in/good.txt": "fine"})
    first, rows = run(settings, bucket, tmp_path / "first.jsonl")
    assert by_key(rows)["in/bad.txt"]["status"] == "ERROR"

    # When the job is run again incrementally, unchanged
    log = tmp_path / "again.jsonl"
    again, rows = run(settings, bucket, log, "--incremental")

    # Then the failed file was worked again (its attempts, afresh), the completed one was not
    assert calls(log) == Counter({"in/bad.txt": settings.max_attempts})
    rows = by_key(rows)
    assert rows["in/bad.txt"]["status"] == "ERROR" and rows["in/bad.txt"]["attempts"] == settings.max_attempts
    assert rows["in/good.txt"]["status"] == "SKIPPED" and rows["in/good.txt"]["reused_from"] == first["job_id"]
    assert store.jobs.get(again["job_id"]).status == JobStatus.COMPLETED_WITH_ERRORS


def test_the_earlier_results_are_read_by_id_one_request_per_listing_page(settings, store, storage, bucket, tmp_path):
    # Given a job of 40 files in chunks of 5 that worked them all
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": f"n {i}" for i in range(40)})
    run(settings, bucket, tmp_path / "first.jsonl")

    # When an incremental job is scanned through a proxy that sees every request to Elasticsearch
    seen: list[str] = []
    with FaultProxy(settings.es_url) as proxy:
        forward = proxy._forward

        def counting(method, path, headers, body):
            seen.append(f"{method} {path.split('?')[0]}")
            return forward(method, path, headers, body)

        proxy._forward = counting
        through = settings.model_copy(update={"es_url": proxy.url})
        scheduler = Scheduler(through, Store.from_settings(through), storage)
        job = scheduler.create_job("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", incremental=True)
        seen.clear()  # (creating the indices and the job: not the scan)
        scheduler.scan(job, store.bots.get("echo"), S3Location(bucket, "in/"))

    # Then the results index was read by mget only, never searched: one request for the one listing page
    job = store.jobs.get(job.job_id)
    results_reads = [line for line in seen if store.index("results") in line]
    assert results_reads == [f"POST /{store.index('results')}/_mget"]
    store.refresh("chunks")  # counts are sums over chunks: on a real node a search sees them after a refresh (1 s)
    assert store.jobs.counts(job.job_id)["SKIPPED"] == 40 and store.chunks.unfinished(job.job_id) == 0
    assert job.chunks == 40 // settings.chunk_size  # every chunk of SKIPPED files recorded DONE


def test_an_object_overwritten_between_scan_and_work_ends_error_with_the_reason(settings, store, storage, bucket):
    # Given a job whose files were recorded (with their ETags) and not yet worked
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "the original", "in/b.txt": "left alone"})
    scheduler = Scheduler(settings, store, storage)
    job = scheduler.create_job("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", job_id="changed")
    scheduler.scan(job, store.bots.get("echo"), S3Location(bucket, "in/"))
    recorded = {task.file_key: task for task in store.files.page("changed")}
    assert recorded["in/a.txt"].etag and recorded["in/a.txt"].modified_at

    # When one object is overwritten before a worker reads it, and the workers start
    upload(storage, bucket, {"in/a.txt": "something else"})
    scheduler.submit("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/",
                                                           job_id="changed")
    final = wait_for(lambda: (j := store.jobs.get("changed")).status.terminal and j, 120, "the job to end")

    # Then that file ends ERROR at its first attempt, saying why, with no output; the other completes
    rows = by_key(results(settings, "changed"))
    assert rows["in/a.txt"]["status"] == "ERROR" and rows["in/a.txt"]["attempts"] == 1
    assert "changed after the job recorded it" in rows["in/a.txt"]["error"]
    assert "ObjectChanged" in rows["in/a.txt"]["error"] and recorded["in/a.txt"].etag in rows["in/a.txt"]["error"]
    assert rows["in/b.txt"]["status"] == "COMPLETED"
    assert not any(key == "out/in/a.txt.json" for page in storage.pages(S3Location(bucket, "out/")) for key, _ in page)
    assert final.status == JobStatus.COMPLETED_WITH_ERRORS


def test_in_a_versioned_bucket_the_worker_reads_the_version_the_scan_recorded(settings, store, storage, bucket):
    # Given a bucket with versioning on, and a job whose scan recorded each object's VersionId
    storage.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "version one"})
    scheduler = Scheduler(settings, store, storage)
    job = scheduler.create_job("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", job_id="versioned")
    scheduler.scan(job, store.bots.get("echo"), S3Location(bucket, "in/"))
    (task,) = list(store.files.page("versioned"))
    assert task.version_id

    # When the object is overwritten before a worker reads it
    upload(storage, bucket, {"in/a.txt": "version two"})
    scheduler.submit("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", job_id="versioned")
    final = wait_for(lambda: (j := store.jobs.get("versioned")).status.terminal and j, 120, "the job to end")

    # Then the file is worked on the version the job recorded, which S3 still has
    assert final.status == JobStatus.COMPLETED
    (row,) = results(settings, "versioned")
    assert row["status"] == "COMPLETED"
    assert json.loads(storage.read(bucket, "out/in/a.txt.json"))["upper"] == "VERSION ONE"


def test_watch_works_an_object_overwritten_in_place_again(settings, store, storage, bucket, tmp_path):
    # Given a watcher that worked two objects
    from test_watch import Watch

    register_echo(settings)
    log = tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_CALLS_LOG=str(log))
    upload(storage, bucket, {"cam/a.txt": "first", "cam/b.txt": "second"})
    watch = Watch(settings, "--bot", "echo", "--input", f"s3://{bucket}/cam/", "--output", f"s3://{bucket}/labels/",
                  "--bots", "1", "--job-id", "over", "--interval", "0.3", "--sweep", "1", env=env)
    try:
        wait_for(lambda: store.jobs.counts("over")["COMPLETED"] == 2, 90, "the objects to be worked")

        # When one of them is overwritten in place (same key, new content)
        time.sleep(1.1)  # S3 keeps LastModified in whole seconds: the new version is a second younger
        upload(storage, bucket, {"cam/a.txt": "first, rewritten"})

        # Then it is worked again, on its new content, and the other is not
        wait_for(lambda: calls(log)["cam/a.txt"] == 2, 90, "the overwritten object to be worked again")
        wait_for(lambda: store.jobs.counts("over")["COMPLETED"] == 2 and
                 store.jobs.counts("over")["NOT_STARTED"] == 0 and store.jobs.counts("over")["PROCESSING"] == 0,
                 60, "its result to be written")
        assert json.loads(storage.read(bucket, "labels/cam/a.txt.json"))["upper"] == "FIRST, REWRITTEN"
        time.sleep(2)  # two more sweeps: an object seen again, unchanged, is not worked again
        assert calls(log) == Counter({"cam/a.txt": 2, "cam/b.txt": 1})
    finally:
        assert watch.stop() == 0, watch.stderr
    job = store.jobs.get("over")
    assert job.total == 2 and sum(job.counts.values()) in (0, 2)
    (a,) = [t for t in store.files.page("over") if t.file_key == "cam/a.txt"]
    assert a.status == FileStatus.COMPLETED and a.etag == storage.client.head_object(Bucket=bucket, Key="cam/a.txt")["ETag"]
    assert any("overwritten in place" in event for event in job.events)
