"""Everything that talks to the Docker engine, for the docker launcher and the docker endpoint backend.

Containers run on the host network (Linux): the embedded Elasticsearch and S3 listen on
127.0.0.1 only, and a container on the host network reaches them there, exactly at the URLs
the settings hold; it reaches every other service on the host's loopback too (README,
"Security"). Every container spotbot starts carries labels (spotbot.role, spotbot.scope and
what it runs for) and runs confined (Engine.run): never privileged, no capabilities at all, no
new privileges, a read-only root filesystem with a tmpfs at /tmp (its HOME), at most
SPOTBOT_DOCKER_PIDS_LIMIT processes and threads, as the image's own unprivileged user (uid
1000 when the image names root or no user), and no host path mounted except those a setting
names.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import docker
import docker.errors
import docker.utils
import requests

from .errors import ConfigError, SpotbotError
from .settings import Settings

LABEL = "spotbot"
ENDED = ("exited", "dead")
NOT_STARTED = ("created",)
SCRATCH = "/tmp"  # the one writable place of a confined container: a tmpfs, its HOME too
FALLBACK_USER = "1000:1000"  # the user of spotbot's images: what an image that names root (or nobody) runs as


def is_root(user: str) -> bool:
    """Whether an image's USER (name or uid, with an optional group) is root; no USER at all is root too."""
    return user.partition(":")[0].strip() in ("", "root", "0")


class Engine:
    """One connection to the Docker engine (DOCKER_HOST, else the local socket), opened on first use.

    `error` is the exception raised when the engine cannot be used: LaunchError for workers,
    EndpointError for endpoints, so the CLI reports it with the right exit code.
    """

    def __init__(self, settings: Settings, error: type[SpotbotError]):
        self.settings = settings
        self.error = error
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                client = docker.from_env(timeout=60)
                client.ping()
            except (docker.errors.DockerException, requests.RequestException) as exc:
                raise self.error(f"the Docker engine does not answer ({first_line(exc)}); start one "
                                 "(deploy/docker/start-dockerd.sh) or point DOCKER_HOST at one") from None
            self._client = client
        return self._client

    def available(self) -> bool:
        """Whether an engine answers here (inside a worker container there is none)."""
        try:
            self.client
        except SpotbotError:
            return False
        return True

    def scope(self) -> str:
        """A short id of the Elasticsearch and index prefix these containers belong to.

        Part of every container's name and labels, so two spotbot installations (or two test
        runs) sharing one engine never take each other's containers.
        """
        return hashlib.sha256(f"{self.settings.es_url}\0{self.settings.index_prefix}".encode()).hexdigest()[:8]

    def labels(self, role: str, **more: str) -> dict[str, str]:
        return {f"{LABEL}.role": role, f"{LABEL}.scope": self.scope(), **{f"{LABEL}.{k}": v for k, v in more.items()}}

    def ensure_image(self, reference: str, *, field: str) -> None:
        """The image is in the engine: found, or pulled as `docker run` would; else a ConfigError naming it."""
        try:
            self.client.images.get(reference)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise ConfigError(f"image {reference!r} cannot be used: {first_line(exc)}", field=field) from None
        try:
            self.client.images.pull(reference)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise ConfigError(
                f"image {reference!r} is not in the local Docker engine and could not be pulled ({first_line(exc)}); "
                "build it (`make images` builds the sample bots' images) or `docker login` to its registry",
                field=field,
            ) from None

    def container(self, name: str):
        """The container of that name, or None."""
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise self.transient(f"cannot inspect container {name}", exc) from None

    def user_of(self, image: str) -> str:
        """The image's own user when it is not root, else FALLBACK_USER: no container spotbot starts runs as root."""
        try:
            user = (self.client.images.get(image).attrs.get("Config") or {}).get("User") or ""
        except (docker.errors.APIError, requests.RequestException):
            user = ""
        return FALLBACK_USER if is_root(user) else user

    def run(self, image: str, *, name: str, field: str, environment: dict[str, str] | None = None, **options):
        """Start a detached container on the host network, confined (see the module's docstring), with the options."""
        confined = {
            "privileged": False, "security_opt": ["no-new-privileges"], "cap_drop": ["ALL"],
            "read_only": True, "tmpfs": {SCRATCH: "rw,nosuid,nodev,mode=1777"},
            "pids_limit": self.settings.docker_pids_limit, "user": self.user_of(image), "network_mode": "host",
        }
        # programs keep caches and config under HOME; on a read-only root filesystem that must be the tmpfs
        environment = {"HOME": SCRATCH, **(environment or {})}
        try:
            return self.client.containers.run(image, name=name, detach=True, environment=environment, **confined,
                                              **options)
        except docker.errors.ImageNotFound:
            raise ConfigError(f"image {image!r} is not in the local Docker engine", field=field) from None
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise self.error(f"cannot start a container of {image!r} ({name}): {first_line(exc)}") from None

    def remove(self, container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # someone else removed it first
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: its removal is already under way
                raise self.transient(f"cannot remove container {container.name}", exc) from None

    def transient(self, what: str, exc: Exception) -> SpotbotError:
        """An engine call that failed in a way that may pass (the engine restarting, a timeout)."""
        return self.error(f"{what}: {first_line(exc)}", transient=True)


def limits(cpus: float, memory: str) -> dict:
    """Container options for a CPU and memory limit (0: none); no swap beyond the memory limit."""
    options: dict = {}
    if cpus:
        options["nano_cpus"] = int(cpus * 1e9)
    size = docker.utils.parse_bytes(memory) if memory else 0
    if size:
        options["mem_limit"] = size
        options["memswap_limit"] = size
    return options


def exit_status(container) -> tuple[int | None, bool]:
    """(exit code, killed for running out of memory) of an ended container."""
    state = container.attrs.get("State", {})
    return state.get("ExitCode"), bool(state.get("OOMKilled"))


def log_lines(chunks: Iterator[bytes] | bytes) -> Iterator[str]:
    """A container's log output (one bytes object, or a stream of chunks) as lines of text."""
    if isinstance(chunks, bytes):
        chunks = iter([chunks])
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def tail(container, lines: int = 20) -> str:
    """The last lines a container logged ("" when it cannot be read)."""
    try:
        return container.logs(tail=lines).decode(errors="replace").rstrip("\n")
    except (docker.errors.APIError, requests.RequestException):
        return ""


def first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
