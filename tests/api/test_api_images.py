"""Seed 000's ImageLabeller through the API: images become items of one long-running job of the image bot."""

from __future__ import annotations

import os
import signal
import uuid
from urllib.parse import quote

from framework.endpoints.process import pid_alive
from framework.models import JobStatus
from framework.storage import S3Location

from .conftest import TOKEN, Page, bot_config, photo, wait_for

IMAGE_JOB = "image-labeller-api"


def environment(pid: int) -> str:
    """A running process's environment, as the kernel shows it."""
    with open(f"/proc/{pid}/environ", "rb") as env:
        text = env.read().decode(errors="replace")
    assert "SPOTBOT_ES_URL=" in text  # it is a spotbot process's environment, read in full
    return text


def image_state(api, image_id: str) -> dict:
    answer = api.get(f"/images/{image_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def classified(api, image_id: str, timeout: float = 180) -> dict:
    return wait_for(lambda: (body := image_state(api, image_id))["status"] != "NOT_CLASSIFIED" and body, timeout,
                    f"image {image_id} to be classified")


def test_images_stay_not_classified_until_the_bot_has_worked_them(serve, store, storage, bucket, photos, tmp_path):
    # Given an image bot that holds every image while a gate file exists
    gate = tmp_path / "gate"
    gate.touch()
    api = serve(SPOTBOT_API_IMAGE_BOT="gate", SPOTBOT_API_FETCH_ALLOW_NETWORKS="127.0.0.1/32",
                SPOTBOT_API_FETCH_MAX_BYTES="300000", GATE_FILE=str(gate))
    assert api.post("/bots", json=bot_config("gate")).status_code == 201
    jpeg = photo("coffee", "JPEG")
    gif = photo("astronaut", "GIF")
    photos.pages["/astronaut.gif"] = Page(gif, "image/gif")

    # When one image is uploaded as bytes, one sent as a URL in JSON, one through the seed's route
    uploaded = api.post("/images", data=jpeg, headers={"Content-Type": "image/jpeg"})
    assert uploaded.status_code == 202, uploaded.text
    by_json = api.post("/images", json={"url": photos.url("/astronaut.gif")})
    assert by_json.status_code == 202, by_json.text
    seed = api.get(f"/submit-image?url={quote(photos.url('/astronaut.gif'), safe='')}")
    assert seed.status_code == 200 and set(seed.json()) == {"ImageId"}
    ids = [uploaded.json()["id"], by_json.json()["id"], seed.json()["ImageId"]]
    assert uploaded.headers["Location"] == f"/images/{ids[0]}" and all(uuid.UUID(i) for i in ids)

    # Then each is NOT_CLASSIFIED while the bot holds it, on both routes
    for image_id in ids:
        assert image_state(api, image_id) == {"id": image_id, "status": "NOT_CLASSIFIED", "labels": [], "error": None}
        assert api.get("/get-image-label", params={"imageId": image_id}).json() == {"ImageLabel": "NOT_CLASSIFIED"}

    # and each is stored under its UUID, as an item of the one long-running labelling job
    job = store.jobs.get(IMAGE_JOB)
    assert job.accepting and job.status == JobStatus.RUNNING and job.total == 3 and job.bot == "gate"
    stored = {key: size for page in storage.pages(S3Location(bucket, "api/images/")) for key, size in page}
    assert stored == {f"api/images/{ids[0]}.jpg": len(jpeg), f"api/images/{ids[1]}.gif": len(gif),
                      f"api/images/{ids[2]}.gif": len(gif)}
    assert storage.read(bucket, f"api/images/{ids[0]}.jpg") == jpeg
    # and the workers the server started were not handed its token
    assert job.workers and not any(TOKEN in environment(w.pid) for w in job.workers.values())

    # When the bot lets them through, they are classified with what it read: the bytes that were sent
    gate.unlink()
    done = [classified(api, image_id, 60) for image_id in ids]
    assert done[0]["status"] == "CLASSIFIED"
    assert done[0]["labels"] == [{"label": f"{len(jpeg)} bytes", "score": 1.0}, {"label": "gated", "score": 0.5}]
    assert [d["labels"][0]["label"] for d in done[1:]] == [f"{len(gif)} bytes"] * 2
    assert api.get("/get-image-label", params={"imageId": ids[2]}).json() == {"ImageLabel": f"{len(gif)} bytes, gated"}
    assert api.get(f"/jobs/{IMAGE_JOB}").json()["counts"]["COMPLETED"] == 3


def test_bad_images_and_unknown_ids_are_refused_and_nothing_is_kept(serve, store, storage, bucket):
    api = serve(SPOTBOT_API_IMAGE_BOT="gate", SPOTBOT_API_FETCH_MAX_BYTES="300000")
    assert api.post("/bots", json=bot_config("gate")).status_code == 201
    unknown = str(uuid.uuid4())
    cases = [
        (api.get(f"/images/{unknown}"), 404, None, f"no image {unknown}"),
        (api.get("/get-image-label", params={"imageId": unknown}), 404, None, f"no image {unknown}"),
        (api.get("/images/not-a-uuid"), 422, "image_id", "image_id:"),
        (api.get("/get-image-label", params={"imageId": "x"}), 422, "imageId", "imageId:"),
        (api.get("/get-image-label"), 422, "imageId", "imageId: is required"),
        (api.get("/submit-image"), 422, "url", "url: is required"),
        (api.get("/submit-image", params={"url": "http://example.org/notes.txt"}), 422, "url", "must name a file ending"),
        (api.post("/images", json={}), 422, "url", "url: is required"),
        (api.post("/images", json={"url": "x", "colour": "red"}), 422, "colour", "is not a field"),
        (api.post("/images", data="{oops", headers={"Content-Type": "application/json"}), 422, "body", "not valid JSON"),
        (api.post("/images", data=b"plain words", headers={"Content-Type": "image/png"}), 415, "body",
         "body: is not a JPEG, PNG, BMP, TIFF or GIF image"),
        (api.post("/images", data=b"hello", headers={"Content-Type": "text/plain"}), 415, "Content-Type",
         "neither application/json"),
        (api.post("/images", data=b"", headers={"Content-Type": "image/png"}), 422, "body", "body: is empty"),
        (api.post("/images", data=b"\x89PNG\r\n\x1a\n" + bytes(400_000), headers={"Content-Type": "image/png"}), 413,
         "body", "larger than 300000 bytes"),
    ]
    for answer, status, field, message in cases:
        assert answer.status_code == status, (message, answer.text)
        assert answer.json()["field"] == field and message in answer.json()["message"], answer.json()
    # nothing was recorded or stored for any of them
    assert [job.job_id for job in store.jobs.list() if job.total] == []
    assert [key for page in storage.pages(S3Location(bucket, "api/")) for key, _ in page] == []


def test_the_image_routes_wait_for_the_image_bot_to_be_registered(api):
    image = photo("coffee", "PNG")
    before = api.post("/images", data=image, headers={"Content-Type": "image/png"})
    assert before.status_code == 503 and "'image_labeller' is not registered" in before.json()["message"]
    assert "spotbot bots register bots/image_labeller/bot_config.json" in before.json()["message"]


def test_a_real_photo_is_labelled_with_what_is_in_it(photos, serve, store):
    # Given the sample image bot and a cat and a cup of coffee served over HTTP on 127.0.0.1
    api = serve(SPOTBOT_API_FETCH_ALLOW_NETWORKS="127.0.0.1/32")
    assert api.post("/bots", json=bot_config("image_labeller")).status_code == 201
    photos.pages["/chelsea.png"] = Page(photo("chelsea", "PNG"), "image/png")
    photos.pages["/coffee.jpg"] = Page(photo("coffee", "JPEG"), "image/jpeg")

    # When they are submitted through the seed's route
    cat = api.get(f"/submit-image?url={quote(photos.url('/chelsea.png'), safe='')}").json()["ImageId"]
    coffee = api.get(f"/submit-image?url={quote(photos.url('/coffee.jpg'), safe='')}").json()["ImageId"]

    # Then the labels name what is in them: top-5 ImageNet classes, best first, with scores
    cat_labels = classified(api, cat)["labels"]
    coffee_labels = classified(api, coffee)["labels"]
    assert len(cat_labels) == 5 and any("cat" in entry["label"] for entry in cat_labels[:2]), cat_labels
    assert coffee_labels[0]["label"] == "espresso", coffee_labels
    assert all(0 < entry["score"] <= 1 for entry in cat_labels + coffee_labels)
    assert [e["score"] for e in cat_labels] == sorted((e["score"] for e in cat_labels), reverse=True)
    seed_label = api.get("/get-image-label", params={"imageId": cat}).json()["ImageLabel"]
    assert seed_label == ", ".join(entry["label"].split(", ")[0] for entry in cat_labels) and "cat" in seed_label
    # worked by the same machinery as batch jobs: the bot's endpoint and the labelling job's workers
    job = store.jobs.get(IMAGE_JOB)
    assert job.bot == "image_labeller" and job.total == 2 and job.accepting
    endpoints = api.get("/endpoints").json()
    assert [(e["name"], e["healthy"]) for e in endpoints] == [("image-labeller", True)]
    assert TOKEN not in environment(endpoints[0]["pid"])  # nor the endpoint it started


def test_images_survive_a_killed_server_and_workers(serve, store, tmp_path):
    # Given two images held by the gate bot's workers
    gate = tmp_path / "gate"
    gate.touch()
    env = {"SPOTBOT_API_IMAGE_BOT": "gate", "GATE_FILE": str(gate)}
    first = serve(**env)
    assert first.post("/bots", json=bot_config("gate")).status_code == 201
    ids = [first.post("/images", data=photo(name, "PNG"), headers={"Content-Type": "image/png"}).json()["id"]
           for name in ("chelsea", "coffee")]
    wait_for(lambda: store.jobs.counts(IMAGE_JOB)["PROCESSING"] == 2, 60, "the workers to take both images")

    # When the server and every worker of the labelling job are killed
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    workers = store.jobs.get(IMAGE_JOB).workers.values()
    for worker in workers:
        os.killpg(worker.pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(w.pid) for w in workers), 30, "the workers to be gone")

    # Then a new server reopens the job with new workers, and both images end classified, each once
    second = serve(**env)
    assert image_state(second, ids[0])["status"] == "NOT_CLASSIFIED"
    gate.unlink()
    done = [classified(second, image_id, 120) for image_id in ids]
    assert [d["status"] for d in done] == ["CLASSIFIED", "CLASSIFIED"]
    counts = store.jobs.counts(IMAGE_JOB)
    assert counts["COMPLETED"] == 2 and sum(counts.values()) == 2
    job = store.jobs.get(IMAGE_JOB)
    assert job.total == 2 and set(job.workers) > {w.id for w in workers}
