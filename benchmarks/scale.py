"""The scale figure: does spotbot slow down as a job grows? (`python -m benchmarks.scale 10000,100000`)

One job of N tiny files per size, 4 workers, the noop endpoint, on the embedded stack (or
SPOTBOT_ES_URL, with --es-pid for its memory). While the job runs, a poller process of its own
asks for the job's status once a second as `spotbot status JOB --json` does (the job, its counts,
its workers) and times each answer (the command's own start-up, about 0.3 s of Python imports,
is not counted); the Elasticsearch server's peak memory (VmHWM) is read at the end. Results go to
benchmarks/RESULTS-scale.md and stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from framework.cli.jobs import progress_line
from framework.errors import NotFound
from framework.launchers import launcher
from framework.models import JobStatus
from framework.scheduler import Scheduler
from framework.settings import Settings
from framework.store import Store

from .harness import BUCKET, Bench, append_figure, temporary_home

WORKERS = 4


def status_once(store: Store, settings, job_id: str) -> dict:
    """What `spotbot status JOB --json` reads: the job, its counts, and each live worker through its launcher."""
    job = store.jobs.get(job_id)
    in_flight = claimed = 0
    if not job.status.terminal:
        job.counts, in_flight, claimed = store.jobs.progress(job_id)
    line = progress_line(job, in_flight, claimed)
    runner = launcher(settings, "process")
    line["workers"] = [runner.poll(worker)[0].value for worker in job.workers.values()]
    return line


def peak_memory_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def es_pid(bench: Bench, given: int | None) -> int | None:
    if given or not bench.embedded_es:
        return given
    data_dir = str((bench.home / "stack" / "es").resolve())
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "noida-db" in cmdline and data_dir in cmdline and " start" in cmdline:
                return int(pid)
    return None


def run(bench: Bench, n: int, server_pid: int | None) -> dict:
    """One job of n files; its files/s, the status latencies while it ran, and the server's requests."""
    prefix, _ = bench.dataset(n)
    bench.reset()
    bot = bench.register("noop")
    scheduler = Scheduler(bench.base, Store.from_settings(bench.base), bench.storage)
    started = time.monotonic()
    job_id = f"scale-{n}-{uuid.uuid4().hex[:4]}"
    # the poller starts with the job (status during the scan counts too) and runs in a process of its own
    poller = subprocess.Popen([sys.executable, "-m", "benchmarks.scale", "--poll", job_id], env=bench.env(),
                              stdout=subprocess.PIPE, text=True)
    job = scheduler.submit(bot, f"s3://{BUCKET}/{prefix}", f"s3://{BUCKET}/out-{uuid.uuid4().hex[:6]}/", workers=WORKERS,
                           job_id=job_id)
    scanned = time.monotonic() - started
    while not job.status.terminal:
        time.sleep(1.0)
        job = bench.store.jobs.get(job.job_id)
    polled = [line.split() for line in poller.communicate(timeout=120)[0].splitlines() if line.strip()]
    latencies = [float(seconds) for seconds, _ in polled]
    slowest = sorted(polled, key=lambda p: -float(p[0]))[:5]
    print(f"  slowest status answers (s, at s into the job): {slowest}", file=sys.stderr, flush=True)
    if job.status != JobStatus.COMPLETED or job.counts.get("COMPLETED") != n:
        raise RuntimeError(f"scale job ended {job.status.value} with {job.counts}")
    return {"files": n, "rate": n / ((job.finished_at - job.running_at) / 1000), "scan_s": scanned,
            "total_s": time.monotonic() - started,
            "status_median_s": statistics.median(latencies) if latencies else None,
            "status_max_s": max(latencies) if latencies else None, "polls": len(latencies),
            "es_peak_mb": peak_memory_mb(server_pid)}


def poll(job_id: str) -> int:
    """The poller: time `status` once a second until the job has ended; one latency per line on stdout."""
    settings = Settings.from_env()
    store = Store.from_settings(settings, init=False)
    begun = time.monotonic()
    while True:
        began = time.monotonic()
        try:
            line = status_once(store, settings, job_id)
        except NotFound:  # not recorded yet
            time.sleep(0.2)
            continue
        print(f"{time.monotonic() - began:.4f} {began - begun:.0f}", flush=True)
        if JobStatus(line["status"]).terminal:
            return 0
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="?", default="10000,100000", help="file counts, like 10000,100000,1000000")
    parser.add_argument("--es-pid", type=int, help="with SPOTBOT_ES_URL at a node on this machine: its process, for memory")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS-scale.md")
    parser.add_argument("--poll", metavar="JOB", help=argparse.SUPPRESS)  # the poller process
    args = parser.parse_args(argv)
    if args.poll:
        return poll(args.poll)
    sizes = [int(size) for size in args.sizes.split(",")]
    home = temporary_home()
    bench = Bench(home, es_pid=args.es_pid)
    rows = []
    try:
        for n in sizes:
            print(f"scale: {n} files", file=sys.stderr, flush=True)
            # a fresh server per size on the embedded stack, so each size's peak memory is its own
            if bench.embedded_es:
                bench.stack.stop_es()
                bench.stack.up()
            result = run(bench, n, es_pid(bench, args.es_pid))
            print(f"  {result}", file=sys.stderr, flush=True)
            rows.append(result)
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    server = "embedded (noida-db)" if bench.embedded_es else os.environ.get("SPOTBOT_ES_URL", "")
    base = rows[0]["rate"]
    lines = [f"## Scale: {WORKERS} workers, noop endpoint, Elasticsearch {server}", "",
             "| files | files/s | vs the first size | status median s | status max s | server peak MB | scan s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        peak = f"{row['es_peak_mb']:.0f}" if row["es_peak_mb"] else "n/a"
        lines.append(f"| {row['files']:,} | {row['rate']:.1f} | {row['rate'] / base:.2f} | {row['status_median_s']:.3f} | "
                     f"{row['status_max_s']:.3f} | {peak} | {row['scan_s']:.1f} |")
    lines += ["", f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m benchmarks.scale {args.sizes}`; "
              "files/s from RUNNING to the end; status polled once a second while the job ran.", ""]
    append_figure(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
