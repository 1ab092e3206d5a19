"""How much concurrency the endpoint server takes: `python -m benchmarks.serving`.

Starts framework.endpoints.serving on a benchmark endpoint module (a real process), then C
callers (threads spread over client processes, each thread with its own keep-alive connection,
as a worker's threads have) post as fast as their answers come back, for some seconds. Reports
requests/s, the ideal for the endpoint's latency (callers / latency), the share of it reached,
the median and 99th-percentile latency, and the server's own CPU ms per request (user + system
from /proc). The server is the bottleneck where the share falls while the machine has CPU left.

    python -m benchmarks.serving                                # noop and sleep50, 1-128 callers
    python -m benchmarks.serving --endpoints sleep50 --callers 32,64 --seconds 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from framework.endpoints.process import free_port

HERE = Path(__file__).resolve().parent
LATENCY = {"noop": 0.0, "sleep50": 0.050, "sleep10": 0.010}


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(port: int, threads: int, start_at: float, seconds: float) -> None:
    """One client process: `threads` callers in a loop from wall-clock start_at for `seconds`; prints the
    wall-clock times its calls ended and their latencies as JSON."""
    body = json.dumps({"text": "x" * 200}).encode()
    ended: list[list[tuple[float, float]]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def run(i: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < start_at + seconds:
            began = time.monotonic()
            try:
                connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    errors[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            ended[i].append((time.time(), time.monotonic() - began))

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"ended": [x for per in ended for x in per], "errors": sum(errors)}))


def measure(endpoint: str, callers: int, seconds: float, env: dict[str, str]) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "framework.endpoints.serving", "--handler",
                               f"python:{HERE / 'bots' / f'{endpoint}_endpoint.py'}", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/ping")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        processes = min(callers, 4)  # the callers' own Python must not be what limits the figure
        shares = [callers // processes + (i < callers % processes) for i in range(processes)]
        warmup = 1.0
        start_at = time.time() + 2.0  # every client has imported and connected by then
        clients = [subprocess.Popen([sys.executable, "-m", "benchmarks.serving", "--client", str(port), str(n),
                                     str(start_at), str(warmup + seconds)], env=env, stdout=subprocess.PIPE, text=True)
                   for n in shares]
        window = (start_at + warmup, start_at + warmup + seconds)
        time.sleep(max(0.0, window[0] - time.time()))
        cpu_before = process_cpu(server.pid)
        time.sleep(max(0.0, window[1] - time.time()))
        cpu = process_cpu(server.pid) - cpu_before
        outputs = [json.loads(c.communicate()[0]) for c in clients]
    finally:
        server.terminate()
        server.wait()
    inside = [latency for out in outputs for at, latency in out["ended"] if window[0] <= at < window[1]]
    latencies, done = sorted(inside), len(inside)
    rate = done / seconds
    ideal = callers / LATENCY[endpoint] if LATENCY[endpoint] else None
    return {"endpoint": endpoint, "callers": callers, "rate": rate, "ideal": ideal,
            "share": rate / ideal if ideal else None, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (done - 1))], "server_cpu_ms": 1000 * cpu / max(1, done),
            "errors": sum(out["errors"] for out in outputs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", default="noop,sleep50")
    parser.add_argument("--callers", default="1,8,32,64,128")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client(int(args.client[0]), int(args.client[1]), float(args.client[2]), float(args.client[3]))
        return 0
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    print("| endpoint | callers | requests/s | ideal | share | p50 ms | p99 ms | server CPU ms/request | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for endpoint in args.endpoints.split(","):
        for callers in map(int, args.callers.split(",")):
            r = measure(endpoint, callers, args.seconds, env)
            share = "" if r["share"] is None else f"{r['share']:.2f}"
            ideal = "" if r["ideal"] is None else f"{r['ideal']:.0f}"
            print(f"| {endpoint} | {callers} | {r['rate']:.0f} | {ideal} | {share} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                  f"{r['server_cpu_ms']:.3f} | {r['errors']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
