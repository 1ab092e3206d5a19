"""What a launcher is: the spec of a worker to start, and the protocol every launcher back end follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

from ..models import BotConfig, Worker, WorkerState


@dataclass
class WorkerSpec:
    """What a launcher needs to start one worker."""

    job_id: str
    bot: BotConfig
    worker_id: str
    batch_id: int
    environment: dict[str, str] = field(default_factory=dict)


class Launcher(Protocol):
    """Optional hooks: `launch_many(specs) -> list[Worker]` starts a job's workers in one go (the
    scheduler uses it when present: an AWS Batch array job), and `status_reason(worker) -> str`
    says why a worker waits to start or why it ended (the supervisor records it on the job)."""

    name: str

    def check(self, bot: BotConfig) -> None:
        """Raise UnsupportedReference when this launcher cannot run the bot's image."""

    def launch(self, spec: WorkerSpec) -> Worker: ...

    def poll(self, worker: Worker) -> tuple[WorkerState, int | None]:
        """The worker's state now and, once it ended, its exit code (None when unknown)."""

    def stop(self, worker: Worker) -> None: ...

    def last_words(self, worker: Worker) -> str:
        """The last line the worker logged (for the reason recorded on its job)."""

    def logs(self, worker: Worker, *, follow: bool = False) -> Iterator[str]:
        """The worker's output, line by line; with follow, keep going until the worker ends."""
