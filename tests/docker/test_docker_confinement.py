"""What a worker or an endpoint container may do (issue 14): `docker inspect` of started ones, what runs inside
them, and what they reach on the host network. Figures each test saw are printed (pytest -s shows them)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from docker_support import (BASE, OCR_ENDPOINT, TASKS, background_submit, containers_of, engine,  # noqa: F401
                            no_container_left, register_task_bot, settings, throwaway_image)
from faults.conftest import finish

from conftest import cli_env, upload, wait_for

from framework.containers import Engine
from framework.endpoints import EndpointManager
from framework.errors import LaunchError
from framework.models import EndpointSpec

PIDS = 64  # a limit well below the default, so the test sees the setting reach both kinds of container


def status_fields(container) -> dict[str, str]:
    """Fields of /proc/1/status inside the container: the capabilities, user and no_new_privs of its first process."""
    text = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def python_in(container, code: str) -> tuple[int, str]:
    result = container.exec_run(["python3", "-c", code])
    return result.exit_code, result.output.decode(errors="replace").strip()


def assert_confined(container) -> None:
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] == PIDS
    assert host["ReadonlyRootfs"] is True and list(host["Tmpfs"]) == ["/tmp"]
    assert container.attrs["Config"]["User"] == "1000:1000"
    assert "HOME=/tmp" in container.attrs["Config"]["Env"]
    # and inside: no capability in any set, no new privileges, not root
    proc = status_fields(container)
    assert {proc[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}
    assert proc["NoNewPrivs"] == "1" and proc["Uid"].split() == ["1000"] * 4
    # a raw socket (sniffing loopback traffic) is refused, the root filesystem is read-only, /tmp is writable
    code, out = python_in(container, "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)")
    assert code != 0 and "PermissionError" in out
    denied = container.exec_run(["touch", "/opt/new"])
    assert denied.exit_code != 0 and b"Read-only file system" in denied.output
    assert container.exec_run(["touch", "/tmp/new"]).exit_code == 0
    # and it cannot start more threads than its pids limit allows (a fork bomb stops there)
    code, out = python_in(container, "import threading, time\nn = 0\ntry:\n    while n < 10000:\n"
                                     "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); n += 1\n"
                                     "except RuntimeError:\n    pass\nprint(n)")
    assert code == 0 and 0 < int(out) < PIDS, out


def test_worker_and_endpoint_containers_hold_no_privileges(settings, store, storage, bucket, engine):
    # Given a job whose one worker container works a slow file, and an endpoint container, both with a pids limit of 64
    settings = settings.model_copy(update={"docker_pids_limit": PIDS})
    register_task_bot(settings)
    upload(storage, bucket, {"in/slow.txt": "SLOW 20"})
    env = cli_env(settings, SPOTBOT_DOCKER_MOUNTS=f"{TASKS}:/opt/tests")
    job = background_submit(bucket, env, "containers", "--bots", "1")
    endpoint = EndpointManager(settings, store, storage).ensure_one(EndpointSpec(name="confined", image=OCR_ENDPOINT))
    (worker,) = wait_for(lambda: [c for c in containers_of(engine, settings, "worker") if c.status == "running"],
                         120, "the worker container to run")
    (served,) = containers_of(engine, settings, "endpoint", endpoint="confined")

    # Then `docker inspect` of each shows no capabilities, no new privileges, the pids limit, a read-only root
    # with a tmpfs at /tmp and the image's unprivileged user, and inside each that holds
    for container in (worker, served):
        container.reload()
        assert_confined(container)

    # and both still work so confined: the endpoint answers, the job completes
    assert EndpointManager(settings, store, storage).backend("docker").healthy(endpoint)
    code, data, err = finish(job)
    assert code == 0 and data["status"] == "COMPLETED", err


def test_an_image_that_names_root_runs_as_uid_1000(settings, engine, throwaway_image):
    # Given an image whose USER is root
    rooted = throwaway_image(f"FROM {BASE}\nUSER root\nCMD [\"python3\", \"-c\", \"import os; print(os.getuid(), os.getgid())\"]\n")
    docker = Engine(settings, LaunchError)

    # When spotbot starts a container of it
    container = docker.run(rooted, name=f"spotbot-{docker.scope()}-rooted", field="bot_image",
                           labels=docker.labels("worker"))
    container.wait(timeout=60)

    # Then it ran as uid 1000, not as root
    assert container.logs().decode().strip() == "1000 1000"
    assert container.attrs["Config"]["User"] == "1000:1000"


def test_every_image_that_ships_names_an_unprivileged_user(engine):
    shipped = [tag for image in engine.images.list(name="spotbot/*") for tag in image.tags if tag.endswith(":local")]
    assert len(shipped) >= 8, shipped  # three bots' worker and endpoint images, the byob template's two
    users = {tag: engine.images.get(tag).attrs["Config"]["User"] for tag in shipped}
    assert all(user == "1000:1000" for user in users.values()), users


def test_a_container_on_the_host_network_reaches_every_loopback_service(settings, engine):
    """What the README's Security section says a bot container reaches where the engine has no bridge network.

    Not a wish but the fact a user must know: the embedded Elasticsearch answers it without any credential."""
    docker = Engine(settings, LaunchError)
    es = urlsplit(settings.es_url.split(",")[0])
    s3 = urlsplit(settings.s3_endpoint_url)
    probe = ("import json, socket, sys, urllib.request\nseen = {}\n"
             "for name, host, port in json.loads(sys.argv[1]):\n"
             "    try:\n        socket.create_connection((host, port), timeout=3).close(); seen[name] = 'open'\n"
             "    except OSError as exc:\n        seen[name] = type(exc).__name__\n"
             "seen['es_root'] = urllib.request.urlopen(sys.argv[2], timeout=5).status\n"
             "print(json.dumps(seen))")
    targets = [("elasticsearch", es.hostname, es.port), ("s3", s3.hostname, s3.port)]
    container = docker.run(BASE, name=f"spotbot-{docker.scope()}-probe", field="bot_image",
                           labels=docker.labels("worker"), command=["python3", "-c", probe, json.dumps(targets),
                                                                    f"http://{es.hostname}:{es.port}/"])
    assert container.wait(timeout=60)["StatusCode"] == 0, container.logs().decode()
    seen = json.loads(container.logs().decode())
    assert seen == {"elasticsearch": "open", "s3": "open", "es_root": 200}
    print(f"\nfrom a confined container on the host network: {seen}")
