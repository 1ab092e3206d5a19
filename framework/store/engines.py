"""The store's client: one small interface over Elasticsearch 8 (`elasticsearch`) and OpenSearch
(`opensearch-py`, also Amazon OpenSearch Service and its Elasticsearch 7.10 domains).

Which one is chosen by what the server says it is at GET / (or SPOTBOT_ES_ENGINE). Every
call returns plain dicts and raises spotbot's errors: Conflict for a 409, StoreUnavailable
for a connection failure, 429 or 5xx, StoreError otherwise. Nothing above this file knows
which client it has.

A Connection may name several nodes of one cluster (comma-separated URLs). Both clients then
spread requests over them and, when one stops answering, mark it dead for a while and send the
request to another (up to three retries per call); only when none answers does a call raise
StoreUnavailable, which callers retry for SPOTBOT_RETRY_SECONDS.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from ..errors import ConfigError, StoreUnavailable
from .connection import Connection, translated, without_credentials

__all__ = ["CLIENTS", "Connection", "Engine", "connect", "detect", "translated", "without_credentials"]


class Engine(Protocol):
    name: str
    address: str
    version: str

    def info(self) -> dict: ...
    def index_exists(self, index: str) -> bool: ...
    def create_index(self, index: str, mappings: dict, settings: dict | None = None) -> None: ...
    def mapping(self, index: str) -> dict: ...
    def put_mapping(self, index: str, properties: dict, meta: dict) -> None: ...
    def delete_index(self, index: str) -> None: ...
    def refresh(self, indices: list[str]) -> None: ...
    def get(self, index: str, doc_id: str) -> dict | None: ...
    def create(self, index: str, doc_id: str, document: dict, refresh: str | None = None) -> dict: ...
    def put(self, index: str, doc_id: str, document: dict, *, if_seq_no: int | None = None,
            if_primary_term: int | None = None, refresh: str | None = None) -> dict: ...
    def delete(self, index: str, doc_id: str, refresh: str | None = None) -> bool: ...
    def bulk(self, operations: list[dict]) -> dict: ...
    def mget(self, index: str, ids: list[str]) -> list[dict]: ...
    def mget_docs(self, docs: list[tuple[str, str]]) -> list[dict]: ...  # (index, id) pairs, across indices
    def search(self, index: str, body: dict) -> dict: ...
    def count(self, index: str, query: dict) -> int: ...


CLIENTS = {
    "elasticsearch": ("framework.store.elastic", "ElasticsearchEngine"),
    "opensearch": ("framework.store.opensearch", "OpenSearchEngine"),
}


def detect(connection: Connection) -> str:
    """'elasticsearch' or 'opensearch', from GET / (OpenSearch, and Elasticsearch before 8, need opensearch-py)."""
    if connection.engine in ("elasticsearch", "opensearch"):
        return connection.engine
    if connection.engine not in ("", "auto"):
        raise ConfigError(f"{connection.engine!r} is not auto, elasticsearch or opensearch", field="SPOTBOT_ES_ENGINE")
    if connection.auth == "sigv4":
        return "opensearch"  # Amazon OpenSearch Service, whatever version its domain runs
    auth: Any = connection.basic_auth()
    headers = {"Authorization": f"ApiKey {connection.api_key}"} if connection.api_key else {}
    failure: StoreUnavailable | None = None
    for address in connection.addresses:  # the first node that answers speaks for the cluster
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                answer = requests.get(address + "/", auth=auth, headers=headers, timeout=connection.timeout,
                                      verify=(connection.ca_certs or True) if connection.verify_certs else False)
        except requests.RequestException as exc:
            failure = StoreUnavailable(
                f"cannot reach Elasticsearch at {connection.address} ({type(exc).__name__}); "
                "is it running? (`spotbot local up` starts the embedded one)", url=connection.address,
            )
            continue
        if answer.status_code in (401, 403):
            raise ConfigError(f"Elasticsearch at {address} refused the credentials ({answer.status_code})",
                              field="SPOTBOT_ES_URL")
        try:
            version = answer.json()["version"]
        except (ValueError, KeyError):
            failure = StoreUnavailable(f"{address} does not answer like Elasticsearch or OpenSearch "
                                       f"(HTTP {answer.status_code})", url=address)
            continue
        if version.get("distribution") == "opensearch" or int(str(version.get("number", "0")).split(".")[0]) < 8:
            return "opensearch"
        return "elasticsearch"
    assert failure is not None  # noqa: S101 -- narrows the type (see the comment); connect() refuses a connection without URLs
    raise failure


def connect(connection: Connection) -> Engine:
    if not connection.urls:
        raise ConfigError("no Elasticsearch URL given", field="SPOTBOT_ES_URL")
    for url in connection.urls:
        if not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
            raise ConfigError(f"{without_credentials(url) or url!r} is not an http(s):// URL", field="SPOTBOT_ES_URL")
    if len({urlsplit(url).scheme for url in connection.urls}) > 1:
        raise ConfigError(f"the nodes {connection.address} mix http:// and https://; one cluster speaks one of them",
                          field="SPOTBOT_ES_URL")
    if not connection.verify_certs:
        warnings.warn(f"TLS certificates of {connection.address} are not verified (SPOTBOT_ES_VERIFY_CERTS=false)",
                      stacklevel=2)
    module, cls = CLIENTS[detect(connection)]  # imported when first needed: the CLI pays for one client only
    return getattr(importlib.import_module(module), cls)(connection)
