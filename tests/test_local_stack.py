"""The embedded stack's own promises: a restarted server answers where its clients already look."""

from __future__ import annotations

import json
import os
import subprocess
from urllib.parse import urlparse

from conftest import BOTS, SPOTBOT, wait_for
from pydantic import SecretStr

from framework.endpoints.process import ProcessEndpoints, pid_alive
from framework.local import LocalStack, _ephemeral_low
from framework.settings import Settings
from framework.storage import Storage
from framework.store import Store


def test_servers_listen_below_the_ephemeral_range_and_a_restart_keeps_the_address(local_stack):
    before = local_stack.up()
    low = _ephemeral_low()
    s3_port = urlparse(before["s3_endpoint_url"]).port
    base = local_stack.state()["s3_base_port"]
    # an outgoing connection never takes one of these ports while the server is down
    assert urlparse(before["es_url"]).port < low
    assert base + 7 < low and base + 10007 < low and s3_port == base + 3

    local_stack.stop_s3()
    assert not local_stack.status()["s3_running"]
    after = local_stack.up()
    assert after["s3_running"] and after["s3_endpoint_url"] == before["s3_endpoint_url"]


def test_local_down_stops_the_workers_and_endpoints_of_its_jobs(tmp_path):
    # Given an embedded stack of its own, and a job whose two workers are busy with slow files
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTBOT_")}
    env.update(SPOTBOT_HOME=str(tmp_path / "home"), SPOTBOT_POLL_SECONDS="0.2", SPOTBOT_FLUSH_SECONDS="0.5",
               SPOTBOT_CHUNK_SIZE="2", SPOTBOT_CONCURRENCY="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([SPOTBOT, *args], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    up = run("local", "up", "--json")
    assert up.returncode == 0, up.stderr
    try:
        settings = Settings.from_env(env)
        storage = Storage(settings)
        storage.ensure_bucket("down-test")
        for i in range(6):
            storage.write("down-test", f"in/{i}.txt", b"SLOW 30")
        config = tmp_path / "echo.json"
        config.write_text(json.dumps({"name": "echo", "file_types": ".txt", "bot_image": f"python:{BOTS / 'echo' / 'task.py'}",
                                      "endpoint_name": "echo-upper",
                                      "endpoint_ecr_image_path": f"python:{BOTS / 'echo' / 'endpoint.py'}"}))
        assert run("bots", "register", str(config)).returncode == 0
        started = run("submit", "--bot", "echo", "--input", "s3://down-test/in/", "--output", "s3://down-test/out/",
                      "--bots", "2", "--json")
        assert started.returncode == 0, started.stderr
        job_id = json.loads(started.stdout)["job_id"]
        store = Store.from_settings(settings)
        wait_for(lambda: store.jobs.progress(job_id)[1] == 2, 60, "both workers to be working a file")
        pids = [w.pid for w in store.jobs.get(job_id).workers.values()]
        endpoint_pid = store.endpoints.get("echo-upper")[0].pid

        # When the stack is brought down
        down = run("local", "down")

        # Then it says what it stopped, and no worker or endpoint of it is left running
        assert down.returncode == 0, down.stderr
        assert f"stopped 2 worker(s) of job(s) {job_id}, 1 endpoint(s)" in down.stderr
        assert not any(pid_alive(pid) for pid in [*pids, endpoint_pid])
        # and each worker said in one line why it stopped, without a traceback
        logs = "".join(path.read_text() for path in (tmp_path / "home" / "logs" / job_id).glob("*.log"))
        assert "Traceback" not in logs and logs.count("stopping (SIGTERM)") == 2
    finally:
        run("local", "down")


def test_a_worker_that_loses_elasticsearch_for_good_exits_with_one_line(tmp_path):
    # Given an embedded stack of its own and a worker busy with a slow file, giving up on a lost store after 2 s
    stack = LocalStack(tmp_path / "stack", es_port=0, s3_base_port=0)
    stack.up()
    state = stack.state()
    endpoint = None
    try:
        settings = Settings(home=tmp_path / "home", es_url=state["es_url"], s3_endpoint_url=state["s3_endpoint_url"],
                            s3_access_key=SecretStr(state["access_key"]), s3_secret_key=SecretStr(state["secret_key"]),
                            poll_seconds=0.2, flush_seconds=0.5, retry_seconds=2, workers=1, concurrency=1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTBOT_")} | settings.environment()
        storage = Storage(settings)
        storage.ensure_bucket("lost-store")
        storage.write("lost-store", "in/a.txt", b"SLOW 5")
        storage.write("lost-store", "in/b.txt", b"SLOW 5")
        config = tmp_path / "echo.json"
        config.write_text(json.dumps({"name": "echo", "file_types": ".txt", "bot_image": f"python:{BOTS / 'echo' / 'task.py'}",
                                      "endpoint_name": "echo-upper",
                                      "endpoint_ecr_image_path": f"python:{BOTS / 'echo' / 'endpoint.py'}"}))
        subprocess.run([SPOTBOT, "bots", "register", str(config)], env=env, check=True, capture_output=True)
        started = subprocess.run([SPOTBOT, "submit", "--bot", "echo", "--input", "s3://lost-store/in/", "--output",
                                  "s3://lost-store/out/", "--json"], env=env, capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        job_id = json.loads(started.stdout)["job_id"]
        store = Store.from_settings(settings)
        wait_for(lambda: store.jobs.progress(job_id)[1] == 1, 60, "the worker to be working a file")
        worker = next(iter(store.jobs.get(job_id).workers.values()))
        endpoint = store.endpoints.get("echo-upper")[0]

        # When Elasticsearch goes away for good
        stack.stop_es()

        # Then the worker exits on its own, saying so in one line, with no traceback
        wait_for(lambda: not pid_alive(worker.pid), 60, "the worker to give up")
        log = (settings.home / "logs" / job_id / f"{worker.id}.log").read_text()
        assert "Traceback" not in log
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "cannot reach Elasticsearch" in errors[0], log
    finally:
        if endpoint is not None:
            ProcessEndpoints(settings).stop(endpoint)
        stack.down()
