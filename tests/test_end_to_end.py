"""The whole flow through the real `spotbot` command: register, submit, work, results."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import cli_env, register_echo, results, spotbot, submit, upload

from framework.storage import parse_uri
from framework.store import Store


def test_whole_flow_writes_outputs_and_statuses(settings, store, storage, bucket):
    # Given a registered bot and twelve text files (plus files it must leave alone)
    register_echo(settings)
    files = {f"in/doc-{i:02d}.txt": f"hello number {i}" for i in range(12)}
    upload(storage, bucket, {**files, "in/picture.png": b"\x89PNG", "elsewhere/x.txt": "not in the prefix"})

    # When a job runs to the end with two workers
    code, job, stderr = submit(settings, bucket, "--bots", "2")

    # Then every matching file is COMPLETED with its output in S3 and its labels indexed
    assert code == 0, stderr
    assert job["status"] == "COMPLETED" and job["total"] == 12
    rows = results(settings, job["job_id"])
    assert sorted(r["file_key"] for r in rows) == sorted(files)
    for row in rows:
        assert row["status"] == "COMPLETED" and row["error"] == "" and row["attempts"] == 1
        assert row["output_uri"] == f"s3://{bucket}/out/{row['file_key']}.json"
        location = parse_uri(row["output_uri"])
        output = json.loads(storage.read(location.bucket, location.prefix))
        assert output["upper"] == files[row["file_key"]].upper()
        assert set(row["labels"]) == {"long", "echo"}
    status = json.loads(spotbot(settings, "status", job["job_id"], "--json").stdout)
    assert status["counts"]["COMPLETED"] == 12 and status["total"] == 12 and status["status"] == "COMPLETED"
    assert len(status["workers"]) == 2
    assert all(w["state"] == "EXITED" and w["pid"] > 0 for w in status["workers"])
    store.refresh("files")
    assert store.count("files", {"term": {"labels": "echo"}}) == 12
    listed = json.loads(spotbot(settings, "jobs", "list", "--json").stdout)
    assert [j["job_id"] for j in listed] == [job["job_id"]]


def test_file_types_filter_is_a_case_insensitive_suffix_match(settings, store, storage, bucket):
    register_echo(settings, file_types=[".txt", "json"])
    upload(storage, bucket, {
        "in/a.txt": "a", "in/B.TXT": "b", "in/c.Json": "c", "in/d.txt.bak": "d", "in/e.jpg": "e",
        "in/txt": "f", "in/folder/": "", "in/notes.text": "g",
    })
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    assert sorted(r["file_key"] for r in results(settings, job["job_id"])) == ["in/B.TXT", "in/a.txt", "in/c.Json"]


def test_weird_keys_work(settings, store, storage, bucket):
    register_echo(settings)
    keys = ["in/with space.txt", "in/plus+sign.txt", "in/ünïcødé/東京.txt", "in/a/b/c/d/e/f/g/deep.txt",
            "in/percent%20literal.txt", "in/quote'and\"double.txt"]
    upload(storage, bucket, {key: f"content of {key}" for key in keys})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    rows = results(settings, job["job_id"])
    assert sorted(r["file_key"] for r in rows) == sorted(keys)
    for row in rows:
        location = parse_uri(row["output_uri"])
        assert json.loads(storage.read(location.bucket, location.prefix))["key"] == row["file_key"]


def test_empty_prefix_completes_with_zero_files(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"other/x.txt": "x"})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    assert job["status"] == "COMPLETED" and job["total"] == 0
    assert results(settings, job["job_id"]) == []
    assert json.loads(spotbot(settings, "status", job["job_id"], "--json").stdout)["workers"] == []


def test_resubmitting_a_job_id_never_duplicates_files(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {f"in/{i}.txt": str(i) for i in range(7)})
    first = submit(settings, bucket, "--job-id", "same-job")
    assert first[0] == 0, first[2]
    # more files appear, and the same job is submitted again: it is the same, finished job
    upload(storage, bucket, {"in/late.txt": "late"})
    second = submit(settings, bucket, "--job-id", "same-job")
    assert second[0] == 0, second[2]
    assert second[1] == {"job_id": "same-job", "status": "COMPLETED", "total": 7}
    store.refresh("files")
    assert store.count("files", {"term": {"job_id": "same-job"}}) == 7
    # a different input under the same id is refused, naming the option
    other = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/other/", "--output",
                    f"s3://{bucket}/out/", "--job-id", "same-job")
    assert other.returncode == 2 and "--job-id" in other.stderr


def test_rescan_of_an_interrupted_scan_records_each_file_once(settings, store, storage, bucket):
    # Given a job whose scan was interrupted after recording part of the prefix
    from framework.models import Job
    from framework.scheduler import Scheduler
    from framework.storage import S3Object

    register_echo(settings)
    upload(storage, bucket, {f"in/{i:03d}.txt": str(i) for i in range(23)})
    scheduler = Scheduler(settings, store, storage)
    bot = store.bots.get("echo")
    job, _ = store.jobs.create(Job(job_id="rescan", bot="echo", input_uri=f"s3://{bucket}/in/",
                                   output_uri=f"s3://{bucket}/out/", workers_requested=2))
    partial = [scheduler._chunk(job, bot, bucket, 0, [(S3Object(f"in/{i:03d}.txt", 1, 0), None) for i in range(5)])]
    store.record(partial)
    # and more files arrived before the job was submitted again (the listing shifted)
    upload(storage, bucket, {"in/000a.txt": "new"})

    # When the job is submitted again and runs
    code, data, stderr = submit(settings, bucket, "--job-id", "rescan")

    # Then every file exists once, and each was worked exactly once
    assert code == 0, stderr
    rows = results(settings, "rescan")
    assert len(rows) == 24 and len({r["file_key"] for r in rows}) == 24
    assert all(r["status"] == "COMPLETED" and r["attempts"] == 1 for r in rows)


def test_a_task_that_raises_ends_error_after_max_attempts(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/good.txt": "fine", "in/bad.txt": "RAISE please", "in/bad2.txt": "BADRESULT"})
    code, job, stderr = submit(settings, bucket, env=cli_env(settings, SPOTBOT_MAX_ATTEMPTS="2"))
    assert code == 3, stderr
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    rows = {r["file_key"]: r for r in results(settings, job["job_id"])}
    assert rows["in/good.txt"]["status"] == "COMPLETED"
    assert rows["in/bad.txt"]["status"] == "ERROR" and rows["in/bad.txt"]["attempts"] == 2
    assert rows["in/bad.txt"]["error"] == "ValueError: asked to fail by in/bad.txt"
    assert rows["in/bad2.txt"]["status"] == "ERROR" and "not JSON-serializable" in rows["in/bad2.txt"]["error"]
    table = list(csv.DictReader(io.StringIO(spotbot(settings, "results", job["job_id"], "--status", "ERROR",
                                                       "--format", "csv").stdout)))
    assert sorted(r["file_key"] for r in table) == ["in/bad.txt", "in/bad2.txt"]
    assert {r["status"] for r in table} == {"ERROR"}


def test_multi_endpoint_bot_starts_every_endpoint_and_reuses_them(settings, store, storage, bucket):
    ref = "python:endpoint.py"
    register_echo(settings, endpoint_name="echo-a,echo-b", endpoint_ecr_image_path=f"{ref},{ref}")
    upload(storage, bucket, {"in/one.txt": "one"})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    listed = {e["name"]: e for e in json.loads(spotbot(settings, "endpoints", "list", "--json").stdout)}
    assert set(listed) == {"echo-a", "echo-b"} and all(e["healthy"] for e in listed.values())
    row = results(settings, job["job_id"])[0]
    location = parse_uri(row["output_uri"])
    output = json.loads(storage.read(location.bucket, location.prefix))
    assert output["extra"]["echo-b"]["pid"] == listed["echo-b"]["pid"]

    # a second job reuses the running endpoints: same processes, same addresses
    upload(storage, bucket, {"in/two.txt": "two"})
    code, again, stderr = submit(settings, bucket)
    assert code == 0, stderr
    relisted = {e["name"]: e for e in json.loads(spotbot(settings, "endpoints", "list", "--json").stdout)}
    assert {n: (e["pid"], e["url"]) for n, e in relisted.items()} == {n: (e["pid"], e["url"]) for n, e in listed.items()}

    # an endpoint whose process is gone is started again on the next submit
    assert spotbot(settings, "endpoints", "delete", "echo-a").returncode == 0
    assert "echo-a" not in {e["name"] for e in json.loads(spotbot(settings, "endpoints", "list", "--json").stdout)}


@pytest.mark.parametrize("input_uri, output_uri", [
    ("in/", "in/out/"),  # outputs inside the inputs: a job taking .json would take its own results
    ("in/", ""),  # outputs at the bucket root: the same, through the root
    ("in", "in-results/"),  # an input prefix without its slash lists the outputs too
    ("", "out/"),  # the whole bucket as input holds the outputs
])
def test_overlapping_input_and_output_prefixes_are_refused(settings, store, storage, bucket, input_uri, output_uri):
    # Given the echo bot and an input file
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a"})

    # When a job is submitted whose outputs would land among its inputs (or the reverse)
    result = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/{input_uri}", "--output",
                     f"s3://{bucket}/{output_uri}", "--json")

    # Then it is refused with an error naming --output, and nothing is recorded
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error: --output: ") and "overlaps the input" in result.stderr
    assert json.loads(spotbot(settings, "jobs", "list", "--json").stdout) == []


def test_sibling_output_prefix_is_accepted(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a", "inbox.txt": "not under in/"})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr
    assert [r["file_key"] for r in results(settings, job["job_id"])] == ["in/a.txt"]


def test_store_is_reachable_from_the_worker_contract_alone(settings, store):
    # the seed's es_host/es_port/es_protocol/es_index are enough to find the store
    from framework.worker import WorkerEnv

    host, port = settings.es_url.removeprefix("http://").split(":")
    environ = {"es_host": host, "es_port": port, "es_protocol": "http", "es_index": store.index("files"),
               "job_id": "j", "output_s3_bucket": "b"}
    derived = WorkerEnv.from_environ(environ).settings(environ)
    assert derived.es_url == settings.es_url and derived.index_prefix == settings.index_prefix
    assert Store.from_settings(derived).index("files") == store.index("files")
