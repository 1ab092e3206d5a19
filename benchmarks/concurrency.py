"""Which SPOTBOT_CONCURRENCY to ship: files/s by files in flight per worker (`python -m benchmarks.concurrency`).

Two workers work the same tiny text files at each concurrency, in one run, through three
endpoints: the noop one (the machine's CPU is the limit: does working many files at once cost
anything?), the one answering after 50 ms with S3 direct, and the same with 20 ms added to every
S3 request (cloud S3's latency). The default should be near the best where latency rules and
cost nothing where CPU does. Results are appended to benchmarks/RESULTS.md and printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from .harness import Bench, append_figure, temporary_home

S3_DELAY_MS = 20
WORKERS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,8,16,32", help="concurrencies to take, like 1,4,8,16,32")
    parser.add_argument("--files", type=int, default=2000, help="files per run")
    parser.add_argument("--runs", type=int, default=2, help="runs per cell (the median is shown)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    home = temporary_home()
    bench = Bench(home)
    cases = [("noop", "direct", bench.base), ("sleep50", "direct", bench.base),
             ("sleep50", f"+{S3_DELAY_MS} ms", bench.slow_s3(S3_DELAY_MS))]
    found: dict[tuple[str, str, int], float] = {}
    begun = time.monotonic()
    try:
        for endpoint, s3, settings in cases:
            for level in levels:
                rates = []
                for run in range(args.runs):
                    rates.append(bench.spotbot(args.files, WORKERS, endpoint, settings=settings, concurrency=level)["rate"])
                    print(f"  {endpoint}, S3 {s3}, concurrency {level}, run {run + 1}: {rates[-1]:.1f}",
                          file=sys.stderr, flush=True)
                found[endpoint, s3, level] = statistics.median(rates)
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    lines = ["## Concurrency: files/s by files in flight per worker (issue 13)", "",
             "| endpoint | S3 | " + " | ".join(f"concurrency {level}" for level in levels) + " |",
             "|---|---|" + "---|" * len(levels)]
    for endpoint, s3, _ in cases:
        best = max(found[endpoint, s3, level] for level in levels)
        lines.append(f"| {endpoint} | {s3} | " + " | ".join(
            f"{found[endpoint, s3, level]:.1f} ({found[endpoint, s3, level] / best:.2f})" for level in levels) + " |")
    lines += ["", f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m benchmarks.concurrency "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}` in {(time.monotonic() - begun) / 60:.0f} min: "
              f"{WORKERS} workers, {args.files} tiny text files, median of {args.runs} run(s) per cell, files/s from the "
              "job's start to its end (workers' start included); in brackets, the share of the row's best.", ""]
    append_figure(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
