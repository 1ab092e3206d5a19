"""What the dashboard's pages show, computed from the store's summaries: progress, rates, charts as SVG paths."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ...models import FileStatus, Job, JobStatus, Worker, WorkerState, now_ms

# the order statuses stack in a progress bar and a chart: the ended ones first, what is left last
STATUS_ORDER = [FileStatus.COMPLETED.value, FileStatus.ERROR.value, FileStatus.CANCELLED.value,
                FileStatus.PROCESSING.value, FileStatus.NOT_STARTED.value]
ENDED = (FileStatus.COMPLETED.value, FileStatus.ERROR.value, FileStatus.CANCELLED.value)
LIVE = (WorkerState.STARTING, WorkerState.RUNNING)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def when(ms: int | None) -> str:
    """An epoch-ms time as UTC, to the second; '' for none."""
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(ms: int | None, now: int | None = None) -> str:
    if not ms:
        return ""
    seconds = max(0, ((now or now_ms()) - ms) // 1000)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def is_image(key: str) -> bool:
    return key.lower().endswith(IMAGE_SUFFIXES)


@dataclass
class Segment:
    status: str
    count: int
    percent: float


@dataclass
class JobView:
    """A job as a row of the jobs page and the head of its own page."""

    job: Job
    counts: dict[str, int]
    total: int
    done: int
    segments: list[Segment]
    rate: float  # files ended per second since the job started running
    eta_seconds: float | None
    workers_alive: int
    # files being worked now (while the job runs), worker time and, with SPOTBOT_COST_PER_WORKER_HOUR, its cost
    in_flight: int | None = None
    worker_seconds: float | None = None
    cost: float | None = None

    @property
    def percent_done(self) -> float:
        return 100.0 * self.done / self.total if self.total else (100.0 if self.job.status.terminal else 0.0)


def job_view(job: Job, counts: dict[str, int], now: int | None = None) -> JobView:
    now = now or now_ms()
    total = max(job.total, sum(counts.values()))
    done = sum(counts.get(status, 0) for status in ENDED)
    segments = [Segment(status, counts.get(status, 0), 100.0 * counts.get(status, 0) / total if total else 0.0)
                for status in STATUS_ORDER if counts.get(status, 0)]
    end = job.finished_at or now
    elapsed = max(0.001, (end - (job.running_at or job.created_at)) / 1000)
    rate = done / elapsed if job.running_at and done else 0.0
    remaining = max(0, total - done)
    eta = remaining / rate if rate and not job.status.terminal and job.status != JobStatus.SCANNING else None
    alive = sum(1 for worker in job.workers.values() if worker.state in LIVE)
    return JobView(job=job, counts=counts, total=total, done=done, segments=segments, rate=rate, eta_seconds=eta,
                   workers_alive=alive)


@dataclass
class WorkerView:
    worker: Worker
    last_seen: int = 0
    chunks_done: int = 0


@dataclass
class Chart:
    """An SVG line chart: one polyline per series, in a viewBox of width x height."""

    width: int
    height: int
    series: list[tuple[str, str]]  # (name, SVG points)
    y_max: float
    x_labels: list[tuple[float, str, str]]  # (x, text, text-anchor)
    unit: str
    legend: list[tuple[str, float]] = field(default_factory=list)  # (name, last value)


WIDTH, HEIGHT = 600, 160


def _points(values: list[float], y_max: float) -> str:
    if not values:
        return ""
    step = WIDTH / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{HEIGHT - (v / y_max) * HEIGHT:.1f}" for i, v in enumerate(values))


def _x_labels(starts: list[int]) -> list[tuple[float, str, str]]:
    """Times under the x axis: first, middle and last bucket, anchored so none runs off the chart."""
    if not starts:
        return []
    step = WIDTH / max(1, len(starts) - 1)
    picks = sorted({0, len(starts) // 2, len(starts) - 1})
    last = len(starts) - 1
    return [(i * step, when(starts[i])[11:], "start" if i == 0 else ("end" if i == last else "middle")) for i in picks]


def charts(interval_ms: int, points: list[tuple[int, dict[str, int]]], before: dict[str, int]) -> tuple[Chart, Chart]:
    """Files ended per status over time (cumulative, from `before` at the start), and files ended per second."""
    starts = [start for start, _ in points]
    cumulative: dict[str, list[float]] = {}
    for status in ENDED:
        running, values = before.get(status, 0), []
        for _, counts in points:
            running += counts.get(status, 0)
            values.append(float(running))
        cumulative[status] = values
    top = max([1.0] + [v for values in cumulative.values() for v in values])
    shown = [status for status in ENDED if cumulative[status] and cumulative[status][-1]]
    counts_chart = Chart(WIDTH, HEIGHT, [(s, _points(cumulative[s], top)) for s in shown], top, _x_labels(starts),
                         "files", [(s, cumulative[s][-1]) for s in shown])
    rates = [sum(counts.get(s, 0) for s in ENDED) / (interval_ms / 1000) for _, counts in points]
    rate_top = max([0.1] + rates)
    rate_chart = Chart(WIDTH, HEIGHT, [("rate", _points(rates, rate_top))] if rates else [], rate_top,
                       _x_labels(starts), "files/s", [("rate", rates[-1])] if rates else [])
    return counts_chart, rate_chart
