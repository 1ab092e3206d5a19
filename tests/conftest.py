"""Real servers for the suite: one embedded stack per session on free ports, a fresh index
prefix, home and bucket per test. Nothing here mocks Elasticsearch or S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from framework.endpoints import EndpointManager
from framework.local import LocalStack
from framework.settings import Settings
from framework.storage import Storage
from framework.store import Store

ROOT = Path(__file__).resolve().parent.parent
BOTS = Path(__file__).resolve().parent / "bots"
SPOTBOT = str(Path(sys.executable).parent / "spotbot")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory) -> LocalStack:
    local = LocalStack(tmp_path_factory.mktemp("stack"), es_port=0, s3_base_port=0)
    local.up()
    yield local
    local.down()


@pytest.fixture
def stack(local_stack) -> dict:
    local_stack.up()  # a fault test may have stopped a server: every test starts with both answering
    return local_stack.state()


# SPOTBOT_TEST_ES_URL points the suite at a running Elasticsearch or OpenSearch node (make test does,
# for a real node of each); S3 stays the embedded server either way
TEST_ES_URL = os.environ.get("SPOTBOT_TEST_ES_URL", "")
embedded_only = pytest.mark.skipif(bool(TEST_ES_URL), reason="stops and starts the embedded Elasticsearch-API server")


@pytest.fixture
def settings(stack, tmp_path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        es_url=TEST_ES_URL or stack["es_url"],
        s3_endpoint_url=stack["s3_endpoint_url"],
        s3_access_key=SecretStr(stack["access_key"]),
        s3_secret_key=SecretStr(stack["secret_key"]),
        index_prefix=f"t{uuid.uuid4().hex[:10]}-",
        poll_seconds=0.2,
        lease_seconds=6,
        flush_seconds=1,
        endpoint_start_timeout=60,
        endpoint_timeout=30,
        workers=2,
        chunk_size=5,
        # the suite's timings (a kill mid-chunk, a cancel mid-job) were set for one file at a time:
        # concurrency 1 must behave as a serial worker did; tests/test_concurrency.py runs many at once
        concurrency=1,
    )


@pytest.fixture
def store(settings):
    store = Store.from_settings(settings)
    yield store
    manager = EndpointManager(settings, store)
    for endpoint, _ in manager.list():
        manager.backend(endpoint.backend).stop(endpoint)
    store.drop()


@pytest.fixture
def storage(settings) -> Storage:
    return Storage(settings)


@pytest.fixture
def bucket(storage) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    storage.ensure_bucket(name)
    return name


def wait_for(condition, timeout: float, what: str):
    """Poll a condition of the system (processes, calls made) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def upload(storage: Storage, bucket: str, files: dict[str, bytes | str]) -> None:
    for key, data in files.items():
        storage.write(bucket, key, data.encode() if isinstance(data, str) else data)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTBOT_")}
    env.update(settings.environment())
    env.update(extra)
    return env


def spotbot(settings: Settings, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `spotbot` command against the test's servers."""
    return subprocess.run([SPOTBOT, *args], env=env or cli_env(settings), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def register_echo(settings: Settings, **changes) -> Path:
    """Register the echo test bot (optionally changed); returns the config file used."""
    config = json.loads((BOTS / "echo" / "bot_config.json").read_text())
    config.update(changes)
    path = settings.home / f"echo-{uuid.uuid4().hex[:6]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    for field in ("bot_image", "endpoint_ecr_image_path"):
        config[field] = ",".join(
            f"python:{BOTS / 'echo' / ref[len('python:'):]}" if ref.startswith("python:") and ref.endswith(".py") else ref
            for ref in config[field].split(",")
        )
    path.write_text(json.dumps(config))
    result = spotbot(settings, "bots", "register", str(path))
    assert result.returncode == 0, result.stderr
    return path


def submit(settings: Settings, bucket: str, *extra: str, bot: str = "echo", env=None, timeout: float = 300):
    """spotbot submit --wait --json; returns (exit code, parsed JSON or None, stderr)."""
    result = spotbot(settings, "submit", "--bot", bot, "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", "--wait", "--json", *extra, env=env, timeout=timeout)
    data = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, data, result.stderr


def results(settings: Settings, job_id: str, *extra: str) -> list[dict]:
    result = spotbot(settings, "results", job_id, *extra)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
