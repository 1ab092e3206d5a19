"""The AWS control planes for the AWS tests: moto in server mode on 127.0.0.1, one per session.

Only what cannot run here is moto's (SageMaker, Batch, ECR, IAM, CloudWatch Logs); Elasticsearch
and S3 stay the real embedded servers of tests/conftest.py. moto runs in this process's threads,
so a test can also script what moto itself never does (an endpoint that stays Creating or ends
Failed, a Batch job stuck RUNNABLE or lost to a Spot reclaim) by setting the state of moto's own
records, as SageMaker or Batch would report it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import sigv4_check
import requests

from framework.endpoints.process import free_port

ACCOUNT, REGION = "123456789012", "us-east-1"
ACCESS_KEY, SECRET_KEY = "AKIDSPOTBOTAWSTEST", "moto-secret-for-tests"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"digest": "sha256:" + "0" * 64, "size": 1, "mediaType": "application/vnd.docker.container.image.v1+json"},
                       "layers": []})


@pytest.fixture(scope="session")
def moto_url():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url, monkeypatch):
    """A clean moto, credentials for it in the environment (workers and CLI runs inherit them), boto3 clients."""
    requests.post(moto_url + "/moto-api/reset", timeout=10).raise_for_status()
    # Batch without Docker: jobs are recorded, never run (no engine here); tests set their states
    requests.post(moto_url + "/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10).raise_for_status()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    class Clients:
        url = moto_url

        def __getattr__(self, service: str):
            return boto3.session.Session().client(service.replace("_", "-"), region_name=REGION, endpoint_url=moto_url)

    return Clients()


def ecr_image(aws, repository: str, tag: str = "v1") -> str:
    """Push an image record (a manifest, no layers) to moto's ECR; returns its URI."""
    aws.ecr.create_repository(repositoryName=repository)
    aws.ecr.put_image(repositoryName=repository, imageManifest=MANIFEST, imageTag=tag)
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}:{tag}"


def role(aws, name: str, service: str) -> str:
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service},
                                                     "Action": "sts:AssumeRole"}]}
    return aws.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


@pytest.fixture
def aws_settings(settings, aws):
    """The suite's settings (embedded Elasticsearch and S3) with the AWS back ends pointed at moto."""
    return settings.model_copy(update={
        "region": REGION,
        "aws_endpoint_urls": f"sagemaker={aws.url},batch={aws.url},ecr={aws.url},logs={aws.url}",
        "sagemaker_role_arn": role(aws, "spotbot-sagemaker", "sagemaker.amazonaws.com"),
        "sagemaker_start_timeout": 30,
    })


@pytest.fixture
def store(store, aws):
    yield store
    # moto's endpoints vanish at the next reset: forget their records, so the suite's teardown (which
    # stops every recorded endpoint with the plain settings) does not go looking for them in AWS
    for endpoint in store.endpoints.list():
        if endpoint.backend == "sagemaker":
            store.endpoints.delete(endpoint.name)


@pytest.fixture
def sagemaker_script(aws, monkeypatch):
    """Script what describe_endpoint reports: script[name] = ["Creating", "Creating", ("Failed", "reason")].

    Each describe of a scripted endpoint takes the next state (the last one stays); moto alone
    reports every endpoint InService at once.
    """
    from moto.sagemaker.models import SageMakerModelBackend

    script: dict[str, list] = {}
    calls: list[tuple[float, str, str]] = []
    original_describe = SageMakerModelBackend.describe_endpoint
    original_create = SageMakerModelBackend.create_endpoint

    def describe(self, endpoint_name):
        steps = script.get(endpoint_name)
        if steps and endpoint_name in self.endpoints:
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            status, reason = step if isinstance(step, tuple) else (step, None)
            self.endpoints[endpoint_name].endpoint_status = status
            self.endpoints[endpoint_name].failure_reason = reason
        answer = original_describe(self, endpoint_name)
        calls.append((time.monotonic(), "describe", f"{endpoint_name}={answer['EndpointStatus']}"))
        return answer

    def create(self, endpoint_name, endpoint_config_name, tags):
        calls.append((time.monotonic(), "create", endpoint_name))
        return original_create(self, endpoint_name, endpoint_config_name, tags)

    monkeypatch.setattr(SageMakerModelBackend, "describe_endpoint", describe)
    monkeypatch.setattr(SageMakerModelBackend, "create_endpoint", create)
    return ScriptedStates(script, calls)


class ScriptedStates:
    """script[name] = steps; created(name) counts create_endpoint calls; calls lists (time, kind, what)."""

    def __init__(self, script: dict, calls: list):
        self.script, self.calls = script, calls

    def __setitem__(self, name, steps):
        self.script[name] = list(steps)

    def created(self, name: str) -> int:
        return sum(1 for _, kind, what in self.calls if kind == "create" and what == name)


def batch_backend():
    from moto.batch.models import batch_backends

    return batch_backends[ACCOUNT][REGION]


# --- sagemaker-runtime, served locally --------------------------------------------------------

def runtime_signature_ok(method: str, url: str, headers: dict, body: bytes) -> bool:
    """Recompute a sagemaker-runtime request's SigV4 signature with botocore from the known secret."""
    return sigv4_check.signature_ok(method, url, headers, body, service="sagemaker", access_key=ACCESS_KEY,
                                    secret_key=SECRET_KEY, region=REGION)


class Runtime:
    """What the local sagemaker-runtime saw, where it forwards, and faults to inject."""

    def __init__(self):
        self.targets: dict[str, str] = {}  # endpoint name -> URL of a process speaking the serving contract
        self.ok = self.rejected = 0
        self.fail_next: list[tuple[int, str, dict]] = []  # (HTTP status, error code, extra body) answered first
        self.lock = threading.Lock()


@pytest.fixture
def runtime():
    """A local sagemaker-runtime: POST /endpoints/NAME/invocations, signature checked, forwarded to a real endpoint."""
    state = Runtime()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status: int, body: bytes, headers: dict):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status: int, code: str, message: str, **extra):
            body = json.dumps({"message": message, **extra}).encode()
            self.answer(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": code})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            match = re.fullmatch(r"/endpoints/([^/]+)/invocations", self.path)
            if not runtime_signature_ok("POST", f"http://{headers['host']}{self.path}", headers, body):
                with state.lock:
                    state.rejected += 1
                return self.error(403, "InvalidSignatureException", "The request signature does not match")
            with state.lock:
                state.ok += 1
                fault = state.fail_next.pop(0) if state.fail_next else None
            if fault:
                return self.error(fault[0], fault[1], "injected fault", **fault[2])
            if not match or match.group(1) not in state.targets:
                return self.error(400, "ValidationError", f"Endpoint {self.path} of account {ACCOUNT} not found.")
            upstream = requests.post(state.targets[match.group(1)] + "/invocations", data=body, timeout=30, headers={
                "Content-Type": headers.get("content-type", "application/octet-stream"),
                "Accept": headers.get("accept", "*/*")})
            if upstream.status_code != 200:
                return self.error(424, "ModelError", "Received server error from primary container",
                                  OriginalStatusCode=upstream.status_code, OriginalMessage=upstream.text[:1000])
            self.answer(200, upstream.content, {"Content-Type": upstream.headers.get("Content-Type", "")})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
