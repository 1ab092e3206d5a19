"""The bug-priority bot (seed 002) end to end: train, serve in BlazingText's format, run as a batch job, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from conftest import ROOT, cli_env, spotbot, upload

from framework import bot
from framework.endpoints import EndpointClient, EndpointManager
from framework.endpoints.serving import load_reference
from framework.models import EndpointSpec
from framework.storage import S3Location

BOT = ROOT / "bots" / "bug_priority"
PRIORITIES = ["Optional", "Trivial", "Minor", "Major", "Critical", "Blocker"]


@contextmanager
def sdk(settings, store, storage, bucket: str, endpoint_name: str):
    """The worker's SDK context for a task called in this process: real S3, the real endpoint process."""
    bot._context = bot.Context(storage, EndpointClient(settings, store), bucket, bucket, "out/", [endpoint_name])
    try:
        yield
    finally:
        bot._context = None


def train(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BOT / "train.py"), *args], env=cli_env(settings), capture_output=True,
                          text=True, timeout=300)


def register(settings, model_uri: str):
    config = json.loads((BOT / "bot_config.json").read_text())
    config.update(model_s3_path=model_uri, bot_image=f"python:{BOT / 'task.py'}",
                  endpoint_ecr_image_path=f"python:{BOT / 'endpoint.py'}")
    path = settings.home / "bug_priority.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    result = spotbot(settings, "bots", "register", str(path))
    assert result.returncode == 0, result.stderr
    return config


@pytest.fixture
def trained(settings, storage, bucket, tmp_path):
    """The shipped reports trained into a model at s3://bucket/models/, their held-out fifth under s3://bucket/bugs/."""
    result = train(settings, "--out", str(tmp_path / "model"), "--upload", f"s3://{bucket}/models/bug_priority.tar.gz",
                   "--holdout", f"s3://{bucket}/bugs/", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), tmp_path / "model"


def test_training_holds_out_a_stratified_fifth_and_packs_a_blazingtext_style_artifact(trained):
    metrics, out = trained
    validation = metrics["validation"]
    # 180 reports, 30 per priority: 6 of each held out
    assert metrics["train_examples"] == 144 and validation["examples"] == 36
    assert all(entry["support"] == 6 for entry in validation["per_label"].values())
    assert validation["accuracy"] == round(validation["correct"] / 36, 4)
    assert sum(validation["confusion"].values()) == 36
    with tarfile.open(out / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["metrics.json", "model.bin"]
    print(f"bug_priority validation accuracy: {validation['accuracy']} ({validation['correct']}/36), "
          f"training {metrics['training_seconds']}s")


def test_the_bot_classifies_reports_and_evaluate_scores_it_against_the_truth(settings, store, storage, bucket, trained):
    metrics, _ = trained
    register(settings, f"s3://{bucket}/models/bug_priority.tar.gz")

    # Given the endpoint, started from the model in S3: it speaks BlazingText's format
    endpoint = EndpointManager(settings, store, storage).ensure(store.bots.get("bug_priority"))[0]
    answer = requests.post(endpoint.url + "/invocations", timeout=30, json={
        "instances": ["The application crashes with a segfault on startup", "Typo in the footer"],
        "configuration": {"k": 2}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body) == 2
    for entry in body:
        assert len(entry["label"]) == 2 and all(label.startswith("__label__") for label in entry["label"])
        assert 0 <= entry["prob"][1] <= entry["prob"][0] <= 1
    one = requests.post(endpoint.url + "/invocations", json={"instances": ["Build is broken"]}, timeout=30).json()
    assert len(one) == 1 and len(one[0]["label"]) == 1 and len(one[0]["prob"]) == 1
    for bad in [{"instances": "not a list"}, {"text": "no instances"}, {"instances": [1, 2]},
                {"instances": ["x"], "configuration": {"k": 0}}]:
        refused = requests.post(endpoint.url + "/invocations", json=bad, timeout=30)
        assert refused.status_code == 400, (bad, refused.text)
        assert "instances" in refused.json()["error"] or "configuration.k" in refused.json()["error"]

    # When the bot runs as a batch job over the held-out reports, plus one as a tracker's JSON export
    upload(storage, bucket, {"bugs/reports/export.json": json.dumps({"summary": "Production is down",
                                                                     "description": "every request returns 502"})})
    result = spotbot(settings, "submit", "--bot", "bug_priority", "--input", f"s3://{bucket}/bugs/reports/",
                     "--output", f"s3://{bucket}/bugs-out/", "--bots", "2", "--wait", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    rows = {row["file_key"]: row for row in map(json.loads, spotbot(settings, "results", job_id).stdout.splitlines())}
    assert len(rows) == 37 and all(row["status"] == "COMPLETED" for row in rows.values())
    assert all(len(row["labels"]) == 1 and row["labels"][0] in PRIORITIES for row in rows.values())
    output = json.loads(storage.read(bucket, "bugs-out/bugs/reports/export.json.json"))
    assert output["priority"] in PRIORITIES and output["label"].startswith("__label__") and 0 < output["confidence"] <= 1

    # Then evaluate against the truth CSV gives the accuracy training measured on the same reports
    evaluated = spotbot(settings, "evaluate", job_id, "--truth", f"s3://{bucket}/bugs/labels.csv", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["evaluated"] == 36 and report["files_without_truth"] == 1 and report["unpredicted"] == 0
    assert report["accuracy"] == metrics["validation"]["accuracy"]
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 36
    truth = dict(line.split(",") for line in storage.read(bucket, "bugs/labels.csv").decode().splitlines()[1:])
    hits = sum(rows[key]["labels"][0] == label for key, label in truth.items())
    assert report["correct"] == hits
    for label, figures in report["per_class"].items():
        predicted = sum(1 for key in truth if rows[key]["labels"][0] == label)
        right = sum(1 for key, wanted in truth.items() if wanted == label and rows[key]["labels"][0] == label)
        assert figures["support"] == 6 and figures["recall"] == round(right / 6, 4)
        assert figures["precision"] == (round(right / predicted, 4) if predicted else None)

    # and the text report shows the matrix in priority order, with precision and recall per class
    text = spotbot(settings, "evaluate", job_id, "--truth", f"s3://{bucket}/bugs/labels.csv", "--labels", ",".join(PRIORITIES))
    assert text.returncode == 0, text.stderr
    assert f"accuracy {metrics['validation']['accuracy']:.3f}" in text.stdout
    header = next(line for line in text.stdout.splitlines() if line.startswith("truth \\ predicted"))
    assert header.split()[3:] == [*PRIORITIES, "(none)"]
    assert "precision" in text.stdout and "recall" in text.stdout

    # and the class counts per label add up to the files, with the endpoint's probability as confidence
    counted = json.loads(spotbot(settings, "stats", job_id, "--by", "label", "--json").stdout)
    assert {row["label"]: row["count"] for row in counted["rows"]} == Counter(row["labels"][0] for row in rows.values())
    confidences = {task.file_key: task.confidence for task in store.files.page(job_id)}
    for row in counted["rows"]:
        mine = [confidences[key] for key, r in rows.items() if r["labels"][0] == row["label"]]
        assert row["confidence_avg"] == pytest.approx(sum(mine) / len(mine), abs=1e-3)


def test_evaluate_refuses_a_bad_truth_file_with_a_clear_message(settings, store, storage, bucket, trained):
    register(settings, f"s3://{bucket}/models/bug_priority.tar.gz")
    upload(storage, bucket, {"few/a.txt": "The app crashes on save", "few/b.txt": "Typo in the menu"})
    result = spotbot(settings, "submit", "--bot", "bug_priority", "--input", f"s3://{bucket}/few/", "--output",
                     f"s3://{bucket}/few-out/", "--bots", "1", "--wait", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    cases = {
        "three.csv": ("file_key,label\nfew/a.txt,Critical,extra\n", 2, "line 2: expected 2 fields"),
        "empty-label.csv": ("few/a.txt,\n", 2, "line 1: label is empty"),
        "twice.csv": ("few/a.txt,Critical\nfew/a.txt,Minor\n", 2, "'few/a.txt' is listed twice"),
        "unknown.csv": ("few/a.txt,Critical\nfew/zzz.txt,Minor\n", 2, "1 key(s) of s3://"),
        "nothing.csv": ("file_key,label\n", 2, "has no file_key,label rows"),
        "quote.csv": ('few/a.txt,"Critical\n', 2, "not a valid CSV"),
    }
    for name, (content, code, expected) in cases.items():
        upload(storage, bucket, {f"truth/{name}": content})
        bad = spotbot(settings, "evaluate", job_id, "--truth", f"s3://{bucket}/truth/{name}")
        assert bad.returncode == code, (name, bad.stderr)
        assert expected in bad.stderr and f"truth/{name}" in bad.stderr, (name, bad.stderr)
        assert "Traceback" not in bad.stderr
    missing = spotbot(settings, "evaluate", job_id, "--truth", f"s3://{bucket}/truth/absent.csv")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unknown_job = spotbot(settings, "evaluate", "no-such-job", "--truth", f"s3://{bucket}/truth/three.csv")
    assert unknown_job.returncode == 5 and "no job 'no-such-job'" in unknown_job.stderr
    # keys relative to the job's input prefix are accepted
    upload(storage, bucket, {"truth/relative.csv": "a.txt,Critical\nb.txt,Trivial\n"})
    ok = spotbot(settings, "evaluate", job_id, "--truth", f"s3://{bucket}/truth/relative.csv", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["evaluated"] == 2


def test_training_data_errors_name_the_file_and_line(settings, tmp_path):
    data = tmp_path / "reports.txt"
    data.write_text("# comment\n__label__4 Search is broken\n__label__9 no such priority\n")
    result = train(settings, "--data", str(data), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert f"{data} line 3" in result.stderr and "__label__9" in result.stderr and "Traceback" not in result.stderr


def test_the_batched_endpoint_answers_each_request_as_the_unbatched_one_does(settings, store, storage, bucket, trained):
    model = f"s3://{bucket}/models/bug_priority.tar.gz"
    image = f"python:{BOT / 'endpoint.py'}"
    one_by_one = EndpointManager(settings.model_copy(update={"max_batch_size": 1}), store, storage).ensure_one(
        EndpointSpec(name="priority-one", image=image, model_s3_path=model))
    # a long delay: the six requests sent together are one batch
    batched = EndpointManager(settings.model_copy(update={"max_batch_size": 6, "max_batch_delay_ms": 5000}), store,
                              storage).ensure_one(EndpointSpec(name="priority-batched", image=image, model_s3_path=model))
    reports = storage.read(bucket, "bugs/labels.csv").decode().splitlines()[1:]
    texts = [storage.read(bucket, line.split(",")[0]).decode() for line in reports]
    # requests of different sizes and different k: a batch must give each its own instances' answers back
    bodies = [{"instances": texts[0:1]}, {"instances": texts[1:6], "configuration": {"k": 2}}, {"instances": texts[6:9]},
              {"instances": texts[9:10], "configuration": {"k": 3}}, {"instances": texts[10:18]},
              {"instances": texts[18:20], "configuration": {"k": 2}}]
    alone = [requests.post(one_by_one.url + "/invocations", json=body, timeout=30) for body in bodies]
    gate = threading.Barrier(len(bodies))

    def together(body):
        gate.wait()
        return requests.post(batched.url + "/invocations", json=body, timeout=30)

    with ThreadPoolExecutor(len(bodies)) as pool:
        at_once = list(pool.map(together, bodies))
    assert [a.status_code for a in alone + at_once] == [200] * 12
    assert [a.headers.get("X-Spotbot-Batch-Size") for a in at_once] == ["6"] * 6
    for body, single, grouped in zip(bodies, alone, at_once):
        assert len(grouped.json()) == len(body["instances"])
        assert grouped.json() == single.json()


def test_main_batch_classifies_a_group_of_reports_in_one_call_as_main_task_does_one_by_one(settings, store, storage,
                                                                                           bucket, trained, monkeypatch):
    register(settings, f"s3://{bucket}/models/bug_priority.tar.gz")
    endpoint = EndpointManager(settings, store, storage).ensure(store.bots.get("bug_priority"))[0]
    task = load_reference(f"python:{BOT / 'task.py'}", kind="task")
    upload(storage, bucket, {"bugs/reports/export.json": json.dumps({"summary": "Production is down",
                                                                     "description": "every request returns 502"}),
                             "bad/empty.txt": "   \n"})
    keys = sorted(key for page in storage.pages(S3Location(bucket, "bugs/reports/")) for key, _ in page)
    assert len(keys) == 37
    calls = []  # the real SDK call, counted
    real_invoke = bot.invoke_endpoint
    monkeypatch.setattr(bot, "invoke_endpoint", lambda body, **kw: calls.append(len(body["instances"])) or real_invoke(body, **kw))
    with sdk(settings, store, storage, bucket, endpoint.name):
        one_by_one = [task.main_task(key) for key in keys]
        assert calls == [1] * 37
        together = task.main_batch(keys)
        assert calls[37:] == [37]  # the 37 reports in one endpoint call
        # one bad report fails the whole call, naming the file
        with pytest.raises(ValueError, match="bad/empty.txt holds no report text"):
            task.main_batch([keys[0], "bad/empty.txt"])
    assert together == one_by_one
    assert all(result["priority"] in PRIORITIES and result["labels"] == [result["priority"]] for result in together)
