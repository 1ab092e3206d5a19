"""Launcher `docker`: each worker is one container of the bot's image (`bot_image`, `bot_image_cmd`).

The container receives the seed's worker environment (Scheduler.worker_environment) and runs
on the host network, so it reaches Elasticsearch, S3 and the endpoints at the very addresses
the settings hold (the embedded stack listens on 127.0.0.1). Limits come from
SPOTBOT_DOCKER_CPUS and SPOTBOT_DOCKER_MEMORY; it runs confined as every spotbot container
(framework/containers.py: no capabilities, no new privileges, a read-only root with a tmpfs at
/tmp, a process limit, an unprivileged user) and mounts no host path but those
SPOTBOT_DOCKER_MOUNTS names.

A container that ended is reaped by whoever polls it (the supervisor of `submit --wait` or
`spotbot supervise`): its exit code, whether it ran out of memory and its log are kept under
$SPOTBOT_HOME/logs/<job>/, then it is removed (SPOTBOT_DOCKER_KEEP=true keeps it).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path
from typing import Iterator

import docker.errors
import requests

from ..containers import ENDED, NOT_STARTED, Engine, exit_status, first_line, limits, log_lines
from ..errors import ConfigError, LaunchError, UnsupportedReference
from ..models import BotConfig, Worker, WorkerState
from ..settings import Settings
from .base import WorkerSpec

# Inside a container the host's SPOTBOT_HOME means nothing; a worker needs a writable home only
# for the scratch files of an endpoint restart, which it leaves to the supervisor anyway. Under
# /tmp: the one writable place of a container with a read-only root.
CONTAINER_HOME = "/tmp/spotbot"


class DockerLauncher:
    name = "docker"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = Engine(settings, LaunchError)
        self.host = socket.gethostname()

    def check(self, bot: BotConfig) -> None:
        if bot.bot_image.startswith("python:"):
            raise UnsupportedReference(
                f"launcher 'docker' runs container images, not the python: reference {bot.bot_image!r}; "
                "python: references run as local processes (SPOTBOT_LAUNCHER=process)",
                field="bot_image",
            )
        self._command(bot)
        self._mounts()
        self.engine.ensure_image(bot.bot_image, field="bot_image")

    def launch(self, spec: WorkerSpec) -> Worker:
        self.check(spec.bot)
        container = self.engine.run(
            spec.bot.bot_image,
            name=self._name(spec.job_id, spec.worker_id),
            field="bot_image",
            command=self._command(spec.bot) or None,  # None: the image's own CMD
            environment={**spec.environment, "SPOTBOT_HOME": CONTAINER_HOME},
            labels=self.engine.labels("worker", job=spec.job_id, worker=spec.worker_id, bot=spec.bot.name,
                                      batch=str(spec.batch_id)),
            volumes=self._mounts(),
            init=True,  # a real PID 1 that forwards signals, so `docker stop` stops the worker at once
            **limits(self.settings.docker_cpus, self.settings.docker_memory),
        )
        try:
            container.reload()
            pid = container.attrs.get("State", {}).get("Pid") or None
        except (docker.errors.APIError, requests.RequestException):
            pid = None
        return Worker(id=spec.worker_id, job_id=spec.job_id, batch_id=spec.batch_id, backend=self.name,
                      state=WorkerState.RUNNING, pid=pid, host=self.host)

    def poll(self, worker: Worker) -> tuple[WorkerState, int | None]:
        container = self.engine.container(self._name(worker.job_id, worker.id))
        if container is None:
            ended = self._exit_record(worker)
            if ended is not None:
                return self._state(ended["exit_code"], ended["oom_killed"]), ended["exit_code"]
            if worker.state in (WorkerState.EXITED, WorkerState.FAILED):
                return worker.state, worker.exit_code
            return WorkerState.LOST, None
        if container.status in NOT_STARTED:
            return WorkerState.STARTING, None
        if container.status not in ENDED:
            return WorkerState.RUNNING, None
        code, oom = self._reap(worker, container)
        return self._state(code, oom), code

    def stop(self, worker: Worker) -> None:
        container = self.engine.container(self._name(worker.job_id, worker.id))
        if container is None:
            return
        try:
            if container.status not in ENDED:
                container.stop(timeout=10)
            container.reload()
        except docker.errors.NotFound:
            return
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise self.engine.transient(f"cannot stop worker {worker.id}", exc) from None
        self._reap(worker, container)

    def last_words(self, worker: Worker) -> str:
        ended = self._exit_record(worker)
        if ended and ended["oom_killed"]:
            limit = ended.get("memory_limit") or 0
            shown = f"{limit / 2**20:.0f} MiB" if limit else "its memory limit"
            return f"out of memory: the container was killed at {shown} (SPOTBOT_DOCKER_MEMORY)"
        try:
            lines = [line for line in self.logs(worker) if line.strip()]
        except LaunchError:
            return "(no output)"
        return lines[-1].split(" spotbot.worker: ", 1)[-1] if lines else "(no output)"

    def logs(self, worker: Worker, *, follow: bool = False) -> Iterator[str]:
        container = self.engine.container(self._name(worker.job_id, worker.id))
        if container is not None:
            try:
                yield from log_lines(container.logs(stream=True, follow=follow))
                return
            except docker.errors.NotFound:
                pass  # reaped meanwhile: its log is in the file now
            except (docker.errors.APIError, requests.RequestException) as exc:
                raise LaunchError(f"cannot read the log of worker {worker.id}: {first_line(exc)}") from None
        path = self._file(worker, ".log")
        if not path.exists():
            raise LaunchError(f"no log of worker {worker.id}: its container is gone and its log was not kept on "
                              f"this machine ({self.host}, under {path.parent})")
        with open(path, errors="replace") as log:
            for line in log:
                yield line.rstrip("\n")

    # --- helpers ------------------------------------------------------------------------------

    def _name(self, job_id: str, worker_id: str) -> str:
        return f"spotbot-{self.engine.scope()}-{job_id}-{worker_id}"

    def _file(self, worker: Worker, suffix: str) -> Path:
        return self.settings.home / "logs" / worker.job_id / f"{worker.id}{suffix}"

    def _reap(self, worker: Worker, container) -> tuple[int | None, bool]:
        """Keep an ended container's exit status and log under SPOTBOT_HOME, then remove it (unless kept)."""
        code, oom = exit_status(container)
        memory = container.attrs.get("HostConfig", {}).get("Memory") or 0
        try:
            output = container.logs()
        except docker.errors.NotFound:
            output = None  # another supervisor reaped it first and kept its log
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise self.engine.transient(f"cannot read the log of worker {worker.id}", exc) from None
        if output is not None:
            write_atomically(self._file(worker, ".log"), output)
            record = {"exit_code": code, "oom_killed": oom, "memory_limit": memory, "container": container.name}
            write_atomically(self._file(worker, ".exit.json"), json.dumps(record).encode())
        if not self.settings.docker_keep:
            self.engine.remove(container)
        return code, oom

    def _exit_record(self, worker: Worker) -> dict | None:
        try:
            return json.loads(self._file(worker, ".exit.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _state(code: int | None, oom: bool) -> WorkerState:
        return WorkerState.EXITED if code == 0 and not oom else WorkerState.FAILED

    @staticmethod
    def _command(bot: BotConfig) -> list[str]:
        try:
            return shlex.split(bot.bot_image_cmd or "")
        except ValueError as exc:
            raise ConfigError(f"cannot be split into a command: {exc}", field="bot_image_cmd") from None

    def _mounts(self) -> dict[str, dict[str, str]]:
        """SPOTBOT_DOCKER_MOUNTS as docker volumes: read-only unless :rw; the host folders must exist."""
        volumes = {}
        for item in filter(None, (part.strip() for part in self.settings.docker_mounts.split(","))):
            host, _, rest = item.partition(":")
            target, _, mode = rest.partition(":")
            if not Path(host).is_dir():
                raise ConfigError(f"host folder {host} does not exist", field="SPOTBOT_DOCKER_MOUNTS")
            volumes[host] = {"bind": target, "mode": mode or "ro"}
        return volumes


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)
