"""spotbot watch: new objects are recorded and processed as they appear, each once, across restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, SPOTBOT, cli_env, register_echo, spotbot, upload, wait_for

from framework.errors import NotFound
from framework.models import JobStatus
from framework.s3events import parse_body
from framework.storage import S3Location

ELASTICMQ = ROOT / "deploy" / "elasticmq" / "elasticmq.sh"
SQS_ENV = {"AWS_ACCESS_KEY_ID": "spotbot-test", "AWS_SECRET_ACCESS_KEY": "spotbot-test", "AWS_DEFAULT_REGION": "us-east-1"}


class Watch:
    """A `spotbot watch` process, its JSON lines read as they come."""

    def __init__(self, settings, *args: str, env: dict[str, str]):
        self.process = subprocess.Popen([SPOTBOT, "watch", "--json", *args], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.lines: list[dict] = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        self.stderr = self.process.stderr.read()
        return code


def completed(store, job_id: str) -> int:
    return store.jobs.counts(job_id)["COMPLETED"]


def cursor(store, job_id: str) -> dict:
    """The job's cursor, or {} while the watcher has not created the job yet."""
    try:
        return store.jobs.get(job_id).cursor
    except NotFound:
        return {}


def calls(log: Path) -> Counter:
    return Counter(json.loads(line)["key"] for line in log.read_text().splitlines()) if log.exists() else Counter()


def test_watch_processes_uploads_once_and_a_restart_resumes_from_its_mark(settings, store, storage, bucket, tmp_path):
    # Given the echo bot (it takes .txt and .json) and a prefix with two reports and a photo it does not take
    register_echo(settings)
    log = tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_CALLS_LOG=str(log))
    upload(storage, bucket, {"cam/p01.txt": "first", "cam/p02.txt": "second", "cam/aaa.png": "not a report"})
    common = ["--interval", "0.3", "--sweep", "2"]

    # When a watcher starts
    watch = Watch(settings, "--bot", "echo", "--input", f"s3://{bucket}/cam/", "--output", f"s3://{bucket}/labels/",
                  "--bots", "1", "--job-id", "w1", *common, env=env)
    wait_for(lambda: completed(store, "w1") == 2, 90, "the objects already there to be worked")

    # and objects arrive while it runs: one after its mark, one sorting below it (only a sweep finds that one)
    upload(storage, bucket, {"cam/p03.txt": "third"})
    upload(storage, bucket, {"cam/late/p00.txt": "late"})
    wait_for(lambda: completed(store, "w1") == 4, 90, "the new objects to be worked")

    # Then SIGTERM stops it cleanly and leaves the job open for a later watcher
    assert watch.stop() == 0, watch.stderr
    assert "Traceback" not in watch.stderr and "stays open" in watch.stderr
    assert watch.lines[-1]["stopped"] and watch.lines[-1]["accepting"] and watch.lines[-1]["status"] == "RUNNING"
    assert any(line.get("swept") for line in watch.lines)
    job = store.jobs.get("w1")
    assert job.accepting and job.cursor["mark"] == "cam/p03.txt" and job.total == 4

    # When an object arrives while nobody watches, and the job is resumed by its id alone
    upload(storage, bucket, {"cam/p04.txt": "fourth"})
    again = Watch(settings, "--job-id", "w1", *common, env=env)
    wait_for(lambda: completed(store, "w1") == 5, 90, "the object uploaded while stopped to be worked")

    # and the job is closed while the watcher runs
    closed = spotbot(settings, "close", "w1")
    assert closed.returncode == 0, closed.stderr
    assert again.wait() == 0, again.stderr
    assert "was closed" in again.stderr
    final = wait_for(lambda: (j := store.jobs.get("w1")).status.terminal and j, 60, "the job to end")

    # Then every report was worked exactly once, and nothing else was
    keys = {"cam/p01.txt", "cam/p02.txt", "cam/p03.txt", "cam/late/p00.txt", "cam/p04.txt"}
    assert final.status == JobStatus.COMPLETED and final.total == 5 and final.counts["COMPLETED"] == 5
    assert calls(log) == Counter({key: 1 for key in keys})
    assert {row.file_key for row in store.files.page("w1")} == keys
    outputs = {key for page in storage.pages(S3Location(bucket, "labels/")) for key, _ in page}
    assert outputs == {f"labels/{key}.json" for key in keys}


def test_skip_existing_leaves_what_was_there(settings, store, storage, bucket, tmp_path):
    register_echo(settings)
    log = tmp_path / "calls.jsonl"
    upload(storage, bucket, {"in/old.txt": "old"})
    watch = Watch(settings, "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out/",
                  "--bots", "1", "--job-id", "w2", "--interval", "0.3", "--skip-existing", "--close-on-exit",
                  env=cli_env(settings, ECHO_CALLS_LOG=str(log)))
    wait_for(lambda: cursor(store, "w2").get("mark") == "in/old.txt", 60, "the first look")
    upload(storage, bucket, {"in/q-new.txt": "new"})  # sorts after the mark
    wait_for(lambda: completed(store, "w2") == 1, 90, "the new object to be worked")
    assert watch.stop() == 0, watch.stderr
    assert "closed" in watch.stderr
    final = wait_for(lambda: (j := store.jobs.get("w2")).status.terminal and j, 60, "the closed job to end")
    assert final.status == JobStatus.COMPLETED and final.total == 1
    assert calls(log) == Counter({"in/q-new.txt": 1})


def test_watch_refuses_bad_input_with_a_clear_message(settings, store, storage, bucket):
    register_echo(settings)
    good = ["--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out/"]
    cases = [
        (["--bot", "nobody", *good], 5, "no bot named 'nobody'"),
        (["--job-id", "never-started"], 2, "no job 'never-started' to resume"),
        (["--bot", "echo", "--input", f"s3://{bucket}/in/"], 2, "missing --output"),
        (["--bot", "echo", *good, "--interval", "0"], 2, "--interval"),
        (["--bot", "echo", *good, "--sqs-queue-url", "queue-please"], 2, "--sqs-queue-url: 'queue-please' is not a queue URL"),
        (["--bot", "echo", "--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/in/"], 2, "--output: s3://"),
    ]
    for args, code, expected in cases:
        result = spotbot(settings, "watch", *args, timeout=60)
        assert result.returncode == code, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    # a batch job's id cannot be watched
    upload(storage, bucket, {"in/a.txt": "a"})
    batch = spotbot(settings, "submit", "--bot", "echo", *good, "--job-id", "batch-1", "--wait")
    assert batch.returncode == 0, batch.stderr
    result = spotbot(settings, "watch", "--bot", "echo", *good, "--job-id", "batch-1", timeout=60)
    assert result.returncode == 2 and "not a long-running job" in result.stderr


def test_s3_notifications_are_read_from_their_json():
    # the shape S3 sends (keys URL-encoded), inside an SNS envelope too; test events and other events report nothing
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "in/a+b%2Bc.txt", "size": 3}}}
    assert [(o.bucket, o.key, o.size) for o in parse_body(json.dumps({"Records": [record]}))] == [("b", "in/a b+c.txt", 3)]
    wrapped = json.dumps({"Type": "Notification", "Message": json.dumps({"Records": [record]})})
    assert [o.key for o in parse_body(wrapped)] == ["in/a b+c.txt"]
    assert parse_body(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})) == []
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    assert parse_body(json.dumps({"Records": [removed]})) == []
    assert parse_body("not json") is None and parse_body(json.dumps({"hello": 1})) is None
    assert parse_body(json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]})) is None


# --- the SQS path, against ElasticMQ (an SQS-compatible server from Maven Central) ---------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sqs_url():
    if not (shutil.which("java") and shutil.which("mvn")):
        if os.environ.get("CI"):
            pytest.fail("CI must run the SQS watch test: java and mvn are needed for ElasticMQ")
        pytest.skip("java and mvn are needed to run ElasticMQ")
    port = _free_port()
    started = subprocess.run([str(ELASTICMQ), "start", str(port)], capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr
    yield f"http://127.0.0.1:{port}"
    subprocess.run([str(ELASTICMQ), "stop", str(port)], capture_output=True, timeout=60)


def test_watch_hears_s3_events_from_an_sqs_queue(settings, store, storage, bucket, tmp_path, sqs_url):
    import boto3

    # Given a queue that S3 would notify of uploads (ElasticMQ), and the echo bot
    sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name="us-east-1", aws_access_key_id="spotbot-test",
                       aws_secret_access_key="spotbot-test")
    queue = sqs.create_queue(QueueName=f"uploads-{bucket}")["QueueUrl"]
    register_echo(settings)
    log = tmp_path / "calls.jsonl"
    env = cli_env(settings, ECHO_CALLS_LOG=str(log), **SQS_ENV)

    # When a watcher listens to the queue (no sweeps: after its first listing only events tell it of objects)
    watch = Watch(settings, "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out/",
                  "--bots", "1", "--job-id", "q1", "--interval", "1", "--sweep", "0", "--sqs-queue-url", queue, env=env)
    wait_for(lambda: "swept_at" in cursor(store, "q1"), 60, "the catch-up listing")

    # and objects are uploaded with their notifications: one sent twice, one with a key S3 URL-encodes, one
    # through SNS, a test event, an event of another bucket, and a message that is no S3 event at all
    upload(storage, bucket, {"in/a.txt": "alpha", "in/with space+plus.txt": "spaced", "in/sns.txt": "via sns"})

    def event(key: str, of: str = bucket) -> str:
        return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                        "s3": {"bucket": {"name": of}, "object": {"key": key, "size": 5}}}]})

    for body in [event("in/a.txt"), event("in/a.txt"), event("in/with+space%2Bplus.txt"),
                 json.dumps({"Type": "Notification", "Message": event("in/sns.txt")}),
                 json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}),
                 event("in/a.txt", of="another-bucket"), "hello, not an event"]:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    wait_for(lambda: completed(store, "q1") == 3, 90, "the notified objects to be worked")

    # Then each object was worked once, every message was handled and deleted, and the odd one noted
    wait_for(lambda: sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
             ["ApproximateNumberOfMessagesNotVisible"] == "0", 30, "the messages to be deleted")
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert watch.stop() == 0, watch.stderr
    assert calls(log) == Counter({"in/a.txt": 1, "in/with space+plus.txt": 1, "in/sns.txt": 1})
    assert any("not S3 event notifications" in event for event in store.jobs.get("q1").events)
    spotbot(settings, "cancel", "q1")

    # and a queue that does not exist is refused at start, naming it
    missing = spotbot(settings, "watch", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                      f"s3://{bucket}/out/", "--sqs-queue-url", f"{sqs_url}/000000000000/no-such-queue",
                      env=env, timeout=60)
    assert missing.returncode == 6 and "no-such-queue" in missing.stderr and "Traceback" not in missing.stderr
