"""A recorded pid is signalled only while it is still the process that was recorded (issue 14, item 11).

Once a worker, an endpoint or the embedded S3 server exits, the kernel may give its pid to any other
process. Here real processes stand in for both sides: a stranger that now holds a recorded pid (each in a
session of its own, so the process-group signal of the old code would reach it) and a process that shows
the recorded identity. No server is needed: the stops read only what was recorded and /proc.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from framework.endpoints.process import SERVING_MODULE, ProcessEndpoints
from framework.launchers.process import ProcessLauncher
from framework.local import LocalStack
from framework.models import Endpoint, EndpointStatus, Worker, WorkerState
from framework.settings import Settings

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def processes():
    """Start real sleeping processes (each its own session and process group); all are ended afterwards."""
    started: list[subprocess.Popen] = []

    def start(*arguments: str, **env: str) -> subprocess.Popen:
        process = subprocess.Popen([*SLEEP, *arguments], env={**os.environ, **env}, start_new_session=True,
                                   stdin=subprocess.DEVNULL)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def survives(process: subprocess.Popen, seconds: float = 1.0) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def worker(pid: int, worker_id: str = "w-0123") -> Worker:
    return Worker(id=worker_id, job_id="job-1", batch_id=0, backend="process", state=WorkerState.RUNNING, pid=pid,
                  host=socket.gethostname())


def test_a_worker_pid_now_held_by_another_process_is_not_signalled(tmp_path, processes):
    launcher = ProcessLauncher(Settings(home=tmp_path))  # a launcher of another command: it has no child of its own

    # Given a worker recorded with a pid that now belongs to another process (another worker's, even)
    stranger = processes(SPOTBOT_WORKER_ID="w-other")
    recorded = worker(stranger.pid)

    # When the worker is stopped, then the stranger is not signalled, and the worker counts as lost
    launcher.stop(recorded)
    assert survives(stranger), f"process {stranger.pid}, not the worker, was killed"
    assert launcher.poll(recorded) == (WorkerState.LOST, None)

    # And a process that is that worker (its environment says so) is stopped with SIGTERM
    ours = processes(SPOTBOT_WORKER_ID="w-0123")
    assert launcher.poll(worker(ours.pid)) == (WorkerState.RUNNING, None)
    launcher.stop(worker(ours.pid))
    assert ours.wait(timeout=10) == -signal.SIGTERM


def test_an_endpoint_pid_now_held_by_another_process_is_not_signalled(tmp_path, processes):
    backend = ProcessEndpoints(Settings(home=tmp_path))

    def endpoint(pid: int) -> Endpoint:
        return Endpoint(name="echo-upper", backend="process", image="python:endpoint.py",
                        status=EndpointStatus.IN_SERVICE, url="http://127.0.0.1:18123", pid=pid, host=backend.host)

    # Given an endpoint whose pid now belongs to a stranger, or to the server of another endpoint (another port)
    stranger = processes()
    other_endpoint = processes("-m", SERVING_MODULE, "--port", "18124")

    # When it is stopped, then neither is signalled
    backend.stop(endpoint(stranger.pid))
    backend.stop(endpoint(other_endpoint.pid))
    assert survives(stranger) and survives(other_endpoint, 0.1)

    # And this endpoint's own server (the serving module on its port) is stopped
    ours = processes("-m", SERVING_MODULE, "--port", "18123")
    backend.stop(endpoint(ours.pid))
    assert ours.wait(timeout=10) == -signal.SIGTERM


def test_the_local_s3_pid_now_held_by_another_process_is_not_signalled(tmp_path, processes):
    stack = LocalStack(tmp_path / "stack")
    stack.home.mkdir()

    def recorded(pid: int) -> None:
        stack.state_path.write_text(json.dumps({"s3_pid": pid}))

    # Given a stack whose recorded S3 pid now belongs to a stranger, or to the S3 server of another stack
    stranger = processes()
    other_stack = processes("mini", f"-dir={tmp_path / 'other' / 's3'}")
    for process in (stranger, other_stack):
        recorded(process.pid)

        # When its S3 server is stopped, then the process is not signalled
        stack.stop_s3()
        assert survives(process), f"process {process.pid}, not this stack's S3 server, was killed"

    # And this stack's S3 server (weed mini on its data folder) is stopped
    ours = processes("mini", f"-dir={stack.home / 's3'}")
    recorded(ours.pid)
    stack.stop_s3()
    assert ours.wait(timeout=10) == -signal.SIGTERM
