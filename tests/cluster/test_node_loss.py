"""Losing a node of a real three-node OpenSearch cluster in the middle of a job.

The store's indices have one replica each, the client knows all three members. The member
holding the files index's primary shard (the one every result write goes to) is killed with
SIGKILL while the workers write results: the replica on another member is promoted, the client
fails over, and the workers retry what failed meanwhile. The job must end COMPLETED with every
file once and one output each. The test measures how long work stalled and prints it
(`make test-cluster` runs pytest with -s).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

from conftest import cli_env, register_echo, spotbot, upload

from framework.errors import SpotbotError

from faults.conftest import background_submit, calls_by_key, check_invariants, finish, wait_for


class Progress:
    """When each call of the echo bot's task appeared in its calls log (sampled every 20 ms), and by which worker."""

    def __init__(self, path: Path):
        self.path = path
        self.calls: list[tuple[float, int]] = []  # (monotonic time seen, worker pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            stopping = self._stop.is_set()
            lines = self.path.read_text().splitlines() if self.path.exists() else []
            now = time.monotonic()
            self.calls.extend((now, json.loads(line)["pid"]) for line in lines[len(self.calls):] if line.endswith("}"))
            if stopping:
                return
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __len__(self) -> int:
        return len(self.calls)

    def span(self) -> float:
        """First call to last: the time the job's files were being worked."""
        return self.calls[-1][0] - self.calls[0][0]

    def longest_gap(self, after: float = 0.0) -> float:
        """The longest time without any new call, among the gaps that end after `after`."""
        times = [t for t, _ in self.calls]
        return max((b - a for a, b in zip(times, times[1:]) if b > after), default=0.0)

    def longest_gap_of_a_worker(self, after: float = 0.0) -> float:
        by_worker: dict[int, list[float]] = {}
        for t, pid in self.calls:
            by_worker.setdefault(pid, []).append(t)
        return max((b - a for times in by_worker.values() for a, b in zip(times, times[1:]) if b > after), default=0.0)


class WriteProbe:
    """Writes a small document to the files index every 50 ms through the store's own client (all three
    members), and notes when each write came back: the longest time between two acknowledged writes is how
    long the files index took no writes, whatever the workers happened to be doing then."""

    def __init__(self, store, index: str):
        self.store, self.index = store, index
        self.acknowledged: list[float] = []
        self.failed: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:  # a job of its own: the job under test's files and counts are untouched
                self.store.engine.put(self.index, f"probe-{n}", {"job_id": "write-probe", "file_key": str(n)})
                self.acknowledged.append(time.monotonic())
            except SpotbotError as exc:
                self.failed[type(exc).__name__] += 1
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def longest_gap(self, after: float) -> float:
        times = self.acknowledged
        return max((b - a for a, b in zip(times, times[1:]) if b > after), default=0.0)


def run_job(settings, storage, bucket: str, tmp_path: Path, job_id: str, files: dict[str, str], during=None):
    """Submit the echo bot over `files` with two workers under --wait; `during(progress)` runs while it works."""
    upload(storage, bucket, files)
    progress = Progress(tmp_path / f"{job_id}-calls.jsonl")
    started = time.monotonic()
    job = background_submit(bucket, cli_env(settings, ECHO_CALLS_LOG=str(progress.path)), "--bots", "2", "--job-id", job_id)
    try:
        outcome = during(progress) if during else None
        code, data, err = finish(job, timeout=300)
    finally:
        if job.poll() is None:  # the test failed while the job ran: stop its workers too, not only the submit
            spotbot(settings, "cancel", job_id, timeout=120)
            job.kill()
            job.wait()
        progress.stop()
    assert code == 0, err
    return progress, time.monotonic() - started, outcome


def failovers(caplog, port: int) -> int:
    """How often the store's client (opensearch-py under it) gave up on the member at `port` and sent the
    request to another one: its warning when it puts a connection on timeout. The probe's client counts here;
    the workers' run the same code (their logs keep the client's warnings out)."""
    needle = f"<Urllib3HttpConnection: http://127.0.0.1:{port}> has failed"
    return sum(1 for record in caplog.records if record.name == "opensearch" and needle in record.getMessage())


def test_losing_the_node_with_the_files_primary_mid_job(settings, store, storage, storage_bucket_pair, tmp_path,
                                                       whole_cluster, caplog):
    cluster = whole_cluster
    files_index = store.index("files")
    register_echo(settings)
    files = {f"in/{i:03d}.txt": "SLOW 0.25" for i in range(60)}  # about 8 s of work for two workers
    calm_bucket, fault_bucket = storage_bucket_pair
    cluster.wait_green(f"{settings.index_prefix}*")

    # Given the job run once undisturbed, for comparison
    calm, calm_total, _ = run_job(settings, storage, calm_bucket, tmp_path, "calm", files)
    check_invariants(settings, store, storage, calm_bucket, "calm", list(files), "COMPLETED")
    cluster.wait_green(f"{settings.index_prefix}*")  # both copies of every shard in place before the fault

    # When the same job runs again and, once a third of its files are worked, the member holding the
    # files index's primary shard is killed
    def kill_the_primary(progress: Progress) -> dict:
        wait_for(lambda: len(progress) >= len(files) // 3, 120, "a third of the files to be worked")
        victim, manager = cluster.primary_port(files_index), cluster.manager_port()
        before, killed_at = len(progress), time.monotonic()  # taken before es-node.sh sends SIGKILL: no gap is missed
        cluster.kill(victim)
        return {"victim": victim, "was_manager": victim == manager, "killed_at": killed_at, "calls_before": before}

    probe = WriteProbe(store, files_index)
    try:
        fault, fault_total, kill = run_job(settings, storage, fault_bucket, tmp_path, "fault", files, during=kill_the_primary)
    finally:
        probe.stop()

    # Then the job completed with every file once, one output each, and no file worked twice
    rows, _ = check_invariants(settings, store, storage, fault_bucket, "fault", list(files), "COMPLETED")
    assert all(r["status"] == "COMPLETED" and r["attempts"] == 1 for r in rows)
    assert calls_by_key(Path(fault.path)) == {key: 1 for key in files}
    assert kill["calls_before"] < len(files)  # the kill landed while work remained
    # the killed member's replica took over: the primary is on one of the two members left
    assert cluster.primary_port(files_index) != kill["victim"]
    health = cluster.health()
    assert health["number_of_nodes"] == 2 and health["status"] in ("green", "yellow")

    moved = failovers(caplog, kill["victim"])
    assert moved >= 1  # the store's client did meet the dead member, and went on with the two others

    after = kill["killed_at"]
    role = "files primary, elected cluster manager" if kill["was_manager"] else "files primary"
    figures = (
        f"\nnode loss: killed node-{kill['victim']} ({role}) after {kill['calls_before']} of {len(files)} files; "
        f"no file progress for {fault.longest_gap(after=after):.1f}s around the kill (one worker idle at most "
        f"{fault.longest_gap_of_a_worker(after=after):.1f}s; longest pause of the undisturbed run {calm.longest_gap():.1f}s); "
        f"files worked in {fault.span():.1f}s vs {calm.span():.1f}s undisturbed ({fault.span() - calm.span():+.1f}s); "
        f"job {fault_total:.1f}s vs {calm_total:.1f}s submit to end (the undisturbed run also started the endpoint); "
        f"the files index took no write for {probe.longest_gap(after=after):.2f}s (a write every 50 ms; "
        f"{sum(probe.failed.values())} failed: {dict(probe.failed) or 'none'})"
    )
    figures += f"\nthe probe's client failed over from node-{kill['victim']} {moved} time(s)"
    print(figures)
