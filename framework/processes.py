"""Signalling a recorded pid only while it is still the process that was recorded.

A pid kept on a worker, an endpoint or the embedded stack's state outlives its process: once
that exits, the kernel may give the number to any other process of the machine. So before
every signal (the SIGTERM, and again before a SIGKILL that follows it) the process must show
that it is the one recorded: by its command line (an endpoint's serving module and port, the
S3 server's data folder) or, for a worker, by the worker id in the environment it started with.
Linux's /proc answers both; a process whose /proc cannot be read is not ours to signal.

A check and the signal after it are two steps: a pid given away between them (microseconds)
would still be signalled. pidfds would close that gap for one process, not for the process
group the signals go to.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable


def pid_alive(pid: int | None) -> bool:
    """Whether a process of that pid runs (a zombie, exited and waiting for its parent, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def command_line(pid: int) -> list[str] | None:
    """The process's arguments, or None when it is gone or cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def environment(pid: int) -> dict[str, str] | None:
    """The environment the process started with, or None when it is gone or not ours to read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {name: value for name, _, value in pairs}


def runs(pid: int | None, *arguments: str) -> bool:
    """Whether process pid is alive and has every one of these among its arguments."""
    if not pid_alive(pid):
        return False
    found = command_line(pid)
    return found is not None and all(argument in found for argument in arguments)


def is_worker(pid: int | None, worker_id: str) -> bool | None:
    """Whether process pid is the worker of that id (launched with SPOTBOT_WORKER_ID=worker_id); None when
    that cannot be told (its environment is not ours to read)."""
    if not pid_alive(pid):
        return False
    found = environment(pid)
    return None if found is None else found.get("SPOTBOT_WORKER_ID") == worker_id


def stop_group(pid: int | None, is_ours: Callable[[int], bool], *, grace: float = 5.0) -> bool:
    """SIGTERM to the process group of pid, then SIGKILL if it is still there after grace seconds, each signal
    sent only while is_ours(pid) holds. Whether anything was signalled."""
    if not pid or not is_ours(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    if is_ours(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True
