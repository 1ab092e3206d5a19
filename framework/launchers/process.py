"""Launcher `process`: each worker is a local `python -m framework.bot <task.py>` process."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from ..endpoints.process import tail
from ..errors import ConfigError, LaunchError, UnsupportedReference
from ..models import BotConfig, Worker, WorkerState
from ..processes import is_worker
from ..settings import Settings
from .base import WorkerSpec


def inherited_environment() -> dict[str, str]:
    """What a worker process keeps of the launching process's environment: all but its SPOTBOT_* variables.

    The worker's settings come from its spec (Settings.worker_environment), so the launcher's others (the
    API's token above all) never reach it. Other variables (PATH, the AWS credential chain, a task's own)
    are kept: the worker runs as the user who started it.
    """
    return {name: value for name, value in os.environ.items() if not name.startswith("SPOTBOT_")}


class ProcessLauncher:
    name = "process"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.host = socket.gethostname()
        self._children: dict[str, subprocess.Popen] = {}

    def check(self, bot: BotConfig) -> None:
        if not bot.bot_image.startswith("python:"):
            raise UnsupportedReference(
                f"launcher 'process' runs python:<task.py or module> references, not the container image "
                f"{bot.bot_image!r}; container images need a container launcher (SPOTBOT_LAUNCHER=docker or batch)",
                field="bot_image",
            )

    def launch(self, spec: WorkerSpec) -> Worker:
        self.check(spec.bot)
        log_path = self._log_path(spec.job_id, spec.worker_id)
        command = [sys.executable, "-m", "framework.bot", spec.bot.bot_image.removeprefix("python:")]
        try:
            command += shlex.split(spec.bot.bot_image_cmd or "")
        except ValueError as exc:  # a registration from before bot_image_cmd was checked
            raise ConfigError(f"cannot be split into a command: {exc}", field="bot_image_cmd") from None
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                child = subprocess.Popen(
                    command,
                    env={**inherited_environment(), **spec.environment},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # keeps working when the submitting command exits
                )
        except OSError as exc:
            raise LaunchError(f"cannot start worker {spec.worker_id}: {exc}") from None
        self._children[spec.worker_id] = child
        return Worker(id=spec.worker_id, job_id=spec.job_id, batch_id=spec.batch_id, backend=self.name, state=WorkerState.RUNNING,
                      pid=child.pid, host=self.host)

    def poll(self, worker: Worker) -> tuple[WorkerState, int | None]:
        child = self._children.get(worker.id)
        if child is not None:
            code = child.poll()
            if code is None:
                return WorkerState.RUNNING, None
            return (WorkerState.EXITED if code == 0 else WorkerState.FAILED), code
        if worker.state in (WorkerState.EXITED, WorkerState.FAILED):
            return worker.state, worker.exit_code
        if worker.host == self.host and not self._alive(worker):
            return WorkerState.LOST, None
        return worker.state, None

    @staticmethod
    def _alive(worker: Worker) -> bool:
        """Whether the worker's process still runs: its pid alive and not since given to another process
        (a process whose environment cannot be read is taken for it, to lose no worker that runs)."""
        return is_worker(worker.pid, worker.id) is not False

    def last_words(self, worker: Worker) -> str:
        lines = tail(self._log_path(worker.job_id, worker.id), 1)
        return lines.split(" spotbot.worker: ", 1)[-1] or "(no output)"

    def logs(self, worker: Worker, *, follow: bool = False) -> Iterator[str]:
        path = self._log_path(worker.job_id, worker.id)
        if worker.host != self.host or not path.exists():
            raise LaunchError(f"no log of worker {worker.id} on this machine ({self.host}); it ran on {worker.host}")
        with open(path, errors="replace") as log:
            while True:
                alive = follow and self._alive(worker)  # asked before reading, so its last lines are read too
                for line in log:
                    yield line.rstrip("\n")
                if not alive:
                    return
                time.sleep(0.2)

    def _log_path(self, job_id: str, worker_id: str) -> Path:
        return self.settings.home / "logs" / job_id / f"{worker_id}.log"

    def stop(self, worker: Worker) -> None:
        """SIGTERM to the worker's process group (it stops gracefully, saying why), once its process shows it is
        that worker: the recorded pid may belong to another process by now."""
        if worker.host == self.host and is_worker(worker.pid, worker.id) is True:
            try:
                os.killpg(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
