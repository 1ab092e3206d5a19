"""CPU per object of the worker's S3 data path (framework.storage.Storage) through boto3 and through obstore.

`python -m benchmarks.s3_clients` starts the embedded S3 (weed) on free ports, uploads objects of
each size, then for each client and size runs a fresh process in which T threads GET every object
and PUT it back under another key, as a worker's threads read an input and write its output. Each
figure is that process's own CPU time (user + system, all threads: `resource.getrusage`) per
object for the GET + PUT pair, measured around the loop only (imports, client set-up and a warm-up
pass excluded), and its objects/s. The S3 server's CPU is left out: it is the same for both.

    python -m benchmarks.s3_clients                          # 1 KB and 1 MB, 16 threads
    python -m benchmarks.s3_clients --sizes 1024 --threads 1,16 --objects 2000
    python -m benchmarks.s3_clients --worker --objects 1000  # a whole worker's CPU per file, each client

--worker measures what the choice is for: the CPU a spotbot worker spends per file (its S3 reads
and writes, the endpoint call, the bookkeeping), with SPOTBOT_S3_DATA_CLIENT=boto3 and obstore.
Each client runs jobs of N and 3N tiny files (4 workers, noop endpoint, embedded stack); the
workers' CPU difference over the 2N extra files is the per-file cost, without the workers' start
(imports, clients), which is the same whatever the job's size.

Both run through Storage.read / Storage.write, with SPOTBOT_S3_DATA_CLIENT=boto3 and =obstore.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUCKET = "clients"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def storage_client(client: str, state: dict):
    """The worker's data path: Storage.read / write (with its retries and error translation), through `client`."""
    from pydantic import SecretStr

    from framework.settings import Settings
    from framework.storage import Storage

    storage = Storage(Settings(s3_endpoint_url=state["s3_endpoint_url"], s3_access_key=SecretStr(state["access_key"]),
                               s3_secret_key=SecretStr(state["secret_key"]), s3_data_client=client))
    assert (storage.data is None) == (client == "boto3")
    return (lambda key: storage.read(BUCKET, key),
            lambda key, data: storage.write(BUCKET, key, data, "application/octet-stream"))


CLIENTS = ("boto3", "obstore")


def worker_cpu(files: int, runs: int, clients: list[str]) -> int:
    """Workers' CPU ms per file of spotbot jobs, by data client: the marginal cost between N and 3N files."""
    import shutil

    from .harness import Bench, temporary_home

    home = temporary_home()
    bench = Bench(home)
    try:
        found: dict[str, list[float]] = {client: [] for client in clients}
        for _ in range(runs):
            for client in clients:  # interleaved, so a busy moment hurts both alike
                settings = bench.base.model_copy(update={"s3_data_client": client})
                small = bench.profile("spotbot", files, 4, settings=settings)
                large = bench.profile("spotbot", 3 * files, 4, settings=settings)
                marginal = (large["workers"] * 3 * files - small["workers"] * files) / (2 * files)
                found[client].append(marginal)
                print(f"  {client}: {small['workers']:.2f} ms/file over {files} files, {large['workers']:.2f} over "
                      f"{3 * files}; marginal {marginal:.2f}", file=sys.stderr, flush=True)
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    print("| data client | worker CPU ms per file (marginal) |")
    print("|---|---|")
    for client, values in found.items():
        values.sort()
        print(f"| {client} | {statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f}) |")
    if {"boto3", "obstore"} <= found.keys():
        print(f"| boto3 / obstore | {statistics.median(found['boto3']) / statistics.median(found['obstore']):.2f} |")
    return 0


def run(client: str, size: int, objects: int, threads: int, state: dict) -> dict:
    """In this process: T threads GET each object and PUT it back; CPU and wall time of that loop."""
    get, put = storage_client(client, state)
    keys = [f"in/{size}/{i:06d}" for i in range(objects)]
    run_id = f"{client}-{threads}-{os.getpid()}"

    def one(key: str) -> None:
        data = get(key)
        if len(data) != size:
            raise RuntimeError(f"{key}: read {len(data)} bytes, expected {size}")
        put(f"out/{run_id}/{key}", data)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, keys[: max(threads, objects // 10)]))  # warm-up: connections, credentials, code paths
        cpu, wall = cpu_seconds(), time.monotonic()
        list(pool.map(one, keys))
        cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    return {"client": client, "size": size, "threads": threads, "objects": objects,
            "cpu_ms_per_object": 1000 * cpu / objects, "objects_per_s": objects / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,1048576", help="object sizes in bytes")
    parser.add_argument("--threads", default="16", help="threads per process, like 1,16")
    parser.add_argument("--objects", type=int, default=1000, help="objects per run (1 MB runs take a fifth of it)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="boto3,obstore")
    parser.add_argument("--worker", action="store_true", help="a spotbot worker's CPU per file instead (see above)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_cpu(args.objects, args.runs, args.clients.split(","))
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(run(job["client"], job["size"], job["objects"], job["threads"], job["state"])))
        return 0

    from framework.local import LocalStack
    from framework.storage import Storage
    from framework.settings import Settings
    from pydantic import SecretStr

    home = Path(tempfile.mkdtemp(prefix="spotbot-s3-clients-"))
    stack = LocalStack(home, es_port=0, s3_base_port=0)
    stack.up()
    try:
        state = stack.state()
        storage = Storage(Settings(s3_endpoint_url=state["s3_endpoint_url"], s3_access_key=SecretStr(state["access_key"]),
                                   s3_secret_key=SecretStr(state["secret_key"])))
        storage.ensure_bucket(BUCKET)
        sizes = [int(s) for s in args.sizes.split(",")]
        counts = {size: args.objects if size < 100_000 else max(50, args.objects // 5) for size in sizes}
        for size in sizes:
            with ThreadPoolExecutor(16) as pool:
                payload = os.urandom(size)
                list(pool.map(lambda i: storage.write(BUCKET, f"in/{size}/{i:06d}", payload), range(counts[size])))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        rows = []
        print("| object size | threads | client | CPU ms per object (GET + PUT) | objects/s |")
        print("|---|---|---|---|---|")
        for size in sizes:
            for threads in [int(t) for t in args.threads.split(",")]:
                found: dict[str, list[dict]] = {}
                for _ in range(args.runs):
                    for client in args.clients.split(","):  # interleaved, so a busy moment hurts both alike
                        job = {"client": client, "size": size, "objects": counts[size], "threads": threads, "state": state}
                        out = subprocess.run([sys.executable, "-m", "benchmarks.s3_clients", "--child", json.dumps(job)],
                                             env=env, capture_output=True, text=True, check=True)
                        found.setdefault(client, []).append(json.loads(out.stdout))
                for client, results in found.items():
                    cpu = sorted(r["cpu_ms_per_object"] for r in results)
                    rate = sorted(r["objects_per_s"] for r in results)
                    rows.append({"size": size, "threads": threads, "client": client, "cpu_ms": cpu, "rate": rate})
                    print(f"| {size} | {threads} | {client} | {statistics.median(cpu):.3f} ({cpu[0]:.3f}-{cpu[-1]:.3f}) | "
                          f"{statistics.median(rate):.0f} ({rate[0]:.0f}-{rate[-1]:.0f}) |", flush=True)
                if {"boto3", "obstore"} <= found.keys():
                    ratio = (statistics.median(r["cpu_ms_per_object"] for r in found["boto3"])
                             / statistics.median(r["cpu_ms_per_object"] for r in found["obstore"]))
                    print(f"|  |  | boto3 / obstore CPU | {ratio:.2f} |  |", flush=True)
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
