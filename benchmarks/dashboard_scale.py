"""`python -m benchmarks.dashboard_scale --es-url URL [--files N]`: the dashboard and /metrics over a job of a million files.

Loads N file documents of one job straight into the store (bulk, in the shapes of framework/models.py:
the job document, its chunks, its files: 70% COMPLETED, 5% ERROR in five causes, 1% PROCESSING, the
rest NOT_STARTED, completed over the last two hours), starts a real `spotbot serve` on it and times
what a person and a Prometheus ask for: the jobs page, the job page, a page of files deep in the job,
the error groups and /metrics (its cache off, so every scrape reads the store). The ratio column
compares each with the job's counts aggregation alone (what `spotbot status` costs), measured in the
same run. Writes benchmarks/DASHBOARD.md.

Run it against a real node of its own, e.g.
    deploy/es-node/es-node.sh start opensearch 19261
    .venv/bin/python -m benchmarks.dashboard_scale --es-url http://127.0.0.1:19261
    deploy/es-node/es-node.sh stop opensearch 19261
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from framework.endpoints.process import free_port
from framework.models import Chunk, ChunkStatus, FileStatus, FileTask, Job, JobStatus, Worker, WorkerState, now_ms
from framework.settings import Settings
from framework.signatures import signature
from framework.store import Store

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 100
BULK = 5000
WORKERS = 8
LABELS = ["invoice", "receipt", "letter", "form", "photo", "scan", "table", "handwriting"]
CAUSES = [
    "ValueError: cannot decode image {key}: truncated after {n} bytes",
    "EndpointError: endpoint doc-ocr answered 503 at http://10.0.{n}.7:8080/invocations",
    "TimeoutError: invocation took more than {n}.0 s",
    "KeyError: 'text' missing in answer {hex}",
    "MemoryError: could not allocate {n} MiB",
]
RUNS = 10


def status_of(i: int) -> FileStatus:
    bucket = i % 100
    if bucket < 70:
        return FileStatus.COMPLETED
    if bucket < 75:
        return FileStatus.ERROR
    if bucket < 76:
        return FileStatus.PROCESSING
    return FileStatus.NOT_STARTED


def load(store: Store, job_id: str, files: int) -> float:
    """The job, its chunks and its files, bulk-loaded; returns the seconds it took."""
    started = time.monotonic()
    now = now_ms()
    running_at = now - 2 * 3600 * 1000
    rng = random.Random(15)
    workers = {f"w{b}-{secrets.token_hex(3)}": b for b in range(WORKERS)}
    owners = list(workers)
    job = Job(job_id=job_id, bot="doc_ocr", input_uri="s3://bench/images/", output_uri="s3://bench/out/",
              status=JobStatus.RUNNING, total=files, chunks=-(-files // CHUNK), workers_requested=WORKERS,
              running_at=running_at, created_at=running_at - 60_000,
              workers={w: Worker(id=w, job_id=job_id, batch_id=b, backend="process", state=WorkerState.RUNNING,
                                 started_at=running_at) for w, b in workers.items()})
    store.jobs.create(job)
    engine = store.engine
    ops: list[dict] = []

    def flush() -> None:
        if ops:
            result = engine.bulk(ops)
            if result.get("errors"):
                bad = next(item for item in result["items"] if list(item.values())[0]["status"] >= 300)
                raise SystemExit(f"bulk load failed: {bad}")
            ops.clear()

    for seq in range(-(-files // CHUNK)):
        first = seq * CHUNK
        ids, docs = [], []
        for i in range(first, min(files, first + CHUNK)):
            key = f"images/{i // 10000:03d}/{i:07d}.jpg"
            status = status_of(i)
            owner = owners[seq % WORKERS]
            task = FileTask(job_id=job_id, bot="doc_ocr", bucket="bench", file_key=key,
                            chunk_id=f"{job_id}-{seq:06d}", batch_id=seq % WORKERS, status=status, size=200_000 + i % 5000,
                            created_at=running_at - 30_000)
            if status != FileStatus.NOT_STARTED:
                task.attempts, task.worker_id, task.workers = 1, owner, [owner]
                task.started_at = running_at + (now - running_at) * i // files
            if status == FileStatus.COMPLETED:
                task.duration_ms = rng.randint(80, 4000)
                task.completed_at = task.started_at + task.duration_ms
                task.labels = rng.sample(LABELS, 2)
                task.confidence = round(rng.random(), 4)
                task.output_uri = f"s3://bench/out/{key}.json"
                task.output = {"text": f"page {i}", "labels": task.labels}
            elif status == FileStatus.ERROR:
                task.completed_at = task.started_at + rng.randint(50, 3000)
                task.error = CAUSES[i % len(CAUSES)].format(key=key, n=i % 977, hex=secrets.token_hex(8))
                task.error_signature, task.failures = signature(task.error), 1
            doc_id = FileTask.doc_id(job_id, "bench", key)
            ids.append(doc_id)
            docs.append((doc_id, task))
        done = all(task.status.terminal for _, task in docs)
        chunk = Chunk(chunk_id=f"{job_id}-{seq:06d}", job_id=job_id, seq=seq, batch_id=seq % WORKERS, file_ids=ids,
                      status=ChunkStatus.DONE if done else (ChunkStatus.LEASED if seq % 3 else ChunkStatus.OPEN),
                      lease_owner=owners[seq % WORKERS], lease_expires_at=0 if done else now + 30_000, claims=1,
                      done_at=now - (files - first) if done else None)
        ops += [{"index": {"_index": store.index("chunks"), "_id": chunk.chunk_id}}, chunk.model_dump(mode="json")]
        for doc_id, task in docs:
            ops += [{"index": {"_index": store.file_index(doc_id), "_id": doc_id}}, task.model_dump(mode="json")]
        if len(ops) >= 2 * BULK:
            flush()
            print(f"\rloaded {min(files, first + CHUNK)} files", end="", file=sys.stderr)
    flush()
    store.refresh("jobs", "chunks", "files")
    print(file=sys.stderr)
    return time.monotonic() - started


def timed(call, runs: int = RUNS) -> dict:
    """The first (cold) call, then `runs` more: median, 90th percentile and max, in seconds."""
    cold_started = time.monotonic()
    call()
    cold = time.monotonic() - cold_started
    times = []
    for _ in range(runs):
        started = time.monotonic()
        call()
        times.append(time.monotonic() - started)
    times.sort()
    return {"cold": cold, "median": statistics.median(times), "p90": times[int(0.9 * (len(times) - 1))], "max": times[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--es-url", default=os.environ.get("SPOTBOT_ES_URL", ""), help="a real node (not the embedded one)")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the indices (a second run can skip the load)")
    parser.add_argument("--reuse", action="store_true", help="use indices a --keep run left")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "DASHBOARD.md"))
    args = parser.parse_args()
    if not args.es_url:
        parser.error("--es-url (or SPOTBOT_ES_URL) must name a real Elasticsearch or OpenSearch node")
    prefix, job_id = "bench-dash-", "bench-dash-1m"
    settings = Settings(es_url=args.es_url, index_prefix=prefix, home=Path("/tmp/spotbot-bench-dash"))
    store = Store.from_settings(settings, init=False)
    if not args.reuse:
        store.drop()
        store.init()
        seconds = load(store, job_id, args.files)
        print(f"loaded {args.files} files in {seconds:.0f} s", file=sys.stderr)
    else:
        store.init()
    store.refresh("files")
    files = store.count("files", {"term": {"job_id": job_id}})
    assert files == args.files, f"the index holds {files} files of the job, not {args.files}"

    token = secrets.token_urlsafe(24)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTBOT_")}
    env.update(settings.environment())
    env.update({"SPOTBOT_API_TOKEN": token, "SPOTBOT_METRICS_CACHE_SECONDS": "0",
                "SPOTBOT_S3_ENDPOINT_URL": "http://127.0.0.1:9", "SPOTBOT_S3_ACCESS_KEY": "x", "SPOTBOT_S3_SECRET_KEY": "x"})
    log = open("/tmp/spotbot-bench-dash-serve.log", "wb")
    server = subprocess.Popen([str(Path(sys.executable).parent / "spotbot"), "serve", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"spotbot serve did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.3)

        def get(path: str, **params) -> requests.Response:
            answer = requests.get(base + path, headers=headers, params=params, timeout=120)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
            return answer

        deep_key = f"images/{(args.files - 200) // 10000:03d}/{args.files - 200:07d}.jpg"
        asked = {
            "counts aggregation (`spotbot status`)": lambda: store.jobs.counts(job_id),
            "GET /dashboard (jobs page)": lambda: get("/dashboard"),
            "GET /dashboard/jobs/JOB (job page)": lambda: get(f"/dashboard/jobs/{job_id}"),
            "GET /dashboard/jobs/JOB/charts (its charts, fetched after it)": lambda: get(f"/dashboard/jobs/{job_id}/charts"),
            "GET /dashboard/jobs/JOB/files, ERROR, a page deep in the job": lambda: get(
                f"/dashboard/jobs/{job_id}/files", status="ERROR", after=deep_key),
            "GET /dashboard/jobs/JOB/files?label=invoice&prefix=images/050/": lambda: get(
                f"/dashboard/jobs/{job_id}/files", label="invoice", prefix="images/050/"),
            "GET /jobs/JOB/errors (error groups)": lambda: get(f"/jobs/{job_id}/errors"),
            "GET /metrics (cache off)": lambda: get("/metrics"),
        }
        page = get(f"/dashboard/jobs/{job_id}").text
        assert f"of <b>{args.files}</b> files ended" in page and "Retry this group" not in page, "the job page is not the job's"
        metrics = get("/metrics").text
        assert f'spotbot_job_files{{job_id="{job_id}",bot="doc_ocr",status="ERROR"}} {args.files // 20}' in metrics, \
            "the metrics do not show the loaded counts"
        results = {name: timed(call) for name, call in asked.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if not args.keep:
            store.drop()

    engine = f"{store.engine.name} {store.engine.version or store.engine.info()['version']['number']}"
    base_time = results["counts aggregation (`spotbot status`)"]["median"]
    lines = [
        "# The dashboard and /metrics at a million files",
        "",
        f"`python -m benchmarks.dashboard_scale --es-url URL --files {args.files}` on {engine} (one node from "
        "`deploy/es-node/es-node.sh`, 1 GiB heap), the API as a real `spotbot serve` process on the same machine "
        f"({platform.machine()}, {os.cpu_count()} cores, shared with other work). One job of {args.files:,} file documents "
        "(70% COMPLETED, 5% ERROR in five causes, 1% PROCESSING, the rest NOT_STARTED; "
        f"{-(-args.files // CHUNK):,} chunks, {WORKERS} workers), bulk-loaded in the shapes of framework/models.py. "
        f"Each request: one cold call, then {RUNS} timed calls over HTTP, in seconds. /metrics ran with its cache off "
        "(`SPOTBOT_METRICS_CACHE_SECONDS=0`), so every scrape read the store. The ratio compares the median with the "
        "job's counts aggregation alone (what `spotbot status` costs), measured in the same run.",
        "",
        "| request | cold | median | p90 | max | median / counts aggregation |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in results.items():
        lines.append(f"| {name} | {figures['cold']:.3f} | {figures['median']:.3f} | {figures['p90']:.3f} | "
                     f"{figures['max']:.3f} | {figures['median'] / base_time:.1f} |")
    slowest = max(figures["max"] for name, figures in results.items() if name.startswith("GET"))
    lines += ["", f"Every request under 1 s: {'yes' if slowest < 1 else 'NO'} (slowest single call {slowest:.3f} s).", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
