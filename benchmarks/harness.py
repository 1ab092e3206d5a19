"""The benchmark bench: servers, data sets, endpoints, and the ways of running one job over them."""

from __future__ import annotations

import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from pydantic import SecretStr

from framework.endpoints import EndpointManager
from framework.local import LocalStack
from framework.models import BotConfig, EndpointSpec, JobStatus
from framework.scheduler import Scheduler
from framework.settings import Settings
from framework.storage import S3Location, Storage
from framework.store import Store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUCKET = "bench"
LABELLER = ROOT / "bots" / "image_labeller"

# benchmark endpoints: name -> (module, SPOTBOT_MAX_BATCH_SIZE it is started with; None: the default)
ENDPOINTS = {
    "noop": (HERE / "bots" / "noop_endpoint.py", None),
    "sleep10": (HERE / "bots" / "sleep10_endpoint.py", None),
    "sleep50": (HERE / "bots" / "sleep50_endpoint.py", None),
    "gpu": (HERE / "bots" / "gpu_endpoint.py", None),  # dynamic batching on
    "gpu_unbatched": (HERE / "bots" / "gpu_endpoint.py", 1),
    "labeller": (LABELLER / "endpoint.py", None),
    "labeller_unbatched": (LABELLER / "endpoint.py", 1),
}


def endpoint_name(name: str) -> str:
    return "bench-" + name.replace("_", "-")


def with_concurrency(settings: Settings, concurrency: int | None) -> Settings:
    """Settings whose workers work `concurrency` files at once, once the worker reads SPOTBOT_CONCURRENCY
    (a Settings field then; until then the variable in the workers' environment, see Bench.spotbot)."""
    if concurrency is not None and "concurrency" in Settings.model_fields:
        return settings.model_copy(update={"concurrency": concurrency})
    return settings


class CountingProxy:
    """Forwards HTTP to Elasticsearch and counts the requests: what the clients sent, whoever they were."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.count = 0
        self.kinds: dict[str, int] = {}
        lock = threading.Lock()
        session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = self.command + " " + "/".join(p if p.startswith("_") or i == 0 else "*"
                                                     for i, p in enumerate(self.path.split("?")[0].strip("/").split("/")))
                with lock:
                    proxy.count += 1
                    proxy.kinds[kind] = proxy.kinds.get(kind, 0) + 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = session.request(self.command, upstream + self.path, data=body, headers=headers, timeout=300)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


class Bench:
    def __init__(self, home: Path, es_pid: int | None = None):
        """es_pid: the process of an Elasticsearch node on this machine (SPOTBOT_ES_URL), for its CPU."""
        self.home, self.es_pid = home, es_pid
        self.stack = None
        es_url = os.environ.get("SPOTBOT_ES_URL", "")
        self.stack = LocalStack(home / "stack", es_port=0, s3_base_port=0)
        state = self.stack.up()
        self.es_url = es_url or state["es_url"]
        self.embedded_es = not es_url
        local = self.stack.state()
        self.base = Settings(
            home=home / "spotbot", es_url=self.es_url, s3_endpoint_url=local["s3_endpoint_url"],
            s3_access_key=SecretStr(local["access_key"]), s3_secret_key=SecretStr(local["secret_key"]),
            index_prefix="bench-", lease_seconds=10, poll_seconds=0.5, chunk_size=100,
        )
        self.storage = Storage(self.base)
        self.storage.ensure_bucket(BUCKET)
        self.store = Store.from_settings(self.base)
        self.endpoints: dict[str, str] = {}
        self.proxies: dict[float, object] = {}

    def close(self) -> None:
        manager = EndpointManager(self.base, self.store)
        for endpoint, _ in manager.list():
            manager.backend(endpoint.backend).stop(endpoint)
        for proxy in self.proxies.values():
            proxy.close()
        self.stack.down()

    def slow_s3(self, delay_ms: float) -> Settings:
        """The base settings with S3 behind a proxy that delays every request by delay_ms (cloud S3's latency)."""
        from .delay_proxy import DelayProxy

        if delay_ms not in self.proxies:
            self.proxies[delay_ms] = DelayProxy(self.base.s3_endpoint_url, delay_ms)
        return self.base.model_copy(update={"s3_endpoint_url": self.proxies[delay_ms].url})

    def reset(self) -> None:
        """Empty the Elasticsearch side (spotbot's indices and the ancestor's); endpoints keep running."""
        found = (self.store.endpoints.get(endpoint_name(name)) for name in self.endpoints)
        running = [record[0] for record in found if record]
        self.store.drop()
        self.store.engine.delete_index("ancestor-files")
        self.store.init()
        for endpoint in running:  # still serving: keep their records so they are reused, not started again
            self.store.endpoints.reserve(endpoint)

    # --- data --------------------------------------------------------------------------------

    def dataset(self, n: int) -> tuple[str, Path]:
        """A prefix of n tiny text files (uploaded once), and a file listing their keys."""
        prefix = f"d{n}/"
        keys = [f"{prefix}{i // 1000:04d}/f{i:07d}.txt" for i in range(n)]
        listed = sum(len(page) for page in self.storage.pages(S3Location(BUCKET, prefix)))
        if listed < n:
            print(f"  uploading {n} files to s3://{BUCKET}/{prefix} ...", file=sys.stderr, flush=True)
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda key: self.storage.write(BUCKET, key, f"text of {key}".encode()), keys))
        keys_file = self.home / f"keys-{n}.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        return prefix, keys_file

    def photos(self, n: int) -> tuple[str, Path]:
        """A prefix of n real photos (JPEG, derived from scikit-image's; uploaded once), and a file listing their keys."""
        from .photos import derived

        prefix = f"photos{n}/"
        keys = [f"{prefix}p{i:05d}.jpg" for i in range(n)]
        if sum(len(page) for page in self.storage.pages(S3Location(BUCKET, prefix))) < n:
            print(f"  uploading {n} photos to s3://{BUCKET}/{prefix} ...", file=sys.stderr, flush=True)
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda item: self.storage.write(BUCKET, item[0], item[1], "image/jpeg"),
                              zip(keys, derived(n))))
        keys_file = self.home / f"photo-keys-{n}.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        return prefix, keys_file

    def endpoint(self, name: str) -> str:
        """URL of a running benchmark endpoint (one of ENDPOINTS), started with its batching setting."""
        if name not in self.endpoints:
            module, batch = ENDPOINTS[name]
            settings = self.base if batch is None else self.base.model_copy(update={"max_batch_size": batch})
            spec = EndpointSpec(name=endpoint_name(name), image=f"python:{module}")
            self.endpoints[name] = EndpointManager(settings, self.store).ensure_one(spec).url
        return self.endpoints[name]

    def register(self, endpoint: str) -> str:
        self.endpoint(endpoint)
        module, _ = ENDPOINTS[endpoint]
        task, file_types = (LABELLER / "task.py", ".jpg") if module.parent == LABELLER else (HERE / "bots" / "task.py", ".txt")
        config = BotConfig(name=f"bench_{endpoint}", file_types=file_types, bot_image=f"python:{task}",
                           endpoint_name=endpoint_name(endpoint), endpoint_ecr_image_path=f"python:{module}")
        self.store.bots.register(config)
        return config.name

    def env(self, settings: Settings | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTBOT_")}
        env.update((settings or self.base).environment())
        env["PYTHONPATH"] = str(HERE.parent)
        env.update(extra)
        return env

    # --- the ways of running a job ------------------------------------------------------------

    def raw(self, n: int, workers: int, endpoint: str, *, threads: int = 1, settings: Settings | None = None,
            steady: bool = False) -> float:
        """Files/s of the per-file work alone in `workers` plain processes of `threads` threads each: from their
        start to their end, or (steady) from their first file's start to their last file's end."""
        _, keys_file = self.dataset(n)
        env = self.env(settings, BENCH_BUCKET=BUCKET, BENCH_OUT=f"raw-{uuid.uuid4().hex[:6]}",
                       BENCH_ENDPOINT=self.endpoint(endpoint))
        started = time.monotonic()
        children = [subprocess.Popen([sys.executable, "-m", "benchmarks.raw", str(keys_file), str(i), str(workers),
                                      str(threads)], env=env, stdout=subprocess.PIPE, text=True)
                    for i in range(workers)]
        outputs = [child.communicate()[0] for child in children]
        if any(child.returncode for child in children):
            raise RuntimeError("a raw worker failed")
        spans = [json.loads(output) for output in outputs]
        if steady:
            return n / (max(span["ended"] for span in spans) - min(span["began"] for span in spans))
        return n / (time.monotonic() - started)

    def ray(self, n: int, endpoint: str, *, actors: int, threads: int, settings: Settings | None = None,
            keys_file: Path | None = None) -> dict:
        """Files/s of the peer, Ray Data (benchmarks/ray_peer.py), over the same files and endpoint."""
        keys_file = keys_file or self.dataset(n)[1]
        env = self.env(settings, BENCH_BUCKET=BUCKET, BENCH_OUT=f"ray-{uuid.uuid4().hex[:6]}",
                       BENCH_ENDPOINT=self.endpoint(endpoint))
        out = subprocess.run([sys.executable, "-m", "benchmarks.ray_peer", str(keys_file), "--actors", str(actors),
                              "--threads", str(threads)], env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"the Ray peer failed: {out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        # rate: steady, the actors' start left out (Ray's best figure); pipeline_rate: with it
        return {"rate": result["files"] / result["steady_seconds"], "pipeline_rate": result["files"] / result["seconds"],
                **result}

    def spotbot(self, n: int, workers: int, endpoint: str, *, settings: Settings | None = None,
                kill_at: float | None = None, concurrency: int | None = None, prefix: str | None = None) -> dict:
        """One spotbot job end to end with real worker processes; files/s while running, and more.

        concurrency: files in flight per worker (SPOTBOT_CONCURRENCY), given every way the worker may
        take it: the setting, the job's submit argument, and the variable in the workers' environment.
        """
        settings = with_concurrency(settings or self.base, concurrency)
        prefix = prefix or self.dataset(n)[0]
        self.reset()  # every run from an empty server: the embedded one slows down as its indices grow
        bot = self.register(endpoint)
        # the scheduler and its workers use `settings` (maybe through a counting proxy); watching uses our own store
        scheduler = Scheduler(settings, Store.from_settings(settings), self.storage)
        store = self.store
        extra = {}
        if concurrency is not None and "concurrency" in inspect.signature(scheduler.submit).parameters:
            extra["concurrency"] = concurrency
        started = time.monotonic()
        saved = os.environ.get("SPOTBOT_CONCURRENCY")
        if concurrency is not None:  # the process launcher passes its own environment on to the workers
            os.environ["SPOTBOT_CONCURRENCY"] = str(concurrency)
        try:
            job = scheduler.submit(bot, f"s3://{BUCKET}/{prefix}", f"s3://{BUCKET}/out-{uuid.uuid4().hex[:6]}/",
                                   workers=workers, **extra)
        finally:
            if saved is None:
                os.environ.pop("SPOTBOT_CONCURRENCY", None)
            else:
                os.environ["SPOTBOT_CONCURRENCY"] = saved
        killed_at = None
        while not job.status.terminal:
            time.sleep(1.0)
            if kill_at is not None and killed_at is None:
                counts = store.jobs.counts(job.job_id)
                victim = self.working(job.job_id) if counts["COMPLETED"] >= kill_at * n else None
                if victim:
                    os.kill(victim, 9)
                    killed_at = time.monotonic() - started
            job = store.jobs.get(job.job_id)
        if job.status != JobStatus.COMPLETED or job.counts.get("COMPLETED") != n:
            raise RuntimeError(f"benchmark job ended {job.status.value} with {job.counts}")
        return {"rate": n / ((job.finished_at - job.running_at) / 1000), "seconds": time.monotonic() - started,
                "job_id": job.job_id, "killed_at": killed_at, "steady_rate": self.steady_rate(job.job_id, n)}

    def steady_rate(self, job_id: str, n: int) -> float | None:
        """Files/s from the job's first file begun to its last file finished (its workers' start and the
        job's finalization left out): the span the raw floor and Ray's 'steady' figure are taken over."""
        self.store.refresh("files")
        found = self.store.engine.search(self.store.target("files"), {"size": 0, "query": {"term": {"job_id": job_id}},
                                                                      "aggs": {"first": {"min": {"field": "started_at"}},
                                                                               "last": {"max": {"field": "completed_at"}}}})
        first, last = (found.get("aggregations", {}).get(name, {}).get("value") for name in ("first", "last"))
        return n / ((last - first) / 1000) if first and last and last > first else None

    def working(self, job_id: str) -> int | None:
        """The pid of a worker that holds a chunk now (killing an idle one would cost nothing)."""
        self.store.refresh("chunks")
        hits = self.store.engine.search(self.store.index("chunks"), {"size": 100, "query": {"bool": {"filter": [
            {"term": {"job_id": job_id}}, {"term": {"status": "LEASED"}}]}}})["hits"]["hits"]
        owners = {hit["_source"]["lease_owner"] for hit in hits}
        workers = self.store.jobs.get(job_id).workers
        return next((workers[owner].pid for owner in sorted(owners) if owner in workers and workers[owner].pid), None)

    def ancestor(self, n: int, workers: int, endpoint: str, es_url: str | None = None) -> float:
        """Files/s of the ancestor's algorithm over the same files."""
        _, keys_file = self.dataset(n)
        self.reset()
        job_id = uuid.uuid4().hex[:8]
        env = self.env(BENCH_BUCKET=BUCKET, BENCH_OUT=f"anc-{job_id}", BENCH_ENDPOINT=self.endpoint(endpoint),
                       BENCH_ES_URL=es_url or self.es_url)
        subprocess.run([sys.executable, "-m", "benchmarks.ancestor", "record", str(workers), job_id],
                       input=keys_file.read_text(), text=True, env=env, check=True)
        started = time.monotonic()
        children = [subprocess.Popen([sys.executable, "-m", "benchmarks.ancestor", "work", str(i), job_id], env=env,
                                     stdout=subprocess.PIPE, text=True) for i in range(workers)]
        done = sum(int(child.communicate()[0]) for child in children)
        if done != n:
            raise RuntimeError(f"the ancestor's workers did {done} of {n} files")
        return n / (time.monotonic() - started)

    def scan(self, n: int) -> dict:
        """Scan + record of n keys in a fresh process: files/s and its peak memory; and raw listing speed."""
        prefix, _ = self.dataset(n)
        started = time.monotonic()
        listed = sum(len(page) for page in self.storage.pages(S3Location(BUCKET, prefix)))
        listing = listed / (time.monotonic() - started)
        settings = self.base.model_copy(update={"index_prefix": f"scan{uuid.uuid4().hex[:6]}-"})
        out = subprocess.run([sys.executable, "-m", "benchmarks.scan", prefix], env=self.env(settings),
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        Store.from_settings(settings).drop()
        return {"listing_rate": listing, **result}

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far, by part: this process (the submitter and its scan), its reaped
        children (the workers of any system, once waited for), and the servers and endpoints."""
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        parts = {"submitter": own.ru_utime + own.ru_stime, "workers": children.ru_utime + children.ru_stime,
                 "Elasticsearch": self.es_cpu_seconds() or 0.0, "S3": process_cpu(self.stack.state().get("s3_pid"))}
        endpoint_pids = [record[0].pid for record in (self.store.endpoints.get(endpoint_name(name)) for name in self.endpoints)
                         if record and record[0].pid]
        parts["endpoint"] = sum(process_cpu(pid) for pid in endpoint_pids)
        return parts

    def profile(self, system: str, n: int, workers: int, endpoint: str = "noop", settings: Settings | None = None) -> dict:
        """One run of a system with the CPU each part spent per file (ms), and its files/s."""
        before = self.cpu()
        if system == "raw":
            rate = self.raw(n, workers, endpoint)
        elif system == "ancestor":
            rate = self.ancestor(n, workers, endpoint)
        else:
            result = self.spotbot(n, workers, endpoint, settings=settings)
            rate = result["rate"]
            for worker in self.store.jobs.get(result["job_id"]).workers.values():
                reap(worker.pid)  # their CPU reaches RUSAGE_CHILDREN once they are waited for
        after = self.cpu()
        per_file = {part: (after[part] - before[part]) * 1000 / n for part in after}
        return {"rate": rate, **per_file, "total": sum(per_file.values())}

    def es_cpu_seconds(self) -> float | None:
        """CPU seconds the Elasticsearch server has used so far: the embedded one, or the node of es_pid
        (a node's JVM, its threads included); None for a server elsewhere."""
        if not self.embedded_es:
            return process_cpu(self.es_pid) if self.es_pid else None
        data_dir = str((self.home / "stack" / "es").resolve())
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "noida-db" in cmdline and data_dir in cmdline and " start" in cmdline:
                    return process_cpu(int(pid))
            except OSError:
                continue
        return None


def process_cpu(pid: int | None) -> float:
    """A live process's CPU seconds (user + system, its threads included); 0 when it is gone."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reap(pid: int | None, seconds: float = 60.0) -> None:
    """Wait for a child that has exited or is about to (a worker whose job ended)."""
    deadline = time.monotonic() + seconds
    while pid and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return  # reaped already (its CPU is counted), or not our child
        time.sleep(0.05)


def temporary_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="spotbot-bench-"))


def append_figure(out: Path, lines: list[str]) -> None:
    """Add a figure's Markdown to a results file (RESULTS.md keeps every figure taken) and print it."""
    text = "\n".join(lines) + "\n"
    with out.open("a") as file:
        file.write(text)
    print(text)
