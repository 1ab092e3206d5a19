"""`spotbot logs` with the process launcher: each worker's log file, one worker or all of them."""

from __future__ import annotations

from conftest import register_echo, spotbot, submit, upload


def test_logs_show_each_workers_output(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {f"in/{i}.txt": f"text {i}" for i in range(6)})
    code, job, stderr = submit(settings, bucket, "--bots", "2")
    assert code == 0, stderr
    workers = sorted(store.jobs.get(job["job_id"]).workers)
    assert len(workers) == 2

    every = spotbot(settings, "logs", job["job_id"])
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    assert lines and {line.split("] ", 1)[0].lstrip("[") for line in lines} <= set(workers)
    assert any(" spotbot.worker: worker " in line and "file(s) worked" in line for line in lines)

    one = spotbot(settings, "logs", job["job_id"], "--worker", workers[0], "--follow")  # it ended: follow returns
    assert one.returncode == 0 and not one.stdout.startswith("[")
    assert one.stdout.splitlines() == [line.split("] ", 1)[1] for line in lines if line.startswith(f"[{workers[0]}] ")]

    unknown = spotbot(settings, "logs", job["job_id"], "--worker", "w7-none")
    assert unknown.returncode == 5 and "has no worker 'w7-none'" in unknown.stderr
    missing = spotbot(settings, "logs", "no-such-job")
    assert missing.returncode == 5 and "Traceback" not in missing.stderr
