"""Shared by the docker tests (imported by each, as this folder has no conftest of its own: a second
conftest.py outside a package would shadow tests/conftest.py).

A real Docker engine and the images `make images` builds, or a skip on a developer's machine
(a failure when CI is set); settings that run workers and endpoints as containers; no
container of a test left behind.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from conftest import SPOTBOT, spotbot

from framework.containers import Engine
from framework.errors import LaunchError

TASKS = Path(__file__).resolve().parent / "bots"
BASE = "spotbot-base:local"
WORKER = "spotbot/byob-worker:local"
OCR_WORKER = "spotbot/doc_ocr-worker:local"
OCR_ENDPOINT = "spotbot/doc_ocr-endpoint:local"
LABELLER_ENDPOINT = "spotbot/image_labeller-endpoint:local"
IMAGES = [BASE, WORKER, OCR_WORKER, OCR_ENDPOINT, LABELLER_ENDPOINT]


@pytest.fixture(scope="session")
def engine():
    """The Docker engine, with the images the tests run."""

    def unavailable(why: str):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, but {why}", pytrace=False)
        pytest.skip(why)

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable(f"no Docker engine answers ({exc}); deploy/docker/start-dockerd.sh starts one")
    missing = []
    for image in IMAGES:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        unavailable(f"image(s) {', '.join(missing)} are missing; `make images` builds them")
    yield client
    client.close()


@pytest.fixture
def settings(settings, engine):
    """The suite's settings, with workers and endpoints as containers."""
    return settings.model_copy(update={"launcher": "docker", "endpoint_backend": "docker"})


@pytest.fixture(autouse=True)
def no_container_left(settings, engine):
    yield
    scope = Engine(settings, LaunchError).scope()
    for container in engine.containers.list(all=True, filters={"label": f"spotbot.scope={scope}"}):
        container.remove(force=True)


@pytest.fixture
def throwaway_image(engine):
    """Build a tiny image from a Dockerfile text (FROM spotbot-base:local, no context); removed afterwards."""
    built = []

    def build(dockerfile: str) -> str:
        tag = f"spotbot-test/throwaway-{uuid.uuid4().hex[:8]}:t"
        engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, network_mode="host")
        built.append(tag)
        return tag

    yield build
    for tag in built:
        try:
            engine.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def containers_of(engine, settings, role: str, **labels: str) -> list:
    scope = Engine(settings, LaunchError).scope()
    wanted = [f"spotbot.scope={scope}", f"spotbot.role={role}"] + [f"spotbot.{k}={v}" for k, v in labels.items()]
    return engine.containers.list(all=True, filters={"label": wanted})


def register(settings, config: dict) -> None:
    path = settings.home / f"bot-{uuid.uuid4().hex[:6]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    result = spotbot(settings, "bots", "register", str(path))
    assert result.returncode == 0, result.stderr


def register_task_bot(settings, name: str = "containers", **changes) -> dict:
    """The byob worker image running tests/docker/bots/task.py (mounted), no endpoint."""
    config = {"name": name, "file_types": ".txt", "bot_image": WORKER,
              "bot_image_cmd": "python3 -m framework.bot /opt/tests/task.py", "endpoint_name": "",
              "endpoint_ecr_image_path": "", **changes}
    register(settings, config)
    return config


def background_submit(bucket: str, env: dict, bot: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([SPOTBOT, "submit", "--bot", bot, "--input", f"s3://{bucket}/in/", "--output",
                             f"s3://{bucket}/out/", "--wait", "--json", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
