"""The peer: Ray Data doing the benchmark job (GET each object, call the endpoint, PUT the answer).

`python -m benchmarks.ray_peer KEYS_FILE --actors A --threads T --batch-size B` (environment as
for benchmarks.raw: SPOTBOT_* for S3, BENCH_BUCKET, BENCH_OUT, BENCH_ENDPOINT) prints one JSON line:
files; seconds, the whole pipeline (its actors' start included); steady_seconds, from the first
batch's start to the last batch's end (the actors' start left out: Ray's most favourable figure);
init_seconds (ray.init, in neither).

How Ray is set up, as a user who wants throughput would: a local Ray with every core of the
machine (ray.init(num_cpus=os.cpu_count())), the keys as a dataset (ray.data.from_items), and one
map_batches stage on an actor pool (ActorPoolStrategy(size=A), `batch_size=B` keys per batch, each
actor taking cores/A CPUs, so the pool fills the machine). The work is latency-bound (S3 and the
endpoint), so each actor keeps T files in flight with a thread pool, as a spotbot worker with
SPOTBOT_CONCURRENCY=T does, and reads and writes through the same S3 client (framework.storage)
and calls the same endpoint over HTTP; batches of B = 4 x T keys keep its threads busy while the
slowest file of a batch finishes, and each actor runs two batches at once
(ActorPoolStrategy(max_concurrent_calls_per_actor=2, enable_true_multi_threading=True)) on its one
thread pool, so a batch's tail never leaves its threads idle. The blocks of the dataset are made
batch-sized (from_items(override_num_blocks=files / B)), else Ray hands the actors tiny batches.

Ray is only in the `bench` extra (`make bench` installs it), never a runtime dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


class Work:
    """One actor of the pool: a Storage client, a thread pool, a requests session per thread."""

    def __init__(self, environ: dict[str, str], threads: int):
        import requests

        from framework.settings import Settings
        from framework.storage import Storage

        self.storage = Storage(Settings.from_env(environ))
        self.bucket, self.out_prefix, self.url = environ["BENCH_BUCKET"], environ["BENCH_OUT"], environ["BENCH_ENDPOINT"]
        self.pool = ThreadPoolExecutor(threads)
        self.local = threading.local()
        self.requests = requests

    def _one(self, key: str) -> None:
        if not hasattr(self.local, "session"):
            self.local.session = self.requests.Session()
        text = self.storage.read(self.bucket, key).decode()
        answer = self.local.session.post(self.url + "/invocations", data=json.dumps({"text": text}),
                                         headers={"Content-Type": "application/json"}, timeout=60)
        answer.raise_for_status()
        self.storage.write(self.bucket, f"{self.out_prefix}/{key}.json", answer.content, "application/json")

    def __call__(self, batch: dict) -> dict:
        keys = [str(key) for key in batch["key"]]
        started = time.time()
        list(self.pool.map(self._one, keys))
        ended = time.time()
        return {"key": batch["key"], "started": [started] * len(keys), "ended": [ended] * len(keys)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("keys_file")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--cpus-per-actor", type=float, help="Ray CPUs each actor reserves (default: cores / actors)")
    args = parser.parse_args(argv)
    import ray

    keys = [key for key in open(args.keys_file).read().split("\n") if key]
    began = time.monotonic()
    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    init = time.monotonic() - began
    environ = {k: v for k, v in os.environ.items() if k.startswith(("SPOTBOT_", "BENCH_"))}
    batch_size = args.batch_size or 4 * args.threads
    pool = ray.data.ActorPoolStrategy(size=args.actors, max_concurrent_calls_per_actor=2, enable_true_multi_threading=True)
    dataset = ray.data.from_items([{"key": key} for key in keys], override_num_blocks=-(-len(keys) // batch_size)).map_batches(
        Work, fn_constructor_kwargs={"environ": environ, "threads": args.threads}, compute=pool,
        batch_size=batch_size, num_cpus=args.cpus_per_actor or cores / args.actors)
    began = time.monotonic()
    done, first, last = 0, float("inf"), 0.0
    for batch in dataset.iter_batches(batch_size=None):
        done += len(batch["key"])
        first, last = min(first, min(batch["started"])), max(last, max(batch["ended"]))
    seconds = time.monotonic() - began
    ray.shutdown()
    if done != len(keys):
        raise RuntimeError(f"Ray did {done} of {len(keys)} files")
    print(json.dumps({"files": done, "seconds": seconds, "steady_seconds": last - first, "init_seconds": init}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
