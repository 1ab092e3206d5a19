"""Endpoint backend `docker`: an endpoint image run as `docker run <image> serve`, the SageMaker serving contract.

The container runs on the host network (as the workers do), told its port with SageMaker's
SAGEMAKER_BIND_TO_PORT (a free port: several endpoints cannot all listen on 8080 of one host)
and SPOTBOT_SERVE_HOST=127.0.0.1 (on the host network 0.0.0.0 would open it to the LAN); the
serving entry point of spotbot's images (framework.endpoints.serving) honours both.
model_s3_path, unpacked by the EndpointManager, is mounted read-only at /opt/ml/model.
It runs confined like a worker (framework/containers.py): no capabilities, a read-only root
with a tmpfs at /tmp, an unprivileged user. An image that must start as root (nginx binding
port 80, then dropping to a worker user) or write outside /tmp does not run here, though it
may on SageMaker.

Starting waits, at most SPOTBOT_ENDPOINT_START_TIMEOUT, for GET /ping to answer 200; when it
does not, the error names the image and shows the container's last log lines, and the
container is removed. A running container of the same image that answers is reused, never
recreated.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import docker.errors
import requests

from ..containers import ENDED, Engine, exit_status, limits, tail
from ..errors import EndpointError, SpotbotError, UnsupportedReference
from ..models import Endpoint, EndpointSpec, EndpointStatus
from ..settings import Settings
from .invoke import HttpInvoker
from .process import free_port
from .serving import batching_environment

MODEL_DIR = "/opt/ml/model"


class DockerEndpoints(HttpInvoker):
    name = "docker"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.settings = settings
        self.engine = Engine(settings, EndpointError)
        self.host = socket.gethostname()

    def check(self, image: str) -> None:
        if image.startswith("python:"):
            raise UnsupportedReference(
                f"endpoint backend 'docker' runs container images, not the python: reference {image!r}; "
                "python: references run as local processes (SPOTBOT_ENDPOINT_BACKEND=process)",
                field="endpoint_ecr_image_path",
            )
        self.engine.ensure_image(image, field="endpoint_ecr_image_path")

    def start(self, spec: EndpointSpec, model_dir: Path) -> Endpoint:
        self.check(spec.image)
        name = self._name(spec.name)
        existing = self.engine.container(name)
        if existing is not None:
            adopted = self._adopt(spec, existing)
            if adopted is not None:
                return adopted  # running and answering, though its record was lost: never recreate it
            self.engine.remove(existing)
        port = free_port()
        container = self.engine.run(
            spec.image,
            name=name,
            field="endpoint_ecr_image_path",
            command=["serve"],
            environment={"SAGEMAKER_BIND_TO_PORT": str(port), "SPOTBOT_SERVE_HOST": "127.0.0.1",
                         **batching_environment(self.settings)},
            labels=self.engine.labels("endpoint", endpoint=spec.name, image=spec.image, port=str(port)),
            volumes={str(model_dir): {"bind": MODEL_DIR, "mode": "ro"}},
            init=True,
            **limits(self.settings.docker_endpoint_cpus, self.settings.docker_endpoint_memory),
        )
        url = f"http://127.0.0.1:{port}"
        timeout = self.settings.endpoint_start_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                container.reload()
            except (docker.errors.APIError, requests.RequestException) as exc:
                raise self.engine.transient(f"cannot inspect endpoint container {name}", exc) from None
            if container.status in ENDED:
                code, oom = exit_status(container)
                logs = self._discard(container)
                raise EndpointError(
                    f"endpoint {spec.name!r}: image {spec.image} exited with code {code}"
                    f"{' (out of memory: SPOTBOT_DOCKER_ENDPOINT_MEMORY)' if oom else ''} before answering GET /ping; "
                    f"its last log lines:\n{logs}",
                    name=spec.name,
                )
            if self._ping(url):
                return self._endpoint(spec, container, url)
            time.sleep(0.3)
        logs = self._discard(container)
        raise EndpointError(
            f"endpoint {spec.name!r}: image {spec.image} did not answer GET /ping on port {port} within {timeout:g}s "
            f"(SPOTBOT_ENDPOINT_START_TIMEOUT); its last log lines:\n{logs or '(none)'}",
            name=spec.name,
        )

    def healthy(self, endpoint: Endpoint) -> bool:
        """Its container runs and /ping answers; where no engine answers (inside a worker container), /ping alone."""
        try:
            container = self.engine.container(self._name(endpoint.name)) if self.engine.available() else False
        except SpotbotError:
            container = False
        if container is None or (container and container.status != "running"):
            return False
        return bool(endpoint.url) and self._ping(endpoint.url)

    def stop(self, endpoint: Endpoint) -> None:
        """Remove its container; raises EndpointError where no engine answers, so nothing else is changed."""
        container = self.engine.container(self._name(endpoint.name))
        if container is not None:
            self.engine.remove(container)

    # --- helpers ------------------------------------------------------------------------------

    def _name(self, endpoint_name: str) -> str:
        return f"spotbot-{self.engine.scope()}-endpoint-{endpoint_name}"

    def _adopt(self, spec: EndpointSpec, container) -> Endpoint | None:
        labels = container.labels or {}
        if container.status != "running" or labels.get("spotbot.image") != spec.image or not labels.get("spotbot.port"):
            return None
        url = f"http://127.0.0.1:{labels['spotbot.port']}"
        return self._endpoint(spec, container, url) if self._ping(url) else None

    def _endpoint(self, spec: EndpointSpec, container, url: str) -> Endpoint:
        return Endpoint(name=spec.name, backend=self.name, image=spec.image, model_s3_path=spec.model_s3_path,
                        status=EndpointStatus.IN_SERVICE, url=url,
                        pid=container.attrs.get("State", {}).get("Pid") or None, host=self.host)

    def _discard(self, container) -> str:
        """The last log lines of a container that failed to start, which is then removed (unless kept)."""
        logs = tail(container)
        if not self.settings.docker_keep:
            self.engine.remove(container)
            return logs
        try:
            container.stop(timeout=5)  # kept to be looked at, not left running
        except (docker.errors.APIError, requests.RequestException):
            pass
        return logs

    @staticmethod
    def _ping(url: str) -> bool:
        try:
            return requests.get(url + "/ping", timeout=2).status_code == 200
        except requests.RequestException:
            return False
