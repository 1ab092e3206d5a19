"""The store's client on OpenSearch 1.x/2.x and Amazon OpenSearch Service, through `opensearch-py`."""

from __future__ import annotations

from typing import Any

import opensearchpy

from .connection import Connection, translated


class OpenSearchEngine:
    name = "opensearch"

    def __init__(self, connection: Connection):
        self.address = connection.address
        options: dict[str, Any] = {}
        if connection.auth == "sigv4":
            options["http_auth"] = connection.sigv4()
            options["connection_class"] = opensearchpy.RequestsHttpConnection
        elif connection.basic_auth():
            options["http_auth"] = connection.basic_auth()
        elif connection.api_key:
            options["headers"] = {"Authorization": f"ApiKey {connection.api_key}"}
        if connection.address.startswith("https://"):
            options["use_ssl"] = True
            options["verify_certs"] = connection.verify_certs
            if not connection.verify_certs:
                options["ssl_show_warn"] = False
            if connection.ca_certs:
                options["ca_certs"] = connection.ca_certs
        self.client = opensearchpy.OpenSearch(
            hosts=connection.addresses, timeout=connection.timeout, max_retries=3, retry_on_timeout=True,
            retry_on_status=(429, 502, 503, 504), **options,
        )
        self.version = ""

    def _errors(self):
        return translated(self.address, opensearchpy.ConflictError, opensearchpy.NotFoundError,
                          (opensearchpy.ConnectionError, opensearchpy.ConnectionTimeout),
                          opensearchpy.TransportError, lambda exc: exc.status_code)

    def info(self) -> dict:
        with self._errors():
            info = self.client.info()
        self.version = info["version"]["number"]
        return info

    def index_exists(self, index: str) -> bool:
        with self._errors():
            return bool(self.client.indices.exists(index=index))

    def create_index(self, index: str, mappings: dict, settings: dict | None = None) -> None:
        body: dict[str, Any] = {"mappings": mappings}
        if settings:
            body["settings"] = settings
        with self._errors():
            self.client.indices.create(index=index, body=body)

    def mapping(self, index: str) -> dict:
        with self._errors():
            return self.client.indices.get_mapping(index=index)[index]["mappings"]

    def put_mapping(self, index: str, properties: dict, meta: dict) -> None:
        with self._errors():
            self.client.indices.put_mapping(index=index, body={"properties": properties, "_meta": meta})

    def delete_index(self, index: str) -> None:
        with self._errors():
            self.client.indices.delete(index=index, params={"ignore_unavailable": "true"})

    def refresh(self, indices: list[str]) -> None:
        with self._errors():
            self.client.indices.refresh(index=",".join(indices))

    def get(self, index: str, doc_id: str) -> dict | None:
        with self._errors():
            try:
                return self.client.get(index=index, id=doc_id)
            except opensearchpy.NotFoundError:
                return None

    def create(self, index: str, doc_id: str, document: dict, refresh: str | None = None) -> dict:
        with self._errors():
            return self.client.create(index=index, id=doc_id, body=document, params=_params(refresh=refresh))

    def put(self, index: str, doc_id: str, document: dict, *, if_seq_no: int | None = None,
            if_primary_term: int | None = None, refresh: str | None = None) -> dict:
        with self._errors():
            return self.client.index(index=index, id=doc_id, body=document, params=_params(
                if_seq_no=if_seq_no, if_primary_term=if_primary_term, refresh=refresh))

    def delete(self, index: str, doc_id: str, refresh: str | None = None) -> bool:
        with self._errors():
            try:
                result = self.client.delete(index=index, id=doc_id, params=_params(refresh=refresh))
            except opensearchpy.NotFoundError:
                return False
        return result.get("result") == "deleted"

    def bulk(self, operations: list[dict]) -> dict:
        with self._errors():
            return self.client.bulk(body=operations)

    def mget(self, index: str, ids: list[str]) -> list[dict]:
        with self._errors():
            return self.client.mget(index=index, body={"ids": ids})["docs"]

    def mget_docs(self, docs: list[tuple[str, str]]) -> list[dict]:
        with self._errors():
            return self.client.mget(body={"docs": [{"_index": index, "_id": doc_id} for index, doc_id in docs]})["docs"]

    def search(self, index: str, body: dict) -> dict:
        body = dict(body)
        params = _params(seq_no_primary_term=body.pop("seq_no_primary_term", None))
        with self._errors():
            return self.client.search(index=index, body=body, params=params)

    def count(self, index: str, query: dict) -> int:
        with self._errors():
            return int(self.client.count(index=index, body={"query": query})["count"])


def _params(**values: Any) -> dict:
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in values.items() if v is not None}
