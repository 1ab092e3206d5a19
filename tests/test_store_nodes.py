"""SPOTBOT_ES_URL with several nodes, and SPOTBOT_ES_REPLICAS, on the suite's real server.

A node that does not answer stands for a lost member of a cluster: the client must go on with the
ones that do (tests/cluster kills a member of a real three-node cluster mid-job)."""

from __future__ import annotations

import socket

import pytest
import requests

from conftest import cli_env, register_echo, results, submit, upload

from framework.errors import ConfigError
from framework.settings import Settings, hide_password
from framework.store import Store
from framework.store.connection import Connection


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just released by the OS)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_node_that_does_not_answer_is_passed_over(settings, store):
    # Given the server's URL after one where nothing answers (the first one GET / is tried on)
    nodes = settings.model_copy(update={"es_url": f"{dead_url()},{settings.es_url}"})

    # When the store connects and writes through them
    other = Store.from_settings(nodes)
    other.engine.put(other.index("bots"), "probe", {"name": "probe"}, refresh="true")

    # Then every call reached the live node
    assert other.engine.address == nodes.es_url
    assert other.engine.get(other.index("bots"), "probe")["_source"] == {"name": "probe"}
    assert other.count("bots", {"term": {"name": "probe"}}) == 1


def test_a_job_runs_with_a_dead_node_among_the_urls(settings, store, storage, bucket):
    # workers get SPOTBOT_ES_URL as it is, and the seed's es_host / es_port name its first URL
    nodes = settings.model_copy(update={"es_url": f"{settings.es_url},{dead_url()}"})
    register_echo(nodes)
    upload(storage, bucket, {f"in/{i}.txt": f"text {i}" for i in range(12)})
    code, job, stderr = submit(nodes, bucket, "--bots", "2", env=cli_env(nodes))
    assert code == 0, stderr
    assert job["status"] == "COMPLETED" and job["total"] == 12
    assert {r["status"] for r in results(nodes, job["job_id"])} == {"COMPLETED"}


@pytest.mark.parametrize("url, wrong", [
    ("http://127.0.0.1:9200,ftp://127.0.0.1:21", "'ftp://127.0.0.1:21' is not an http(s):// URL"),
    ("http://127.0.0.1:9200,https://127.0.0.1:9201", "mix http:// and https://"),
])
def test_a_bad_url_among_several_is_refused_by_name(url, wrong):
    with pytest.raises(ConfigError) as refused:
        Store.from_settings(Settings(es_url=url))
    assert wrong in str(refused.value) and refused.value.field == "SPOTBOT_ES_URL"


def test_urls_are_tidied_and_their_passwords_hidden():
    settings = Settings(es_url=" http://a:secret@n1:9200 ,http://n2:9200, ")
    assert settings.es_urls() == ["http://a:secret@n1:9200", "http://n2:9200"]
    assert settings.require_es() == "http://a:secret@n1:9200"
    assert Connection.from_settings(settings).basic_auth() == ("a", "secret")
    assert Connection.from_settings(settings).address == "http://n1:9200,http://n2:9200"
    assert hide_password(settings.es_url) == "http://a:***@n1:9200,http://n2:9200"
    assert settings.redacted()["es_url"] == "http://a:***@n1:9200,http://n2:9200"


def test_replicas_are_set_on_the_indices_spotbot_creates(settings, store):
    # store (the suite's fixture) created its indices with the engine's default; this one asks for two replicas
    asked = Store.from_settings(settings.model_copy(update={"es_replicas": 2, "index_prefix": settings.index_prefix + "r-"}))
    try:
        url = settings.es_url
        for kind in ("files", "chunks"):
            for made, name in [(asked, name) for name in asked.names(kind)] + [(store, store.names(kind)[0])]:
                replicas = requests.get(f"{url}/{name}/_settings", timeout=10).json()[name]["settings"]["index"]
                assert (replicas["number_of_replicas"] == "2") == (made is asked), name
    finally:
        asked.drop()


def test_replicas_must_be_a_count():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"SPOTBOT_ES_REPLICAS": "-1"})
    assert refused.value.field == "SPOTBOT_ES_REPLICAS"
