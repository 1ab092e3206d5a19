"""The holes a review found (issue 12): each test puts the system in the place a file or a job
used to be lost, on real servers, and checks that nothing is."""

from __future__ import annotations

import json
import time
from collections import Counter

from conftest import cli_env, register_echo, results, spotbot, submit, upload, wait_for
from es_fault_proxy import FaultProxy

from framework.models import BotConfig, ChunkStatus, FileTask, Job, JobStatus
from framework.scheduler import Scheduler
from framework.storage import S3Location
from framework.store.chunks import new_chunk


def outputs(storage, bucket: str) -> Counter:
    return Counter(key for page in storage.pages(S3Location(bucket, "out/")) for key, _ in page)


# --- 1. a chunk is never claimable before its files exist ---------------------------------------------

def test_a_chunk_is_not_claimable_while_its_files_are_being_written(settings, store, storage, bucket, monkeypatch):
    # Given a long-running job with an idle worker polling for chunks every 0.2 s
    register_echo(settings)
    scheduler = Scheduler(settings, store, storage)
    scheduler.open("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", workers=1, job_id="seam")
    keys = {f"in/s{i}.txt": f"seam {i}" for i in range(3)}
    upload(storage, bucket, keys)

    # When new files are added, and the add is held between writing the chunk and writing its files
    # for 3 s (15 polls of the idle worker): the window in which a worker used to take the chunk,
    # find none of its files, and mark it DONE
    seen: list[str] = []
    write_files = store.files.record

    def held_open(files):
        files = list(files)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            doc = store.engine.get(store.index("chunks"), files[0].chunk_id)
            seen.append(doc["_source"]["status"] if doc else "absent")
            time.sleep(0.1)
        return write_files(files)

    monkeypatch.setattr(store.files, "record", held_open)
    assert sorted(scheduler.add_files("seam", [(key, 1) for key in keys])) == sorted(keys)

    # Then nobody took the chunk before its files existed, every file is worked, and the job ends COMPLETED
    assert set(seen) == {ChunkStatus.PENDING.value}
    wait_for(lambda: store.jobs.counts("seam")["COMPLETED"] == 3, 60, "the added files to be worked")
    scheduler.close("seam")
    job = wait_for(lambda: (j := store.jobs.get("seam")).status.terminal and j, 60, "the job to end")
    assert job.status == JobStatus.COMPLETED and job.counts["COMPLETED"] == 3 and job.total == 3
    assert outputs(storage, bucket) == Counter({f"out/{key}.json": 1 for key in keys})


def test_files_a_late_writer_left_outside_every_chunk_are_worked_before_the_job_ends(settings, store):
    # Given a writer that recorded a chunk and then stalled past PENDING's grace
    store.jobs.create(Job(job_id="late", bot="b", input_uri="s3://b/in/", output_uri="s3://b/out/",
                          status=JobStatus.RUNNING, total=3, workers_requested=1))
    files = [FileTask(job_id="late", bot="b", bucket="b", file_key=f"in/{i}", chunk_id="", batch_id=0) for i in range(3)]
    chunk = new_chunk("late", [FileTask.doc_id("late", "b", f.file_key) for f in files], 0, 1)
    for task in files:
        task.chunk_id = chunk.chunk_id
    store.chunks.record([chunk])
    # so a worker took the chunk, found none of its files, and finished it
    lease = store.chunks.claim("late", "w1", None, 30, pending_grace=0)
    view, missing = store.files.of_chunk(lease.chunk)
    assert view == [] and missing == 3
    assert store.files.flush(view, lease, lease_seconds=30, end=ChunkStatus.DONE)
    # and then the writer's files arrived after all
    store.files.record(files)

    # When any worker or supervisor asks to end the job
    job = store.jobs.finalize("late")

    # Then it does not end with three files never worked: they are given a chunk of their own
    assert job.status == JobStatus.RUNNING
    assert store.chunks.unfinished("late") == 1
    lease = store.chunks.claim("late", "w2", None, 30, pending_grace=60)
    view, missing = store.files.of_chunk(lease.chunk)
    assert sorted(c.task.file_key for c in view) == [f.file_key for f in files] and missing == 0
    for claim in view:
        store.files.begin(claim, "w2")
        store.files.complete(claim, output_uri="s3://b/out/x", labels=[], output=None)
    assert store.files.flush(view, lease, lease_seconds=30, end=ChunkStatus.DONE)
    job = store.jobs.finalize("late")
    assert job.status == JobStatus.COMPLETED and job.counts["COMPLETED"] == 3
    assert job.counts == store.files.counts("late")  # the chunks' sums, checked against the files themselves


# --- 2. an ended job with unworked files can be recovered ------------------------------------------------

def test_retry_works_the_files_of_a_job_that_failed_before_any_worker_ran(settings, store, storage, bucket):
    # Given a job FAILED at submit because its endpoint could not start: its files were never worked
    register_echo(settings, endpoint_ecr_image_path="python:broken_endpoint.py")
    keys = {f"in/{i}.txt": f"file {i}" for i in range(7)}
    upload(storage, bucket, keys)
    code, _, stderr = submit(settings, bucket, "--job-id", "failed-early")
    assert code == 7 and "cannot start" in stderr, stderr
    job = store.jobs.get("failed-early")
    assert job.status == JobStatus.FAILED and job.error.startswith("endpoint:")
    assert Counter(r["status"] for r in results(settings, "failed-early")) == {"NOT_STARTED": 7}

    # When the endpoint is fixed and the job retried
    register_echo(settings)
    again = spotbot(settings, "retry", "failed-early", "--wait", "--json")

    # Then every file is worked, once
    assert again.returncode == 0, again.stderr
    rows = results(settings, "failed-early")
    assert {r["status"] for r in rows} == {"COMPLETED"} and len(rows) == 7
    assert all(r["attempts"] == 1 for r in rows)
    final = store.jobs.get("failed-early")
    assert final.status == JobStatus.COMPLETED and final.counts["COMPLETED"] == 7 and final.total == 7
    assert outputs(storage, bucket) == Counter({f"out/{key}.json": 1 for key in keys})


def test_retry_and_cancel_say_the_same_about_a_job_in_the_wrong_state(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a"})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    # cancelling an ended job, or retrying one with nothing to do, is refused with the state named
    cancelled = spotbot(settings, "cancel", job["job_id"])
    assert cancelled.returncode == 2 and "has already ended COMPLETED" in cancelled.stderr
    store.jobs.create(Job(job_id="busy", bot="echo", input_uri=f"s3://{bucket}/in/", output_uri=f"s3://{bucket}/out/",
                          status=JobStatus.RUNNING))
    retried = spotbot(settings, "retry", "busy")
    assert retried.returncode == 2 and "busy is RUNNING; retry runs the files of an ended job" in retried.stderr


# --- 3. a cancel stops a scan at its next page -----------------------------------------------------------

def test_cancelling_a_job_while_it_scans_stops_the_scan_at_the_next_page(settings, store, storage, bucket, monkeypatch):
    # Given a prefix of 50 files listed ten to a page, and a cancel that arrives after the first page
    register_echo(settings)
    upload(storage, bucket, {f"in/{i:02d}.txt": str(i) for i in range(50)})
    scheduler = Scheduler(settings, store, storage)
    job = scheduler.create_job("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", job_id="scan-cancel")
    pages = storage.objects
    listed = []

    def small_pages(location):
        for page in pages(location):
            for start in range(0, len(page), 10):
                listed.append(start)
                yield page[start:start + 10]
                if len(listed) == 1:
                    store.jobs.cancel(job.job_id)

    monkeypatch.setattr(storage, "objects", small_pages)

    # When the job is submitted
    ended = scheduler.submit("echo", f"s3://{bucket}/in/", f"s3://{bucket}/out/", job_id="scan-cancel")

    # Then the listing stopped at the next page, what was recorded ended CANCELLED, and no worker started
    assert ended.status == JobStatus.CANCELLED and not ended.workers
    assert len(listed) == 2
    rows = results(settings, "scan-cancel")
    assert 0 < len(rows) <= 10 and {r["status"] for r in rows} == {"CANCELLED"}
    assert all(r["attempts"] == 0 for r in rows)
    assert store.chunks.unfinished("scan-cancel") == 0


# --- 4. a worker launch failure fails the job ------------------------------------------------------------

def test_a_worker_that_cannot_be_launched_fails_the_job_with_the_reason(settings, store, storage, bucket):
    # Given a machine where no worker of the job can start (its log folder cannot be made: a file stands there)
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a"})
    (settings.home / "logs").mkdir(parents=True)
    (settings.home / "logs" / "no-workers").write_text("not a folder")

    # When a job is submitted
    code, _, stderr = submit(settings, bucket, "--job-id", "no-workers")

    # Then the command says why, and the job is FAILED with the reason, not RUNNING with nobody on it
    assert code == 7, stderr
    assert "cannot start worker" in stderr and "Traceback" not in stderr
    job = store.jobs.get("no-workers")
    assert job.status == JobStatus.FAILED and "cannot start worker" in job.error and not job.workers


# --- 5. Elasticsearch pushing back (429 per item) ------------------------------------------------------------

def test_bulk_items_refused_for_now_are_written_again_and_nothing_is_lost(settings, store, storage, bucket, tmp_path):
    # Given Elasticsearch behind a proxy that refuses every third item of the next 40 bulk requests with a 429
    register_echo(settings)
    keys = {f"in/{i:02d}.txt": f"push {i}" for i in range(30)}
    upload(storage, bucket, keys)
    calls = tmp_path / "calls.jsonl"
    with FaultProxy(settings.es_url) as proxy:
        through = settings.model_copy(update={"es_url": proxy.url})
        proxy.refuse(every=3, bulks=40)

        # When a job is submitted through it (its scan and its workers' writes)
        code, job, stderr = submit(through, bucket, env=cli_env(through, ECHO_CALLS_LOG=str(calls)))

    # Then the job completed with every file once, although items were refused
    assert proxy.refused > 10
    assert code == 0, stderr
    rows = results(settings, job["job_id"])
    assert sorted(r["file_key"] for r in rows) == sorted(keys) and {r["status"] for r in rows} == {"COMPLETED"}
    assert Counter(json.loads(line)["key"] for line in calls.read_text().splitlines()) == Counter(dict.fromkeys(keys, 1))
    final = store.jobs.get(job["job_id"])
    assert final.counts["COMPLETED"] == 30 and final.total == 30
    assert final.counts == store.files.counts(final.job_id)  # the chunks' sums, checked against the files themselves


# --- 6. a label past the keyword limit -----------------------------------------------------------------------

def test_a_label_past_the_keyword_limit_fails_its_file_alone(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/good.txt": "fine", "in/huge.txt": "LONGLABEL 40000", "in/also.txt": "fine too"})
    code, job, stderr = submit(settings, bucket)
    assert code == 3, stderr
    rows = {r["file_key"]: r for r in results(settings, job["job_id"])}
    assert rows["in/good.txt"]["status"] == rows["in/also.txt"]["status"] == "COMPLETED"
    assert rows["in/huge.txt"]["status"] == "ERROR" and rows["in/huge.txt"]["labels"] == []
    assert "label 0 is 40000 bytes" in rows["in/huge.txt"]["error"]


# --- 7. lists are never cut at 1,000 -------------------------------------------------------------------------

def test_lists_of_more_than_a_thousand_are_given_whole(settings, store, storage, bucket):
    # Given 1,001 bots and 1,001 jobs, the oldest of them still running and using the echo bot's endpoint
    register_echo(settings)
    ops: list[dict] = []
    for i in range(1001):
        bot = BotConfig(name=f"b{i:04d}", file_types=".txt", bot_image="python:task.py")
        ops += [{"index": {"_index": store.index("bots"), "_id": bot.name}}, bot.model_dump()]
        status = JobStatus.RUNNING if i == 0 else JobStatus.COMPLETED
        job = Job(job_id=f"j{i:04d}", bot="echo", input_uri=f"s3://{bucket}/in/", output_uri=f"s3://{bucket}/out/",
                  status=status, created_at=1_700_000_000_000 + i)
        ops += [{"index": {"_index": store.index("jobs"), "_id": job.job_id}}, job.model_dump(mode="json")]
    assert not store.engine.bulk(ops)["errors"]
    from framework.models import Endpoint, EndpointStatus
    store.endpoints.reserve(Endpoint(name="echo-upper", backend="process", image="python:endpoint.py",
                                     status=EndpointStatus.STOPPED))

    # Then the lists hold every one, and the oldest running job still counts as the endpoint's user
    listed = json.loads(spotbot(settings, "jobs", "list", "--json").stdout)
    assert len(listed) == 1001 and listed[-1]["job_id"] == "j0000"
    assert len(json.loads(spotbot(settings, "bots", "list", "--json").stdout)) == 1002
    refused = spotbot(settings, "endpoints", "delete", "echo-upper")
    assert refused.returncode == 2 and "j0000" in refused.stderr

