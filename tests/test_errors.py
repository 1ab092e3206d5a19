"""`spotbot errors` groups a job's failed files by cause; `spotbot retry --signature` reruns one group only."""

from __future__ import annotations

import json

from conftest import cli_env, register_echo, results, spotbot, submit, upload

RAISE_SIGNATURE = "ValueError: asked to fail by <path>"
BAD_RESULT_SIGNATURE = ("TypeError: main_task returned a dict that is not JSON-serializable: Object of type set is not "
                        "JSON serializable")


def test_errors_are_grouped_by_cause_and_one_group_is_retried(settings, store, storage, bucket, tmp_path):
    # Given a job whose files fail for two causes: 3 raise, 2 return what cannot be serialized, 5 work
    register_echo(settings)
    files = {f"in/ok{i}.txt": f"hello {i}" for i in range(5)}
    files.update({f"in/raise{i}.txt": "RAISE please" for i in range(3)})
    files.update({f"in/sub/bad{i}.txt": "BADRESULT" for i in range(2)})
    upload(storage, bucket, files)
    calls = tmp_path / "calls.jsonl"
    env = cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1", ECHO_CALLS_LOG=str(calls))
    code, job, stderr = submit(settings, bucket, env=env)
    assert code == 3, stderr  # COMPLETED_WITH_ERRORS

    # When the errors are listed
    listed = spotbot(settings, "errors", job["job_id"], "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)

    # Then there are two groups, largest first, with their counts, times and example files
    assert report["errors"] == 5 and report["other"] == 0 and report["unsigned"] == 0
    assert [(g["signature"], g["count"]) for g in report["groups"]] == [(RAISE_SIGNATURE, 3), (BAD_RESULT_SIGNATURE, 2)]
    raised = report["groups"][0]
    assert [e["file_key"] for e in raised["examples"]] == ["in/raise0.txt", "in/raise1.txt", "in/raise2.txt"]
    assert raised["examples"][0]["error"] == "ValueError: asked to fail by in/raise0.txt"
    assert raised["first_at"] <= raised["last_at"] and raised["first_seen"].endswith("Z")
    text = spotbot(settings, "errors", job["job_id"])
    assert text.returncode == 0 and "5 failed file(s) in 2 group(s)" in text.stdout and RAISE_SIGNATURE in text.stdout

    # When only the group of bad results is retried
    calls.write_text("")
    again = spotbot(settings, "retry", job["job_id"], "--signature", BAD_RESULT_SIGNATURE, "--wait", "--json", env=env)
    assert again.returncode == 3, again.stderr

    # Then only its two files ran again, and they failed again for the same cause (each counted twice)
    ran = sorted(json.loads(line)["key"] for line in calls.read_text().splitlines())
    assert ran == ["in/sub/bad0.txt", "in/sub/bad1.txt"]
    rows = {row["file_key"]: row for row in results(settings, job["job_id"])}
    assert all(rows[key]["status"] == "ERROR" for key in ran)
    store.refresh("files")
    bad = [task for task in store.files.page(job["job_id"], status="ERROR") if task.file_key in ran]
    assert [task.failures for task in bad] == [2, 2]
    assert all(task.error_signature == BAD_RESULT_SIGNATURE for task in bad)
    report = json.loads(spotbot(settings, "errors", job["job_id"], "--json").stdout)
    assert [(g["signature"], g["count"]) for g in report["groups"]] == [(RAISE_SIGNATURE, 3), (BAD_RESULT_SIGNATURE, 2)]
    completed = [task for task in store.files.page(job["job_id"], status="COMPLETED")]
    assert len(completed) == 5 and all(task.duration_ms is not None and task.duration_ms >= 0 for task in completed)


def test_retry_of_a_signature_no_file_has_is_refused(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "hello", "in/b.txt": "RAISE"})
    code, job, stderr = submit(settings, bucket, env=cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1"))
    assert code == 3, stderr
    refused = spotbot(settings, "retry", job["job_id"], "--signature", "KeyError: nothing like this")
    assert refused.returncode == 5
    assert "no ERROR file with the error signature 'KeyError: nothing like this'" in refused.stderr
    assert "spotbot errors" in refused.stderr
    missing = spotbot(settings, "errors", "no-such-job")
    assert missing.returncode == 5 and "no job 'no-such-job'" in missing.stderr
