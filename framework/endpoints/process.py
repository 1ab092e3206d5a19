"""Endpoint backend `process`: a python: handler served by a local process on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from urllib.parse import urlsplit

import requests

from ..errors import EndpointError, UnsupportedReference
from ..models import Endpoint, EndpointSpec, EndpointStatus
from ..processes import pid_alive, runs, stop_group
from ..settings import Settings
from .invoke import HttpInvoker
from .serving import batching_environment

SERVING_MODULE = "framework.endpoints.serving"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ProcessEndpoints(HttpInvoker):
    name = "process"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.settings = settings
        self.host = socket.gethostname()

    def check(self, image: str) -> None:
        if not image.startswith("python:"):
            raise UnsupportedReference(
                f"endpoint backend 'process' runs python:<file.py or module> references, not the container image "
                f"{image!r}; container images need a container backend (SPOTBOT_ENDPOINT_BACKEND=docker or sagemaker)",
                field="endpoint_ecr_image_path",
            )

    def start(self, spec: EndpointSpec, model_dir: Path) -> Endpoint:
        self.check(spec.image)
        port = free_port()
        logs = self.settings.home / "logs" / "endpoints"
        log_path = logs / f"{spec.name}.log"
        try:
            logs.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")
        except OSError as exc:
            raise EndpointError(f"cannot start endpoint {spec.name!r}: its log {log_path}: {exc}", name=spec.name) from None
        with log:
            process = subprocess.Popen(
                [sys.executable, "-m", SERVING_MODULE, "--handler", spec.image, "--port", str(port), "--model-dir", str(model_dir)],
                # this command's settings, which may not come from its environment (a test's, the API's)
                env={**os.environ, **batching_environment(self.settings)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the command that started it, to be reused
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.settings.endpoint_start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EndpointError(
                    f"endpoint {spec.name!r} ({spec.image}) exited with code {process.returncode} before answering "
                    f"/ping; its last log lines ({log_path}):\n{tail(log_path)}",
                    name=spec.name,
                )
            if self._ping(url):
                return Endpoint(
                    name=spec.name, backend=self.name, image=spec.image, model_s3_path=spec.model_s3_path,
                    status=EndpointStatus.IN_SERVICE, url=url, pid=process.pid, host=self.host,
                )
            time.sleep(0.2)
        process.kill()
        raise EndpointError(
            f"endpoint {spec.name!r} ({spec.image}) did not answer /ping within {self.settings.endpoint_start_timeout:.0f}s; "
            f"its last log lines ({log_path}):\n{tail(log_path)}",
            name=spec.name,
        )

    def _ping(self, url: str) -> bool:
        try:
            return requests.get(url + "/ping", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def healthy(self, endpoint: Endpoint) -> bool:
        if endpoint.host == self.host and not pid_alive(endpoint.pid):
            return False
        return bool(endpoint.url) and self._ping(endpoint.url)

    def stop(self, endpoint: Endpoint) -> None:
        """Stop the endpoint's process group, each signal only while the pid is still this endpoint's server."""
        if endpoint.host == self.host:
            stop_group(endpoint.pid, lambda pid: self.serves(pid, endpoint))

    @staticmethod
    def serves(pid: int, endpoint: Endpoint) -> bool:
        """Whether process pid is the server of this endpoint: the serving module, on the endpoint's port."""
        port = urlsplit(endpoint.url or "").port
        return port is not None and runs(pid, SERVING_MODULE, "--port", str(port))
