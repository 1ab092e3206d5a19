"""Prometheus metrics, read from the store: every replica of the API answers the same, and none counts in memory.

Names follow Prometheus' rules: the `spotbot_` prefix, base units (seconds), `_total` for
counters, and labels that stay few: job ids, bots, statuses, worker states and endpoint names,
never a file's key. Per-job series are kept for the jobs that run and those that ended in the
last JOB_WINDOW_HOURS (at most MAX_JOBS), so a store with years of jobs does not grow a series
per job forever.

The Prometheus text format is written here (version 0.0.4): a few lines of escaping, and no
client library whose registry would count in this process.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .costs import worker_seconds
from .models import FileStatus, Job, JobStatus, WorkerState, now_ms
from .store import Store

JOB_WINDOW_HOURS = 24
MAX_JOBS = 200
# upper bounds (seconds) of the processing-time histogram's buckets
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class Family:
    """One metric: its name, type, help and samples (suffix, labels, value)."""

    name: str
    kind: str  # gauge | counter | histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((suffix, labels, value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def render(families: list[Family]) -> str:
    """The families in Prometheus' text format."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            shown = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            lines.append(f"{family.name}{suffix}{{{shown}}} {_number(value)}" if shown
                         else f"{family.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


def shown_jobs(jobs: list[Job], now: int | None = None) -> list[Job]:
    """The jobs that get series of their own: not ended, or ended within the window; newest first, at most MAX_JOBS."""
    now = now_ms() if now is None else now
    since = now - JOB_WINDOW_HOURS * 3600 * 1000
    return [job for job in jobs if not job.status.terminal or (job.finished_at or 0) >= since][:MAX_JOBS]


def collect(store: Store) -> list[Family]:
    """Every metric, from a handful of requests: the jobs, their counts, one aggregation over files, the endpoints."""
    started = time.monotonic()
    jobs_by_status = Family("spotbot_jobs", "gauge", "Jobs per status.")
    per_status = store.reports.jobs_per_status()
    for status in JobStatus:
        jobs_by_status.add(per_status.get(status.value, 0), status=status.value)

    info = Family("spotbot_job_info", "gauge", "1 for each job shown, with its bot and status.")
    files = Family("spotbot_job_files", "gauge", "Files of a job per status.")
    scanned = Family("spotbot_job_files_scanned", "gauge",
                     "Files the job's scan has recorded so far (its total once the scan is done).")
    workers = Family("spotbot_job_workers", "gauge", "Workers of a job per state, as the job records them.")
    started_at = Family("spotbot_job_start_time_seconds", "gauge", "When the job started running (Unix time).")
    in_flight = Family("spotbot_job_files_in_flight", "gauge", "Files of a job being worked now (0 once it ended).")
    worker_time = Family("spotbot_job_worker_seconds_total", "counter",
                         "Seconds its workers have run, over all of them (what the job costs, at a price per hour).")
    for job in shown_jobs(store.jobs.list()):
        counts, working = store.jobs.shown(job)
        in_flight.add(working or 0, job_id=job.job_id)
        worker_time.add(round(sum(worker_seconds(worker) for worker in job.workers.values()), 3), job_id=job.job_id)
        info.add(1, job_id=job.job_id, bot=job.bot, status=job.status.value)
        for status in FileStatus:
            files.add(counts.get(status.value, 0), job_id=job.job_id, bot=job.bot, status=status.value)
        scanned.add(sum(counts.values()) if job.status == JobStatus.SCANNING else max(job.total, sum(counts.values())),
                    job_id=job.job_id, bot=job.bot)
        states = {state.value: 0 for state in WorkerState}
        for worker in job.workers.values():
            states[worker.state.value] += 1
        for state, count in states.items():
            workers.add(count, job_id=job.job_id, state=state)
        if job.running_at:
            started_at.add(job.running_at / 1000, job_id=job.job_id)

    completed = Family("spotbot_bot_files_completed_total", "counter", "Files a bot completed, over all its jobs.")
    failed = Family("spotbot_bot_files_failed_total", "counter",
                    "Times a file of the bot ended ERROR, over all its jobs (a retried file that fails again counts again).")
    durations = Family("spotbot_file_processing_seconds", "histogram",
                       "Time from a file's start to its completion, per bot (completed files).")
    for figures in store.reports.bot_figures(list(DURATION_BUCKETS)):
        completed.add(figures.completed, bot=figures.bot)
        failed.add(figures.failures, bot=figures.bot)
        for bound, count in figures.durations_le:
            durations.add(count, "_bucket", bot=figures.bot, le=_number(bound))
        durations.add(figures.duration_count, "_bucket", bot=figures.bot, le="+Inf")
        durations.add(figures.duration_sum_seconds, "_sum", bot=figures.bot)
        durations.add(figures.duration_count, "_count", bot=figures.bot)

    endpoints = Family("spotbot_endpoint_up", "gauge",
                       "1 when the endpoint is recorded IN_SERVICE (workers restart one that stops answering), else 0.")
    for endpoint in store.endpoints.list():
        endpoints.add(1 if endpoint.status.value == "IN_SERVICE" else 0, endpoint=endpoint.name, backend=endpoint.backend)

    took = Family("spotbot_metrics_collect_seconds", "gauge", "How long reading these metrics from the store took.")
    took.add(round(time.monotonic() - started, 6))
    return [jobs_by_status, info, files, scanned, workers, started_at, in_flight, worker_time, completed, failed, durations, endpoints, took]
