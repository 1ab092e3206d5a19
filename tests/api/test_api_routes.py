"""The API's bot, job and endpoint routes against the real `spotbot serve` over the test's real servers."""

from __future__ import annotations

from conftest import ROOT, upload

from .conftest import bot_config, wait_for


def ended(api, job_id: str) -> dict:
    return wait_for(lambda: (body := api.get(f"/jobs/{job_id}").json())["status"] not in ("SCANNING", "RUNNING") and body,
                    120, f"job {job_id} to end")


def test_bots_are_registered_listed_read_and_deleted(api, store):
    # Given the echo bot's registration in the seed's format
    config = bot_config("echo")

    # When it is registered, then registered again with a change
    created = api.post("/bots", json=config)
    assert created.status_code == 201, created.text
    assert created.json()["file_types"] == [".txt", ".json"]
    updated = api.post("/bots", json={**config, "file_types": ".txt"})
    assert updated.status_code == 200 and updated.json()["file_types"] == [".txt"]
    assert updated.json()["create_date"] == created.json()["create_date"]

    # Then it is listed and readable, and once deleted it is gone
    assert [bot["name"] for bot in api.get("/bots").json()] == ["echo"]
    assert api.get("/bots/echo").json()["bot_image"] == f"python:{ROOT / config['bot_image'].removeprefix('python:')}"
    assert api.delete("/bots/echo").status_code == 204
    missing = api.get("/bots/echo")
    assert missing.status_code == 404 and "no bot named 'echo'" in missing.json()["message"]
    assert api.delete("/bots/echo").status_code == 404
    assert store.bots.list() == []


def test_a_bad_registration_names_the_field_and_stores_nothing(api, store):
    good = bot_config("echo")
    cases = [
        ({k: v for k, v in good.items() if k != "name"}, "name", "name: is required"),
        ({**good, "file_types": " , "}, "file_types", "file_types: must name at least one suffix"),
        ({**good, "file_types": 7}, "file_types", "file_types:"),
        ({**good, "name": "x'; ctx._source.clear(); '"}, "name", "name: must start with a letter"),
        ({**good, "endpoint_name": "e1,e2"}, "body", "endpoint_name lists 2 endpoint(s)"),
        ({**good, "colour": "red"}, "colour", "colour: is not a field of this request"),
        ({**good, "bot_image": "python:no_such_task.py"}, "bot_image", "bot_image:"),
        # longer than a keyword Elasticsearch indexes (32766 bytes): refused here, not by the store as a 5xx
        ({**good, "instance_type": "\U0001F600" * 9000}, "instance_type", "at most 4096 characters"),
        ([1, 2], "body", "body:"),
    ]
    for body, field, message in cases:
        answer = api.post("/bots", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["field"] == field and message in answer.json()["message"], (body, answer.json())
    not_json = api.post("/bots", data="{name: oops", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["message"]
    bad_name = api.get("/bots/a%20OR%20b")
    assert bad_name.status_code == 422 and bad_name.json()["field"] == "name"
    assert store.bots.list() == []


def test_a_job_is_submitted_watched_and_its_results_read_page_by_page(api, storage, bucket):
    # Given the echo bot and seven files (and one it does not take)
    assert api.post("/bots", json=bot_config("echo")).status_code == 201
    files = {f"in/f{i}.txt": f"file {i}" for i in range(7)}
    upload(storage, bucket, {**files, "in/skip.png": "not for echo"})

    # When a job is submitted
    answer = api.post("/jobs", json={"bot": "echo", "input": f"s3://{bucket}/in/", "output": f"s3://{bucket}/out/",
                                     "workers": 2, "job_id": "api-job-1"})

    # Then it is accepted at once, runs in the background, and ends with every file done once
    assert answer.status_code == 202, answer.text
    assert answer.json()["job_id"] == "api-job-1" and answer.json()["status"] in ("SCANNING", "RUNNING")
    job = ended(api, "api-job-1")
    assert job["status"] == "COMPLETED" and job["total"] == 7
    assert job["counts"]["COMPLETED"] == 7 and sum(job["counts"].values()) == 7
    assert [j["job_id"] for j in api.get("/jobs").json()] == ["api-job-1"]
    wait_for(lambda: {w["state"] for w in api.get("/jobs/api-job-1").json()["workers"]} == {"EXITED"}, 60,
             "its two workers to be shown gone")
    assert len(api.get("/jobs/api-job-1").json()["workers"]) == 2
    cost = api.get("/jobs/api-job-1").json()["cost"]  # what its workers' time was, per worker-hour of files
    assert cost["worker_seconds"] > 0 and cost["files_per_worker_hour"] > 0

    # and its results come in key order, three at a time, each file once
    keys, after, pages = [], None, 0
    while True:
        page = api.get("/jobs/api-job-1/results", params={"limit": 3, **({"after": after} if after else {})}).json()
        keys += [row["file_key"] for row in page["files"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert keys == sorted(files) and pages == 3
    first = api.get("/jobs/api-job-1/results", params={"limit": 1}).json()["files"][0]
    assert first["status"] == "COMPLETED" and first["labels"] == ["short", "echo"]
    assert first["output_uri"] == f"s3://{bucket}/out/in/f0.txt.json"
    assert api.get("/jobs/api-job-1/results", params={"status": "ERROR"}).json() == {"files": [], "next": None}

    # and the bot's endpoint is listed, answering
    endpoints = api.get("/endpoints").json()
    assert [(e["name"], e["healthy"]) for e in endpoints] == [("echo-upper", True)]

    # and submitting the ended job's id again changes nothing
    again = api.post("/jobs", json={"bot": "echo", "input": f"s3://{bucket}/in/", "output": f"s3://{bucket}/out/",
                                    "job_id": "api-job-1"})
    assert again.status_code == 200 and again.json()["total"] == 7


def test_a_job_is_cancelled_and_an_ended_one_retried(serve, storage, bucket):
    api = serve(SPOTBOT_MAX_ATTEMPTS="1")
    assert api.post("/bots", json=bot_config("echo")).status_code == 201
    upload(storage, bucket, {"in/a.txt": "a", "in/b.txt": "RAISE", "slow/s1.txt": "SLOW 30", "slow/s2.txt": "SLOW 30"})

    # Given a job with a failing file that has ended
    api.post("/jobs", json={"bot": "echo", "input": f"s3://{bucket}/in/", "output": f"s3://{bucket}/out/",
                            "job_id": "api-retry"})
    job = ended(api, "api-retry")
    assert job["status"] == "COMPLETED_WITH_ERRORS" and job["counts"]["ERROR"] == 1
    failed = api.get("/jobs/api-retry/results", params={"status": "ERROR"}).json()["files"]
    assert [row["file_key"] for row in failed] == ["in/b.txt"] and "asked to fail" in failed[0]["error"]

    # When it is retried, its failed file is worked again (and fails again), in the same job
    retried = api.post("/jobs/api-retry/retry", json={"errors_only": True})
    # the answer shows the state the retry left (RUNNING, its file open again), or says it is still settling
    assert retried.status_code == 202 and retried.headers["Location"] == "/jobs/api-retry"
    shown = retried.json()
    assert (shown["status"] == "RUNNING" and shown["settling"] is None) or "background" in shown["settling"], shown
    wait_for(lambda: any("retry 1" in e for e in api.get("/jobs/api-retry").json()["events"]), 60, "the retry to start")
    job = ended(api, "api-retry")
    assert job["status"] == "COMPLETED_WITH_ERRORS" and job["total"] == 2 and job["counts"]["ERROR"] == 1

    # Given a slow job that is running
    api.post("/jobs", json={"bot": "echo", "input": f"s3://{bucket}/slow/", "output": f"s3://{bucket}/out-slow/",
                            "workers": 1, "job_id": "api-cancel"})
    wait_for(lambda: api.get("/jobs/api-cancel").json()["counts"].get("PROCESSING"), 60, "the slow job to start working")
    running_retry = api.post("/jobs/api-cancel/retry")
    assert running_retry.status_code == 409 and "RUNNING" in running_retry.json()["message"]

    # When it is cancelled, it shows CANCELLED in the answer, and ends with no file left open
    cancelled = api.post("/jobs/api-cancel/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"
    assert sum(cancelled.json()["counts"].values()) == 2, cancelled.json()  # its files' counts, not {}
    wait_for(lambda: api.get("/jobs/api-cancel").json()["counts"].get("CANCELLED", 0)
             + api.get("/jobs/api-cancel").json()["counts"].get("COMPLETED", 0) == 2, 90, "the cancel to drain")
    again = api.post("/jobs/api-cancel/cancel")
    assert again.status_code == 409 and "nothing to cancel" in again.json()["message"]
    assert api.post("/jobs/api-cancel/close").status_code == 409  # not a long-running job


def test_bad_submissions_name_the_field_and_store_no_job(api, storage, bucket):
    assert api.post("/bots", json=bot_config("echo")).status_code == 201
    good = {"bot": "echo", "input": f"s3://{bucket}/in/", "output": f"s3://{bucket}/out/"}
    cases = [
        ({**good, "bot": "nobody"}, 404, None, "no bot named 'nobody'"),
        ({**good, "input": "bucket/in"}, 422, "input", "input: 'bucket/in' is not an S3 URI"),
        ({**good, "input": "s3://no-such-bucket-here/in/"}, 422, "input", "bucket 'no-such-bucket-here' does not exist"),
        ({**good, "output": good["input"]}, 422, "output", "overlaps the input"),
        ({**good, "job_id": "../etc"}, 422, "job_id", "job_id:"),
        ({**good, "workers": 0}, 422, "workers", "workers:"),
        ({**good, "colour": "red"}, 422, "colour", "is not a field"),
        ({k: v for k, v in good.items() if k != "input"}, 422, "input", "input: is required"),
    ]
    for body, status, field, message in cases:
        answer = api.post("/jobs", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["field"] == field and message in answer.json()["message"], (body, answer.json())
        assert "Traceback" not in answer.text
    assert api.get("/jobs").json() == []
    assert api.get("/jobs/nope").status_code == 404
    assert api.get("/jobs/nope/results").status_code == 404
    assert api.get("/jobs/x/results", params={"limit": 0}).json()["field"] == "limit"
