"""`python -m benchmarks.scan PREFIX`: scan + record one job over the bench bucket's PREFIX, alone in
this process, and print its files/s and peak memory as JSON."""

from __future__ import annotations

import json
import sys
import time
import uuid

from framework.models import Job
from framework.scheduler import Scheduler
from framework.settings import Settings
from framework.storage import Storage, parse_uri
from framework.store import Store

from .harness import BUCKET


def main(prefix: str) -> None:
    settings = Settings.from_env()
    store, storage = Store.from_settings(settings), Storage(settings)
    job = Job(job_id=f"scan-{uuid.uuid4().hex[:6]}", bot="bench_noop", input_uri=f"s3://{BUCKET}/{prefix}",
              output_uri=f"s3://{BUCKET}/scan-out/", workers_requested=4)
    store.jobs.create(job)
    from framework.models import BotConfig

    bot = BotConfig(name="bench_noop", file_types=".txt", bot_image="python:task.py")
    started = time.monotonic()
    total = Scheduler(settings, store, storage).scan(job, bot, parse_uri(job.input_uri))
    seconds = time.monotonic() - started
    print(json.dumps({"files": total, "seconds": seconds, "scan_rate": total / seconds,
                      "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak resident memory. (getrusage's ru_maxrss is no good here: Linux carries
    the parent's peak across fork and exec, so it would report the benchmark's own growth.)"""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(sys.argv[1])
