"""A worker's memory with large files: does it stay flat however many files? (`python -m benchmarks.memory 200,2000`)

One worker at concurrency 16 (SPOTBOT_MAX_INFLIGHT_BYTES at its default) works N files of 5 MB
each through the noop endpoint (the benchmark bot sends the whole file to it), one job per size.
While the job runs, every worker process on this machine is sampled twice a second and its
peak resident memory (VmHWM, which only grows) kept. Results are appended to benchmarks/RESULTS.md
and printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from framework.storage import S3Location

from .harness import BUCKET, Bench, append_figure, temporary_home
from .scale import peak_memory_mb

FILE_BYTES = 5 * 2**20
CONCURRENCY = 16


def dataset(bench: Bench, n: int) -> str:
    prefix = f"big{n}/"
    if sum(len(page) for page in bench.storage.pages(S3Location(BUCKET, prefix))) < n:
        print(f"  uploading {n} files of 5 MB to s3://{BUCKET}/{prefix} ...", file=sys.stderr, flush=True)
        body = (b"x" * 1023 + b"\n") * (FILE_BYTES // 1024)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: bench.storage.write(BUCKET, f"{prefix}f{i:05d}.txt", body), range(n)))
    return prefix


def worker_peaks(stop: threading.Event, peaks: dict[int, float]) -> None:
    """Sample every worker process (`python -m framework.bot`) until stopped: pid -> peak RSS in MB."""
    while not stop.is_set():
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                if b"framework.bot" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
            except OSError:
                continue
            peak = peak_memory_mb(pid)
            if peak is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), peak)
        stop.wait(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="?", default="200,2000", help="file counts, like 200,2000")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = parser.parse_args(argv)
    home = temporary_home()
    bench = Bench(home)
    rows = []
    try:
        for n in (int(size) for size in args.sizes.split(",")):
            print(f"memory: {n} files of 5 MB", file=sys.stderr, flush=True)
            prefix = dataset(bench, n)
            peaks: dict[int, float] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=worker_peaks, args=(stop, peaks), daemon=True)
            sampler.start()
            try:
                result = bench.spotbot(n, 1, "noop", concurrency=CONCURRENCY, prefix=prefix)
            finally:
                stop.set()
                sampler.join()
            if not peaks:
                raise RuntimeError("no worker process was seen")
            rows.append((n, max(peaks.values()), result["rate"]))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    first = rows[0][1]
    lines = [f"## Memory: one worker, concurrency {CONCURRENCY}, files of 5 MB (issue 13)", "",
             "| files | worker peak RSS MB | vs the first size | files/s |", "|---|---|---|---|"]
    lines += [f"| {n:,} | {peak:.0f} | {peak / first:.2f} | {rate:.1f} |" for n, peak, rate in rows]
    lines += ["", f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m benchmarks.memory "
              f"{args.sizes}`; SPOTBOT_MAX_INFLIGHT_BYTES at its default; the benchmark bot reads each file and sends "
              "it whole to the noop endpoint. Target: flat (the same peak at every size).", ""]
    append_figure(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
