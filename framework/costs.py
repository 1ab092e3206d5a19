"""What a job costs: worker time, files per worker-hour, and money at a price the user gives.

spotbot knows how long each worker ran (its record's started_at and ended_at) and what it was
given (vCPUs and memory, where the back end sets them). Money is worker-hours times
SPOTBOT_COST_PER_WORKER_HOUR: one price, or one per back end (`batch=0.0125,docker=0`). spotbot
does not read a bill: on AWS Batch with Spot, take the price from the Spot price history of the
instance types the compute environment uses (`aws ec2 describe-spot-price-history`), divided by
the workers an instance holds (its vCPUs / SPOTBOT_BATCH_VCPUS); the result is an estimate of the
workers' share, not of the endpoints, storage or Elasticsearch.
"""

from __future__ import annotations

import re

from .errors import ConfigError
from .models import FileStatus, Job, Worker, now_ms
from .settings import Settings


def resources(settings: Settings, backend: str) -> tuple[float | None, int | None]:
    """(vCPUs, memory MiB) a worker of this back end is given; None where it shares the machine unbounded."""
    if backend == "batch":
        return float(settings.batch_vcpus), settings.batch_memory
    if backend == "docker":
        return (settings.docker_cpus or None), memory_mib(settings.docker_memory)
    return None, None


def memory_mib(amount: str) -> int | None:
    """A Docker memory amount (512m, 2g, 0) in MiB; None for no limit."""
    found = re.fullmatch(r"([0-9.]+)([bkmg]?)", amount.strip().lower())
    if not found or float(found.group(1)) == 0:
        return None
    scale = {"b": 1 / 2**20, "k": 1 / 2**10, "": 1 / 2**20, "m": 1, "g": 1024}[found.group(2)]
    return int(float(found.group(1)) * scale)


def prices(setting: str) -> dict[str, float]:
    """SPOTBOT_COST_PER_WORKER_HOUR as {back end or '*': price}; {} when unset."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in setting.split(","))):
        name, _, value = part.rpartition("=")
        try:
            out[name.strip() or "*"] = float(value)
        except ValueError:
            raise ConfigError(f"{part!r} is not a price like 0.05 or batch=0.0125", field="SPOTBOT_COST_PER_WORKER_HOUR") \
                from None
    return out


def worker_seconds(worker: Worker, now: int | None = None) -> float:
    """How long a worker has run (to its end, or to now while it runs)."""
    end = worker.ended_at or (now if now is not None else now_ms())
    return max(0.0, (end - worker.started_at) / 1000)


def job_cost(job: Job, counts: dict[str, int], settings: Settings) -> dict:
    """Worker time, files per worker-hour and, with a price, the cost so far, per 1,000 files and at the end."""
    now = now_ms()
    seconds = sum(worker_seconds(worker, now) for worker in job.workers.values())
    worked = counts.get(FileStatus.COMPLETED.value, 0) + counts.get(FileStatus.ERROR.value, 0)
    hours = seconds / 3600
    out: dict = {"worker_seconds": round(seconds, 1),
                 "files_per_worker_hour": round(worked / hours, 1) if hours and worked else None,
                 "vcpu_seconds": round(sum(worker_seconds(w, now) * (w.vcpus or 0) for w in job.workers.values()), 1)
                 or None}
    price = prices(settings.cost_per_worker_hour)
    if not price:
        return out
    cost = sum(worker_seconds(w, now) / 3600 * price.get(w.backend, price.get("*", 0.0)) for w in job.workers.values())
    left = max(0, job.total - worked - counts.get(FileStatus.CANCELLED.value, 0) - counts.get(FileStatus.SKIPPED.value, 0))
    per_file = cost / worked if worked else None
    out.update({"cost": round(cost, 6), "cost_per_1000_files": round(per_file * 1000, 6) if per_file is not None else None,
                "cost_at_end": round(cost + left * per_file, 6) if per_file is not None and not job.status.terminal
                else (round(cost, 6) if job.status.terminal else None)})
    return out
