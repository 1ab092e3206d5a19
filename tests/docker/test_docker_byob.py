"""byob/bot_docker/build_and_push.sh: builds the template's worker image; pushing needs the aws CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import docker.errors
import requests
from docker_support import BASE, engine  # noqa: F401

from conftest import ROOT, wait_for

from framework.endpoints.process import free_port

SCRIPT = ROOT / "byob" / "bot_docker" / "build_and_push.sh"


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BASE_IMAGE": BASE}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)


def test_build_and_push_local_builds_the_template_image(engine):
    name = f"spotbot-test/byob-{uuid.uuid4().hex[:8]}"
    try:
        built = run(name, "--tag", "t1", "--local")
        assert built.returncode == 0, built.stderr
        assert built.stdout.splitlines()[-1] == f"{name}:t1"
        image = engine.images.get(f"{name}:t1")
        assert image.attrs["Config"]["Cmd"] == ["python3", "-m", "framework.bot", "/opt/program/task.py"]
        assert image.attrs["Config"]["User"] == "1000:1000"
        inside = engine.containers.run(f"{name}:t1", ["cat", "/opt/program/task.py"], remove=True, network_mode="none")
        assert inside.decode() == (ROOT / "byob" / "bot_docker" / "task.py").read_text()
    finally:
        try:
            engine.images.remove(f"{name}:t1", force=True)
        except docker.errors.ImageNotFound:
            pass


def test_build_and_push_builds_the_template_endpoint_that_serves_the_contract(engine):
    name = f"spotbot-test/byob-endpoint-{uuid.uuid4().hex[:8]}"
    container = None
    try:
        built = run(name, "--local", "--dockerfile", str(ROOT / "byob" / "bot_docker" / "endpoint.Dockerfile"))
        assert built.returncode == 0, built.stderr
        assert built.stdout.splitlines()[-1] == f"{name}:latest"
        port = free_port()
        container = engine.containers.run(f"{name}:latest", detach=True, network_mode="host",
                                          environment={"SAGEMAKER_BIND_TO_PORT": str(port), "SPOTBOT_SERVE_HOST": "127.0.0.1"})
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(url + "/ping"), 60, "the template endpoint to answer /ping")
        answer = requests.post(url + "/invocations", json={"size": 4096}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"kind": "large", "size": 4096}
    finally:
        if container is not None:
            container.remove(force=True)
        try:
            engine.images.remove(f"{name}:latest", force=True)
        except docker.errors.ImageNotFound:
            pass


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_build_and_push_refuses_bad_input_before_building(engine, tmp_path):
    assert run().returncode == 2 and "NAME is required" in run().stderr
    bad = run("Foo Bot", "--local")
    assert bad.returncode == 2 and "NAME 'Foo Bot' is not a valid image name" in bad.stderr
    assert "unknown option '--push'" in run("foo-bot", "--push").stderr
    missing = run("foo-bot", "--local", "--dockerfile", str(tmp_path / "nope.Dockerfile"))
    assert missing.returncode == 2 and "is not a file" in missing.stderr
    # a PATH with docker but without the aws CLI: pushing cannot work, so nothing is built
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(shutil.which("docker"))
    for tool in ("bash", "sed", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    no_aws = run("foo-bot", "--tag", "v1", path=str(bin_dir))
    assert no_aws.returncode == 2 and "the aws CLI is not installed (pip install awscli), needed to push" in no_aws.stderr
    assert "building" not in no_aws.stderr
