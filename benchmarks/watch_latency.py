"""`python -m benchmarks.watch_latency`: how soon `spotbot watch` picks up an upload and has it worked.

On the embedded stack, with the echo test bot (tests/bots/echo) and one worker: objects are
uploaded one at a time at random gaps while a real `spotbot watch` process runs, and for each
the time from the end of its upload to its file document being created (recorded) and to its
completion (COMPLETED, its result written) is read from the file documents. Every setting pair
is measured in the same session; the table of medians, 90th percentiles and maxima goes to
benchmarks/WATCH_LATENCY.md.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from framework.models import BotConfig
from framework.scheduler import Scheduler
from framework.storage import S3Location

from .harness import BUCKET, Bench, temporary_home
from .__main__ import machine

HERE = Path(__file__).resolve().parent
ECHO = HERE.parent / "tests" / "bots" / "echo"
SPOTBOT = str(Path(sys.executable).parent / "spotbot")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(bench: Bench, interval: float, poll: float, uploads: int, gap: tuple[float, float], seed: int) -> dict:
    """One watcher over a fresh prefix; returns the latencies (seconds) of its uploads."""
    settings = bench.base.model_copy(update={"poll_seconds": poll})
    tag = f"w{int(interval * 10)}p{int(poll * 10)}-{random.randrange(10**6)}"
    prefix = f"watch-{tag}/"
    bench.store.bots.register(BotConfig(name="echo", file_types=".txt", bot_image=f"python:{ECHO / 'task.py'}",
                                        endpoint_name="echo-upper", endpoint_ecr_image_path=f"python:{ECHO / 'endpoint.py'}"))
    watcher = subprocess.Popen([SPOTBOT, "watch", "--bot", "echo", "--input", f"s3://{BUCKET}/{prefix}", "--output",
                                f"s3://{BUCKET}/out-{tag}/", "--bots", "1", "--job-id", tag, "--interval", str(interval),
                                "--json"], env=bench.env(settings), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        json.loads(watcher.stdout.readline() or "{}")  # nothing is uploaded before the watcher has looked once...
        deadline = time.monotonic() + 120
        while not bench.store.jobs.get(tag).cursor.get("swept_at"):  # ...and its first (empty) listing is done
            if time.monotonic() > deadline:
                raise RuntimeError("the watcher did not make its first look")
            time.sleep(0.2)
        rng = random.Random(seed)
        uploaded: dict[str, int] = {}
        for i in range(uploads):
            time.sleep(rng.uniform(*gap))  # random gaps: uploads land at every phase of the polling
            key = f"{prefix}{i:04d}.txt"
            bench.storage.write(BUCKET, key, f"upload {i}".encode())
            uploaded[key] = int(time.time() * 1000)
        deadline = time.monotonic() + 300
        while bench.store.jobs.counts(tag)["COMPLETED"] < uploads:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {bench.store.jobs.counts(tag)} of {uploads} uploads were worked")
            time.sleep(0.5)
        files = {task.file_key: task for task in bench.store.files.page(tag)}
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
        Scheduler(settings, bench.store, bench.storage).close(tag)  # its files are done: it ends, its worker leaves
    recorded = [(files[key].created_at - at) / 1000 for key, at in uploaded.items()]
    done = [(files[key].completed_at - at) / 1000 for key, at in uploaded.items()]
    listed = sum(len(page) for page in bench.storage.pages(S3Location(BUCKET, prefix)))
    return {"interval": interval, "poll": poll, "uploads": uploads, "listed": listed, "recorded": recorded, "completed": done}


def row(result: dict) -> str:
    def cells(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} | {percentile(values, 0.9):.2f} | {max(values):.2f}"

    return (f"| {result['interval']:g} | {result['poll']:g} | {result['uploads']} | {cells(result['recorded'])} | "
            f"{cells(result['completed'])} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=30, help="uploads per setting (default 30)")
    parser.add_argument("--settings", default="5:1,1:0.5",
                        help="interval:poll pairs, comma-separated (default 5:1,1:0.5: the defaults, then a tight watch)")
    parser.add_argument("--gap", default="0.2,2.0", help="min,max seconds between uploads (default 0.2,2.0)")
    parser.add_argument("--out", type=Path, default=HERE / "WATCH_LATENCY.md")
    args = parser.parse_args(argv)
    gap = tuple(float(x) for x in args.gap.split(","))
    pairs = [tuple(float(x) for x in pair.split(":")) for pair in args.settings.split(",")]
    bench = Bench(temporary_home())
    results = []
    try:
        for number, (interval, poll) in enumerate(pairs):
            print(f"watch latency: interval {interval:g}s, worker poll {poll:g}s, {args.uploads} uploads", file=sys.stderr, flush=True)
            results.append(measure(bench, interval, poll, args.uploads, gap, seed=number))
    finally:
        bench.close()
    lines = ["# spotbot watch: pick-up latency", "",
             f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
             f"`python -m benchmarks.watch_latency {' '.join(argv if argv is not None else sys.argv[1:])}`.", *machine(),
             "- embedded stack (noida-db, weed mini); echo test bot, 1 worker; one upload at a time, "
             f"{gap[0]:g}-{gap[1]:g} s apart (random)", "",
             "Seconds from the end of an upload to its file being recorded by the watcher, and to it being COMPLETED.", "",
             "| --interval s | worker poll s (SPOTBOT_POLL_SECONDS) | uploads | recorded median | p90 | max | "
             "completed median | p90 | max |",
             "|---|---|---|---|---|---|---|---|---|", *(row(r) for r in results), "",
             "Recording waits for the next look (on average half an interval); working then waits for an idle "
             "worker's next poll for a chunk, then the echo endpoint's round trip and the result's write."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
