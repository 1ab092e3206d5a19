"""Endpoints as containers over the SageMaker serving contract, and what the container backends refuse."""

from __future__ import annotations

import io
import json
import sys
import tarfile

import requests
import skimage.data
from docker_support import (BASE, LABELLER_ENDPOINT, OCR_ENDPOINT, WORKER, containers_of, engine,  # noqa: F401
                            no_container_left, register, settings, throwaway_image)
from PIL import Image

from conftest import BOTS, ROOT, cli_env, spotbot, submit, upload

from framework.endpoints import EndpointManager
from framework.errors import EndpointError
from framework.models import BotConfig, EndpointSpec

sys.path.insert(0, str(ROOT / "bots" / "doc_ocr"))
from samples import render  # noqa: E402


def image_bytes(image: Image.Image, fmt: str) -> bytes:
    data = io.BytesIO()
    image.save(data, format=fmt)
    return data.getvalue()


def model_archive(files: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def test_every_endpoint_of_a_bot_is_a_container_reused_while_it_answers(settings, store, storage, bucket, engine):
    # Given a bot with two endpoints, the first with a model archive in S3
    storage.write(bucket, "models/ocr.tar.gz", model_archive({"threshold.txt": b"100", "conf/labels.txt": b"a\nb\n"}))
    bot = BotConfig(name="two", file_types=".png", bot_image=WORKER, endpoint_name="ocr,labels",
                    endpoint_ecr_image_path=f"{OCR_ENDPOINT},{LABELLER_ENDPOINT}",
                    model_s3_path=f"s3://{bucket}/models/ocr.tar.gz,")
    manager = EndpointManager(settings, store, storage)

    # When the manager makes sure they exist
    ocr, labels = manager.ensure(bot)

    # Then both run as containers on ports of their own, each answering the serving contract
    assert ocr.url != labels.url and {ocr.backend, labels.backend} == {"docker"}
    for endpoint in (ocr, labels):
        assert requests.get(endpoint.url + "/ping", timeout=5).status_code == 200
    read = requests.post(ocr.url + "/invocations", data=image_bytes(render(["MODEL MOUNTED"]), "PNG"),
                         headers={"Content-Type": "image/png"}, timeout=60)
    assert read.status_code == 200 and "".join("".join(line["text"].split()) for line in read.json()["lines"]) == "MODELMOUNTED"
    seen = requests.post(labels.url + "/invocations", data=image_bytes(Image.fromarray(skimage.data.chelsea()), "JPEG"),
                         headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert seen.status_code == 200 and any("cat" in entry["label"] for entry in seen.json()["labels"][:2])
    # a body the model's input_fn refuses is the caller's mistake: 400, not a 5xx a worker would retry
    assert requests.post(ocr.url + "/invocations", data=b"text", headers={"Content-Type": "text/plain"},
                         timeout=10).status_code == 400

    # and the model archive is unpacked at /opt/ml/model, read-only, the only host folder it sees
    (ocr_container,) = containers_of(engine, settings, "endpoint", endpoint="ocr")
    assert [(m["Destination"], m["RW"]) for m in ocr_container.attrs["Mounts"]] == [("/opt/ml/model", False)]
    assert ocr_container.exec_run("cat /opt/ml/model/threshold.txt /opt/ml/model/conf/labels.txt").output == b"100a\nb\n"
    denied = ocr_container.exec_run("touch /opt/ml/model/new")
    assert denied.exit_code != 0 and b"Read-only file system" in denied.output
    assert ocr_container.attrs["Config"]["Cmd"] == ["serve"] and ocr_container.attrs["HostConfig"]["Privileged"] is False

    # When they are ensured again, the same containers serve: an endpoint that answers is never recreated
    ids = {c.labels["spotbot.endpoint"]: c.id for c in containers_of(engine, settings, "endpoint")}
    again = manager.ensure(bot)
    assert [e.url for e in again] == [ocr.url, labels.url]
    assert {c.labels["spotbot.endpoint"]: c.id for c in containers_of(engine, settings, "endpoint")} == ids

    # When one container dies, ensuring starts a new one in its place and leaves the other alone
    ocr_container.kill()
    revived = manager.ensure_one(bot.endpoints()[0])
    assert requests.get(revived.url + "/ping", timeout=5).status_code == 200
    now = {c.labels["spotbot.endpoint"]: c.id for c in containers_of(engine, settings, "endpoint")}
    assert now["labels"] == ids["labels"] and now["ocr"] != ids["ocr"]

    # and the CLI lists them, and deletes one with its container
    listed = json.loads(spotbot(settings, "endpoints", "list", "--json").stdout)
    assert sorted((e["name"], e["backend"], e["healthy"]) for e in listed) == [("labels", "docker", True), ("ocr", "docker", True)]
    assert spotbot(settings, "endpoints", "delete", "ocr").returncode == 0
    assert [c.labels["spotbot.endpoint"] for c in containers_of(engine, settings, "endpoint")] == ["labels"]


def test_an_endpoint_that_never_answers_ping_fails_clearly(settings, store, storage, bucket, engine, throwaway_image):
    # Given an endpoint image that logs a line and then never listens
    silent = throwaway_image(f"FROM {BASE}\nENTRYPOINT [\"python3\", \"-c\", \"import time; "
                             "print('loading weights from /opt/ml/model', flush=True); time.sleep(600)\"]\n")
    register(settings, {"name": "silent", "file_types": ".txt", "bot_image": WORKER, "endpoint_name": "silent-model",
                        "endpoint_ecr_image_path": silent})
    upload(storage, bucket, {"in/a.txt": "a"})

    # When a job is submitted with a 4 s start timeout
    code, job, stderr = submit(settings, bucket, bot="silent", env=cli_env(settings, SPOTBOT_ENDPOINT_START_TIMEOUT="4"))

    # Then it fails with exit code 7, naming the image and showing the container's last log lines
    assert code == 7 and job is None
    assert stderr.startswith(f"error: endpoint 'silent-model': image {silent} did not answer GET /ping on port ")
    assert "within 4s (SPOTBOT_ENDPOINT_START_TIMEOUT); its last log lines:\nloading weights from /opt/ml/model" in stderr
    assert "Traceback" not in stderr
    (recorded,) = store.jobs.list()
    assert recorded.status.value == "FAILED" and f"image {silent} did not answer GET /ping" in recorded.error
    assert store.endpoints.get("silent-model")[0].status.value == "FAILED"
    # and no container of it is left running, and no worker was started
    assert containers_of(engine, settings, "endpoint") == [] and containers_of(engine, settings, "worker") == []


def test_an_endpoint_that_exits_shows_its_exit_code_and_last_words(settings, store, throwaway_image):
    crashing = throwaway_image(f"FROM {BASE}\nENTRYPOINT [\"python3\", \"-c\", "
                               "\"raise SystemExit('no model.onnx in /opt/ml/model')\"]\n")
    manager = EndpointManager(settings, store)
    try:
        manager.ensure_one(EndpointSpec(name="crashing", image=crashing))
        raise AssertionError("a crashing endpoint started")
    except EndpointError as exc:
        message = str(exc)
    assert message == (f"endpoint 'crashing': image {crashing} exited with code 1 before answering GET /ping; "
                       "its last log lines:\nno model.onnx in /opt/ml/model")


def test_container_backends_refuse_what_they_cannot_run(settings, store, storage, bucket):
    upload(storage, bucket, {"in/a.txt": "a"})
    task = BOTS / "echo" / "task.py"
    cases = [
        ({"bot_image": f"python:{task}"}, {}, "bot_image: launcher 'docker' runs container images, not the python: "
                                              f"reference 'python:{task}'; python: references run as local processes"),
        ({"endpoint_ecr_image_path": f"python:{BOTS / 'echo' / 'endpoint.py'}"}, {},
         "endpoint_ecr_image_path: endpoint backend 'docker' runs container images, not the python: reference"),
        ({"bot_image": "spotbot-test/not-built:nowhere"}, {},
         "bot_image: image 'spotbot-test/not-built:nowhere' is not in the local Docker engine and could not be pulled"),
        ({}, {"SPOTBOT_DOCKER_MOUNTS": "/no/such/folder:/data"}, "SPOTBOT_DOCKER_MOUNTS: host folder /no/such/folder does not exist"),
        ({}, {"SPOTBOT_DOCKER_MOUNTS": "data:/data"}, "SPOTBOT_DOCKER_MOUNTS: 'data:/data' is not /host/dir:/container/dir"),
        ({}, {"SPOTBOT_DOCKER_MEMORY": "plenty"}, "SPOTBOT_DOCKER_MEMORY: 'plenty' is not an amount of memory like 512m or 2g"),
        ({"bot_image_cmd": "python3 -c 'unclosed"}, {}, "bot_image_cmd: cannot be split into a command"),
    ]
    registered = None
    for changes, env, expected in cases:
        if changes != registered:  # the settings cases share one registration
            register(settings, {"name": "refused", "file_types": ".txt", "bot_image": WORKER, "endpoint_name": "refused-ep",
                                "endpoint_ecr_image_path": OCR_ENDPOINT, **changes})
            registered = changes
        code, job, stderr = submit(settings, bucket, bot="refused", env=cli_env(settings, **env))
        assert code == 2 and expected in stderr and "Traceback" not in stderr, (changes, env, stderr)
    assert store.jobs.list() == []  # refused before anything was recorded
