"""spotbot stats: files per day and label, counted by the server from the file documents when asked."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

from conftest import register_echo, spotbot, submit, upload

from framework.models import FileStatus, FileTask, Job, JobStatus

DAY = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


def millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def record(store, job_id: str, files: list[tuple[str, str, list[str], dt.datetime | None, float | None]]) -> None:
    """File documents of a job as workers leave them: (key, status, labels, completed at, confidence)."""
    store.jobs.create(Job(job_id=job_id, bot="classifier", input_uri="s3://b/in/", output_uri="s3://b/out/",
                          status=JobStatus.COMPLETED, total=len(files)))
    store.files.record(FileTask(job_id=job_id, bot="classifier", bucket="b", file_key=key, chunk_id="c", batch_id=0,
                                status=FileStatus(status), labels=labels, confidence=confidence,
                                completed_at=millis(at) if at else None)
                       for key, status, labels, at, confidence in files)


def stats(settings, job_id: str, *args: str) -> dict:
    result = spotbot(settings, "stats", job_id, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_counts_by_day_and_label_match_the_files(settings, store):
    # Given predictions on three days (two of them late in the evening, UTC), an error and a file not done yet
    h = dt.timedelta(hours=1)
    files = [
        ("in/1.jpg", "COMPLETED", ["FAW"], DAY + 9 * h, 0.9),
        ("in/2.jpg", "COMPLETED", ["FAW"], DAY + 23 * h, 0.7),
        ("in/3.jpg", "COMPLETED", ["AAW"], DAY + 10 * h, 0.5),
        ("in/4.jpg", "COMPLETED", ["FAW"], DAY + 24 * h + 8 * h, 0.6),
        ("in/5.jpg", "COMPLETED", ["ECLW", "moth"], DAY + 24 * h + 22.5 * h, None),
        ("in/6.jpg", "COMPLETED", ["AAW"], DAY + 72 * h, 0.8),
        ("in/7.jpg", "ERROR", [], DAY + 11 * h, None),
        ("in/8.jpg", "NOT_STARTED", [], None, None),
    ]
    record(store, "moths", files)

    # When counted by day and label (UTC)
    counted = stats(settings, "moths")

    # Then each (day, label) row counts the completed files of that day with that label, as the seed's table would
    rows = {(row["day"], row["label"]): row for row in counted["rows"]}
    assert {key: row["count"] for key, row in rows.items()} == {
        ("2026-11-28", "AAW"): 1, ("2026-11-28", "FAW"): 2, ("2026-11-29", "ECLW"): 1, ("2026-11-29", "FAW"): 1,
        ("2026-11-29", "moth"): 1, ("2026-12-01", "AAW"): 1,
    }
    assert counted["files"] == 6  # the ERROR and NOT_STARTED files are not predictions
    assert rows[("2026-11-28", "FAW")]["confidence_avg"] == 0.8
    assert rows[("2026-11-29", "ECLW")]["confidence_avg"] is None  # no confidence given: none made up
    assert rows[("2026-11-28", "FAW")]["first_at"] == "2026-11-28T09:00:00+00:00"
    assert rows[("2026-11-28", "FAW")]["last_at"] == "2026-11-28T23:00:00+00:00"

    # and days follow the chosen UTC offset: 23:00 and 22:30 UTC belong to the next day at +02:00
    shifted = {(row["day"], row["label"]): row["count"] for row in stats(settings, "moths", "--tz", "+02:00")["rows"]}
    assert shifted[("2026-11-28", "FAW")] == 1 and shifted[("2026-11-29", "FAW")] == 2
    assert shifted[("2026-11-30", "ECLW")] == 1

    # and by label alone, or by day and status (then the error counts too)
    by_label = {row["label"]: row["count"] for row in stats(settings, "moths", "--by", "label")["rows"]}
    assert by_label == {"AAW": 2, "ECLW": 1, "FAW": 3, "moth": 1}
    by_status = {(row["day"], row["status"]): row["count"] for row in stats(settings, "moths", "--by", "day,status")["rows"]}
    assert by_status == {("2026-11-28", "COMPLETED"): 3, ("2026-11-28", "ERROR"): 1, ("2026-11-29", "COMPLETED"): 2,
                         ("2026-12-01", "COMPLETED"): 1}

    # and with fewer labels per group than there are, the rest is one (other) row, so the counts still add up
    top = stats(settings, "moths", "--by", "label", "--top", "2")["rows"]
    assert sum(row["count"] for row in top) == sum(by_label.values()) and top[-1]["label"] == "(other)"

    # and the text table shows the same rows
    text = spotbot(settings, "stats", "moths")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[1].split()[:3] == ["day", "label", "count"] and len(lines) == 2 + len(rows)


def test_counts_of_a_real_job_match_its_results(settings, store, storage, bucket):
    # Given an echo job over files short and long (the echo bot labels each [short|long, echo])
    register_echo(settings)
    upload(storage, bucket, {f"in/{i}.txt": "x" * (3 if i % 3 else 30) for i in range(7)})
    code, job, stderr = submit(settings, bucket)
    assert code == 0, stderr

    # When counted by label
    counted = stats(settings, job["job_id"], "--by", "day,label")

    # Then the counts are those of the labels in its results, all on today's date
    results = [json.loads(line) for line in spotbot(settings, "results", job["job_id"]).stdout.splitlines()]
    expected = Counter(label for row in results for label in row["labels"])
    assert {row["label"]: row["count"] for row in counted["rows"]} == expected == {"short": 4, "long": 3, "echo": 7}
    assert {row["day"] for row in counted["rows"]} == {dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")}


def test_stats_refuses_bad_input(settings, store):
    record(store, "small", [("in/1.jpg", "COMPLETED", ["a"], DAY, None)])
    for args, code, expected in [
        (["no-such-job"], 5, "no job 'no-such-job'"),
        (["small", "--by", "week"], 2, "--by: 'week'"),
        (["small", "--by", "day,day"], 2, "--by"),
        (["small", "--tz", "Europe/Paris"], 2, "--tz: 'Europe/Paris' is not a UTC offset"),
    ]:
        result = spotbot(settings, "stats", *args)
        assert result.returncode == code, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_each_label_gets_its_own_score_not_the_files_top_one(settings, store):
    # Given photos whose tasks gave every label its own score (as the image labeller does)
    store.jobs.create(Job(job_id="photos", bot="classifier", input_uri="s3://b/in/", output_uri="s3://b/out/",
                          status=JobStatus.COMPLETED, total=2))
    at = millis(DAY)
    store.files.record([
        FileTask(job_id="photos", bot="classifier", bucket="b", file_key="in/cat.jpg", chunk_id="c", batch_id=0,
                 status=FileStatus.COMPLETED, labels=["tiger cat", "window screen"], confidence=0.3845, completed_at=at,
                 label_scores=[{"label": "tiger cat", "score": 0.3845}, {"label": "window screen", "score": 0.0012}]),
        FileTask(job_id="photos", bot="classifier", bucket="b", file_key="in/cat2.jpg", chunk_id="c", batch_id=0,
                 status=FileStatus.COMPLETED, labels=["tiger cat"], confidence=0.6155, completed_at=at,
                 label_scores=[{"label": "tiger cat", "score": 0.6155}]),
    ])

    # When counted by label
    rows = {row["label"]: row for row in stats(settings, "photos", "--by", "label")["rows"]}

    # Then each label's confidence is the average of its own scores
    assert rows["window screen"]["count"] == 1 and rows["window screen"]["confidence_avg"] == 0.0012
    assert rows["tiger cat"]["count"] == 2 and rows["tiger cat"]["confidence_avg"] == 0.5
