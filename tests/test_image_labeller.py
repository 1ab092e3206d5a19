"""The sample image bot on the embedded stack: real photos, real ImageNet labels (EfficientNet-Lite0), one by one and batched."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import skimage.data
from PIL import Image

from conftest import ROOT, spotbot, upload
from framework.endpoints import EndpointManager
from framework.models import EndpointSpec


def test_image_labeller_names_what_is_in_real_photos(settings, store, storage, bucket):
    # Given real photos (scikit-image ships them) in four formats
    photos = {}
    for name, fmt, ext in [("chelsea", "PNG", "png"), ("coffee", "JPEG", "jpg"), ("rocket", "TIFF", "tif"),
                           ("astronaut", "GIF", "gif")]:
        data = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(data, fmt)
        photos[f"in/{name}.{ext}"] = data.getvalue()
    upload(storage, bucket, photos)
    assert spotbot(settings, "bots", "register", str(ROOT / "bots" / "image_labeller" / "bot_config.json")).returncode == 0

    # When the image bot labels them
    result = spotbot(settings, "submit", "--bot", "image_labeller", "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", "--bots", "1", "--wait", "--json", timeout=600)

    # Then the top-5 labels name what is in each photo
    assert result.returncode == 0, result.stderr
    rows = {json.loads(line)["file_key"]: json.loads(line)
            for line in spotbot(settings, "results", json.loads(result.stdout)["job_id"]).stdout.splitlines()}
    assert len(rows) == 4
    cat = rows["in/chelsea.png"]["labels"]
    assert any("cat" in label for label in cat[:2]), cat
    assert rows["in/coffee.jpg"]["labels"][0] == "espresso"
    assert any("missile" in label or "space shuttle" in label for label in rows["in/rocket.tif"]["labels"][:3])
    assert all(len(row["labels"]) == 5 for row in rows.values())


def test_the_batched_endpoint_labels_each_photo_as_the_unbatched_one_does(settings, store):
    # Given eight real photos (four of scikit-image's and their mirror images)
    photos = []
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        pixels = getattr(skimage.data, name)()
        for image in (pixels, pixels[:, ::-1]):
            data = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image)).save(data, "PNG")
            photos.append(data.getvalue())
    module = f"python:{ROOT / 'bots' / 'image_labeller' / 'endpoint.py'}"
    one_by_one = EndpointManager(settings.model_copy(update={"max_batch_size": 1}), store).ensure_one(
        EndpointSpec(name="labeller-one", image=module))
    # a long delay: the eight requests sent together are one batch
    batched = EndpointManager(settings.model_copy(update={"max_batch_size": 8, "max_batch_delay_ms": 5000}), store).ensure_one(
        EndpointSpec(name="labeller-batched", image=module))

    # When each photo is labelled alone, and all eight at once by the batched endpoint
    def post(url, photo):
        return requests.post(url + "/invocations", data=photo, headers={"Content-Type": "image/png"}, timeout=120)

    alone = [post(one_by_one.url, photo) for photo in photos]
    gate = threading.Barrier(len(photos))

    def together(photo):
        gate.wait()
        return post(batched.url, photo)

    with ThreadPoolExecutor(len(photos)) as pool:
        at_once = list(pool.map(together, photos))

    # Then they went through the network in one batch, and each caller got its own photo's labels
    assert all(answer.status_code == 200 for answer in alone + at_once)
    assert [answer.headers.get("X-Spotbot-Batch-Size") for answer in at_once] == ["8"] * 8
    assert all("X-Spotbot-Batch-Size" not in answer.headers for answer in alone)
    for single, grouped in zip(alone, at_once):
        expected, got = single.json()["labels"], grouped.json()["labels"]
        assert [entry["label"] for entry in got] == [entry["label"] for entry in expected]
        assert [entry["score"] for entry in got] == pytest.approx([entry["score"] for entry in expected], abs=2e-4)
    assert at_once[2].json()["labels"][0]["label"] == "espresso"  # coffee
    assert len({json.dumps(answer.json()) for answer in at_once}) == 8  # eight different answers, none shared
