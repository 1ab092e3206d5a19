"""Incremental runs and graceful stops (issue 16): `python -m benchmarks.incremental [--files 10000]`.

On the embedded stack (or SPOTBOT_ES_URL, with the embedded S3), in one session on one machine:

1. Incremental rerun. A job of --files tiny files (4 workers, an endpoint that answers at once and
   counts its calls), then --reruns incremental jobs over the same prefix, each after 1 % of the
   objects were overwritten: the endpoint's calls per rerun, and each rerun's time from submit to
   its end against the first job's.
2. Overhead of recording versions and fingerprints on a full run: files/s of full (not incremental)
   jobs with each completed file written as its bot's latest result (the default) and without it
   (SPOTBOT_RECORD_RESULTS=false), alternated, on fresh indices each; the first job of figure 1
   and one without recording over the same --files files make a pair at that size too.
3. Graceful stop. One chunk of --stop-files files (an endpoint taking 100 ms a call, concurrency 8)
   on one of three workers, the other two idle; once a quarter of it is done its worker is sent
   SIGTERM, or SIGKILL: the time from the signal until another worker starts one of its remaining
   files, and until they are all done (the lease is 10 s, poll 0.5 s, as in benchmarks/RESULTS.md).
   One chunk, so that the idle workers have nothing else to do: what is measured is the hand-over,
   not the queue.

Results are appended to benchmarks/INCREMENTAL.md and printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from framework.models import JobStatus, now_ms
from framework.scheduler import Scheduler
from framework.storage import S3Location
from framework.store import Store

from .harness import BUCKET, Bench, temporary_home

HERE = Path(__file__).resolve().parent
WORKERS = 4


def upload(bench: Bench, prefix: str, n: int) -> list[str]:
    """n tiny text files under the prefix (uploaded once); their keys."""
    keys = [f"{prefix}{i // 1000:04d}/f{i:07d}.txt" for i in range(n)]
    listed = sum(len(page) for page in bench.storage.pages(S3Location(BUCKET, prefix)))
    if listed < n:
        print(f"  uploading {n} files to s3://{BUCKET}/{prefix} ...", file=sys.stderr, flush=True)
        write(bench, {key: f"text of {key}" for key in keys})
    return keys


def write(bench: Bench, objects: dict[str, str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: bench.storage.write(BUCKET, item[0], item[1].encode()), objects.items()))


def calls(log: Path) -> int:
    return len(log.read_bytes().splitlines()) if log.exists() else 0


def run_job(bench: Bench, bot: str, prefix: str, *, incremental: bool, record_results: bool = True) -> dict:
    """One job end to end with real worker processes: seconds from submit to its end, files/s while it ran."""
    settings = bench.base.model_copy(update={"record_results": record_results})
    scheduler = Scheduler(settings, Store.from_settings(settings), bench.storage)
    started = time.monotonic()
    job = scheduler.submit(bot, f"s3://{BUCKET}/{prefix}", f"s3://{BUCKET}/out-{prefix}", workers=WORKERS,
                           incremental=incremental)
    while not job.status.terminal:
        time.sleep(0.1)
        job = bench.store.jobs.get(job.job_id)
    seconds = time.monotonic() - started
    if job.status != JobStatus.COMPLETED:
        raise RuntimeError(f"benchmark job ended {job.status.value} with {job.counts}")
    worked = job.counts.get("COMPLETED", 0)
    running = max(0.001, ((job.finished_at or 0) - (job.running_at or job.created_at)) / 1000)
    return {"seconds": seconds, "rate": worked / running if worked else 0.0, "counts": job.counts, "job_id": job.job_id,
            **phases(bench, job)}


def phases(bench: Bench, job) -> dict:
    """Where a job's time went, from its documents' timestamps: the scan (created to RUNNING), until its
    workers began their first file (their processes start), the work, and from the last file to the end."""
    bench.store.refresh("files")
    found = bench.store.engine.search(bench.store.target("files"), {
        "size": 0, "query": {"bool": {"filter": [{"term": {"job_id": job.job_id}}, {"term": {"status": "COMPLETED"}}]}},
        "aggs": {"first": {"min": {"field": "started_at"}}, "last": {"max": {"field": "completed_at"}}}})["aggregations"]
    first, last = found["first"]["value"], found["last"]["value"]
    if first is None or last is None:
        return {}
    return {"scan_s": (job.running_at - job.created_at) / 1000, "start_s": (first - job.running_at) / 1000,
            "work_s": (last - first) / 1000, "end_s": (job.finished_at - last) / 1000}


def incremental_figures(bench: Bench, n: int, reruns: int, log: Path) -> dict:
    prefix = f"incr{n}/"
    keys = upload(bench, prefix, n)
    bench.reset()
    bot = bench.register("counting")
    # the pair at this size for figure 2: without recording first (its results would be reused otherwise)
    print(f"incremental: a full job of {n} files without recording results", file=sys.stderr, flush=True)
    unrecorded = run_job(bench, bot, prefix, incremental=False, record_results=False)
    bench.reset()
    bench.register("counting")  # (reset empties the bots index too)
    print(f"incremental: the first job of {n} files", file=sys.stderr, flush=True)
    before = calls(log)
    first = run_job(bench, bot, prefix, incremental=False)
    first["calls"] = calls(log) - before
    rows = []
    step = 100  # 1 % of the objects: every 100th key, a different one each rerun
    for rerun in range(reruns):
        changed = keys[rerun % step::step]
        write(bench, {key: f"changed {rerun} {uuid.uuid4().hex}" for key in changed})
        before = calls(log)
        result = run_job(bench, bot, prefix, incremental=True)
        result.update(calls=calls(log) - before, changed=len(changed))
        if result["counts"].get("COMPLETED") != len(changed) or result["counts"].get("SKIPPED") != n - len(changed):
            raise RuntimeError(f"incremental rerun counted {result['counts']}, expected {len(changed)} worked")
        print(f"  rerun {rerun + 1}/{reruns}: {result['seconds']:.1f} s, {result['calls']} call(s)", file=sys.stderr,
              flush=True)
        rows.append(result)
    return {"first": first, "reruns": rows, "unrecorded": unrecorded}


def overhead_figures(bench: Bench, n: int, runs: int) -> dict:
    prefix = f"ovh{n}/"
    upload(bench, prefix, n)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for run in range(runs):
        for recording in (False, True) if run % 2 == 0 else (True, False):  # alternated: drift falls on both
            bench.reset()
            bot = bench.register("noop")
            rate = run_job(bench, bot, prefix, incremental=False, record_results=recording)["rate"]
            print(f"  overhead run {run + 1}/{runs}, recording {recording}: {rate:.1f} files/s", file=sys.stderr,
                  flush=True)
            rates[recording].append(rate)
    return rates


def handover(bench: Bench, n: int, how: signal.Signals) -> dict:
    """One chunk on one of three workers; its worker signalled a quarter of the way: when the rest went elsewhere."""
    prefix = f"stop{n}/"
    upload(bench, prefix, n)
    bench.reset()
    bot_name = bench.register("slow100")
    bot = bench.store.bots.get(bot_name)
    scheduler = Scheduler(bench.base, bench.store, bench.storage)
    job = scheduler.create_job(bot_name, f"s3://{BUCKET}/{prefix}", f"s3://{BUCKET}/out-{prefix}", workers=3)
    objects = [obj for page in bench.storage.objects(S3Location(BUCKET, prefix)) for obj in page]
    # one chunk of them all (see the module's doc)
    chunk, files = scheduler._chunk(job, bot, BUCKET, 0, [(obj, None) for obj in objects])
    bench.store.record([(chunk, files)])
    job = bench.store.jobs.start(job.job_id, total=len(files), chunks=1)
    scheduler.endpoints.ensure(bot)
    job = scheduler.launch(job, bot, 3)
    while True:
        current, *_ = bench.store.chunks.get([chunk.chunk_id])[chunk.chunk_id]
        if current.lease_owner and current.counts.get("COMPLETED", 0) >= n // 4:
            break
        time.sleep(0.05)
    victim = current.lease_owner
    pid = bench.store.jobs.get(job.job_id).workers[victim].pid
    signalled = now_ms()
    os.kill(pid, how)
    while not (job := bench.store.jobs.get(job.job_id)).status.terminal:
        time.sleep(0.2)
    if job.status != JobStatus.COMPLETED or job.counts.get("COMPLETED") != n:
        raise RuntimeError(f"handover job ended {job.status.value} with {job.counts}")
    taken = [task for task in bench.store.files.get(chunk.file_ids) if task and task.worker_id != victim]
    return {"taken_over_s": (min(task.started_at for task in taken) - signalled) / 1000,
            "rest_done_s": (max(task.completed_at for task in taken) - signalled) / 1000,
            "files_left": len(taken)}


def split(result: dict) -> str:
    """A job's phases as table cells (see phases)."""
    return " | ".join(f"{result[name]:.1f}" if name in result else "n/a" for name in ("scan_s", "start_s", "work_s", "end_s"))


def figure(values: list[float], digits: int = 1) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000, help="files of the incremental figure (default 10000)")
    parser.add_argument("--reruns", type=int, default=3, help="incremental reruns, 1 %% changed before each")
    parser.add_argument("--overhead-files", type=int, default=2000, help="files per run of the overhead figure")
    parser.add_argument("--overhead-runs", type=int, default=3, help="runs of each kind in the overhead figure")
    parser.add_argument("--stop-files", type=int, default=400, help="files of the chunk in the graceful-stop figure")
    parser.add_argument("--stop-runs", type=int, default=3, help="runs per signal in the graceful-stop figure")
    parser.add_argument("--only", choices=["incremental", "overhead", "stop"], help="take one figure only")
    parser.add_argument("--out", type=Path, default=HERE / "INCREMENTAL.md")
    args = parser.parse_args(argv)
    home = temporary_home()
    log = home / "endpoint-calls.log"
    os.environ["BENCH_CALLS_LOG"] = str(log)  # the counting endpoint, started from here, inherits it
    began, load = time.monotonic(), os.getloadavg()[0]
    bench = Bench(home)
    found: dict = {}
    try:
        if args.only in (None, "incremental"):
            found["incremental"] = incremental_figures(bench, args.files, args.reruns, log)
        if args.only in (None, "overhead"):
            print(f"overhead: {args.overhead_runs} run(s) of {args.overhead_files} files each way", file=sys.stderr)
            found["overhead"] = overhead_figures(bench, args.overhead_files, args.overhead_runs)
        if args.only in (None, "stop"):
            found["stop"] = {}
            for how in (signal.SIGTERM, signal.SIGKILL):
                runs = []
                for run in range(args.stop_runs):
                    runs.append(handover(bench, args.stop_files, how))
                    print(f"  {how.name} run {run + 1}/{args.stop_runs}: {runs[-1]}", file=sys.stderr, flush=True)
                found["stop"][how.name] = runs
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    text = report(found, args, bench, time.monotonic() - began, (load, os.getloadavg()[0]))
    with args.out.open("a") as out:
        out.write(text)
    print(text)
    return 0


def report(found: dict, args, bench: Bench, seconds: float, load: tuple[float, float]) -> str:
    server = "embedded (noida-db)" if bench.embedded_es else os.environ.get("SPOTBOT_ES_URL", "")
    lines = [f"# Incremental runs and graceful stops ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"`python -m benchmarks.incremental {' '.join(sys.argv[1:])}`".replace(" `", "`"),
             "",
             f"- took {seconds / 60:.0f} min; machine: {os.cpu_count()} cores, {platform.platform()}, "
             f"Python {platform.python_version()}; Elasticsearch {server}; S3 embedded (weed mini)",
             f"- figures 1-2: {WORKERS} workers; all: concurrency 8, chunks of 100, lease 10 s, poll 0.5 s, "
             "results flushed every 2 s or 100 files",
             f"- the machine's load average (1 min) was {load[0]:.1f} at the start and {load[1]:.1f} at the end "
             f"({os.cpu_count()} cores; other work on it slows every job alike)", ""]
    if "incremental" in found:
        inc = found["incremental"]
        first, reruns = inc["first"], inc["reruns"]
        ratios = [r["seconds"] / first["seconds"] for r in reruns]
        lines += ["## 1. Incremental rerun, 1 % of the objects changed", "",
                  "| job | files | endpoint calls | files worked | SKIPPED | seconds, submit to end | vs the first job "
                  "| scan s | workers start s | work s | end s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| first (full) | {args.files:,} | {first['calls']:,} | {first['counts'].get('COMPLETED', 0):,} | 0 | "
                  f"{first['seconds']:.1f} | 1.00 | {split(first)} |"]
        for n, (rerun, ratio) in enumerate(zip(reruns, ratios), 1):
            lines.append(f"| incremental rerun {n} | {args.files:,} | {rerun['calls']:,} | "
                         f"{rerun['counts'].get('COMPLETED', 0):,} | {rerun['counts'].get('SKIPPED', 0):,} | "
                         f"{rerun['seconds']:.1f} | {ratio:.3f} | {split(rerun)} |")
        lines += ["", f"Reruns: {figure([r['seconds'] for r in reruns])} s, {figure(ratios, 3)} of the first job's "
                  "time (median (min-max)); the endpoint was called once per changed object and for nothing else. "
                  "Phases, from the documents' timestamps: the scan (listing, reading the earlier results, recording "
                  "the files), until the workers began their first file (their processes start), the work, and from "
                  "the last file to the job's end.", ""]
    if "overhead" in found:
        rates = found["overhead"]
        on, off = rates[True], rates[False]
        lines += ["## 2. Overhead of recording versions and results on a full run", "",
                  "| files | runs | files/s recording (default) | files/s without (SPOTBOT_RECORD_RESULTS=false) | "
                  "overhead |", "|---|---|---|---|---|",
                  f"| {args.overhead_files:,} | {len(on)} each, alternated | {figure(on)} | {figure(off)} | "
                  f"{(1 - statistics.median(on) / statistics.median(off)) * 100:+.1f} % |"]
        if "incremental" in found:
            first, bare = found["incremental"]["first"], found["incremental"]["unrecorded"]
            lines.append(f"| {args.files:,} | 1 each | {first['rate']:.1f} | {bare['rate']:.1f} | "
                         f"{(1 - first['rate'] / bare['rate']) * 100:+.1f} % |")
        lines += ["", "Overhead: how much lower files/s is with recording (negative: higher). Both ways record each "
                  "object's ETag and size on its file document and read it with IfMatch, and compute the job's "
                  "fingerprint at submit; what the switch removes is the latest-result write in each completion's "
                  "bulk request, the one extra write per file.", ""]
    if "stop" in found:
        stop = found["stop"]
        lines += ["## 3. Graceful stop: a worker signalled a quarter of the way through its chunk", "",
                  "| signal | runs | files left | another worker starts them after s | all done after s |",
                  "|---|---|---|---|---|"]
        for name, runs in stop.items():
            lines.append(f"| {name} | {len(runs)} | {figure([r['files_left'] for r in runs], 0)} | "
                         f"{figure([r['taken_over_s'] for r in runs], 2)} | {figure([r['rest_done_s'] for r in runs])} |")
        lines += ["", f"One chunk of {args.stop_files} files (100 ms endpoint calls) on one of three workers; the "
                  "other two idle. SIGTERM: the worker lets its files in flight finish and gives the chunk back at "
                  "once; SIGKILL: the chunk is taken once its 10 s lease has expired, and then worked carefully, one "
                  "file at a time (nobody knows which file killed the worker).", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
