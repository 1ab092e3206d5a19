"""A real three-node OpenSearch cluster for the node-loss tests.

`make test-cluster` starts it with deploy/es-node/es-node.sh (`cluster start`), points
SPOTBOT_TEST_CLUSTER_URL at its members (comma-separated) and stops it afterwards. Without that
variable, or when no member answers, these tests are skipped (they fail when CI is set). S3 is the
embedded stack's, as in the rest of the suite. Members are killed and restarted only through
es-node.sh, which checks a pid is its own member before it signals it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from pydantic import SecretStr

from framework.settings import Settings

ES_NODE = Path(__file__).resolve().parents[2] / "deploy" / "es-node" / "es-node.sh"
CLUSTER_URL = os.environ.get("SPOTBOT_TEST_CLUSTER_URL", "")


class Cluster:
    """The members of the test cluster, as es-node.sh started them (named node-HTTP_PORT)."""

    def __init__(self, url: str):
        self.urls = [u.strip() for u in url.split(",") if u.strip()]
        self.ports = sorted(urlsplit(u).port or 0 for u in self.urls)

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        """GET from the first member that answers (one of them may be dead on purpose)."""
        failure: Exception | None = None
        for url in self.urls:
            try:
                return requests.get(f"{url}/{path}", timeout=timeout)
            except requests.RequestException as exc:
                failure = exc
        raise AssertionError(f"no member of {self.urls} answers: {failure}")

    def health(self, query: str = "") -> dict:
        return self.get(f"_cluster/health?{query}", timeout=70).json()

    def primary_port(self, index: str) -> int:
        """The HTTP port of the member holding the index's (one) primary shard."""
        shards = self.get(f"_cat/shards/{index}?format=json&h=index,shard,prirep,state,node").json()
        primaries = [s for s in shards if s["prirep"] == "p" and s["state"] == "STARTED"]
        assert len(primaries) == 1, shards
        return int(primaries[0]["node"].removeprefix("node-"))

    def manager_port(self) -> int:
        return int(self.get("_cat/cluster_manager?format=json").json()[0]["node"].removeprefix("node-"))

    def wait_green(self, index: str, seconds: int = 60) -> None:
        """Every shard of the index assigned, replicas included (a kill before then could lose the only copy)."""
        health = self.get(f"_cluster/health/{index}?wait_for_status=green&timeout={seconds}s", timeout=seconds + 10).json()
        assert health["status"] == "green", health

    def kill(self, port: int) -> None:
        run_es_node("cluster", "kill", str(port))

    def start(self) -> None:
        """Start the members that are not running and wait until all joined and every shard is assigned."""
        run_es_node("cluster", "start", str(self.ports[0]))


def run_es_node(*args: str) -> str:
    result = subprocess.run([str(ES_NODE), *args], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"es-node.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stderr


def absent(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if not CLUSTER_URL:
        absent("no cluster: SPOTBOT_TEST_CLUSTER_URL is unset (`make test-cluster` starts one and sets it)")
    cluster = Cluster(CLUSTER_URL)
    try:
        health = cluster.health("wait_for_nodes=3&timeout=30s")
    except AssertionError as exc:
        absent(str(exc))
    if health.get("number_of_nodes") != 3:
        absent(f"the cluster at {CLUSTER_URL} has {health.get('number_of_nodes')} nodes, not 3")
    return cluster


@pytest.fixture
def whole_cluster(cluster):
    """The cluster with its three members; a member a test killed is started again afterwards."""
    yield cluster
    if cluster.health().get("number_of_nodes") != 3:
        cluster.start()


@pytest.fixture
def settings(whole_cluster, stack, tmp_path) -> Settings:
    """The suite's settings, on the cluster's three nodes with one replica per index."""
    return Settings(
        home=tmp_path / "home",
        es_url=",".join(whole_cluster.urls),
        es_replicas=1,
        s3_endpoint_url=stack["s3_endpoint_url"],
        s3_access_key=SecretStr(stack["access_key"]),
        s3_secret_key=SecretStr(stack["secret_key"]),
        index_prefix=f"t{uuid.uuid4().hex[:10]}-",
        poll_seconds=0.2,
        # long enough that the failover never costs a worker its chunk: what the test measures is the stall
        lease_seconds=30,
        flush_seconds=1,
        endpoint_start_timeout=60,
        endpoint_timeout=30,
        workers=2,
        chunk_size=5,
        # one file at a time per worker, as in the rest of the suite: a pause between two calls is then a stall
        concurrency=1,
    )


@pytest.fixture
def storage_bucket_pair(storage) -> tuple[str, str]:
    """Two fresh buckets: one job runs undisturbed in the first, the same job with a fault in the second."""
    names = (f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}")
    for name in names:
        storage.ensure_bucket(name)
    return names
