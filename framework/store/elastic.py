"""The store's client on Elasticsearch 8.x, through the `elasticsearch` package."""

from __future__ import annotations

from typing import Any

import elastic_transport
import elasticsearch

from .connection import Connection, translated


class ElasticsearchEngine:
    name = "elasticsearch"

    def __init__(self, connection: Connection):
        self.address = connection.address
        options: dict[str, Any] = {}
        if connection.api_key:
            options["api_key"] = connection.api_key
        elif connection.basic_auth():
            options["basic_auth"] = connection.basic_auth()
        if connection.ca_certs:
            options["ca_certs"] = connection.ca_certs
        if not connection.verify_certs:
            options["verify_certs"] = False
            options["ssl_show_warn"] = False
        self.client = elasticsearch.Elasticsearch(
            connection.addresses, request_timeout=connection.timeout, max_retries=3, retry_on_timeout=True,
            retry_on_status=(429, 502, 503, 504), **options,
        )
        self.version = ""

    def _errors(self):
        return translated(self.address, elasticsearch.ConflictError, elasticsearch.NotFoundError,
                          (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout),
                          elasticsearch.ApiError, lambda exc: exc.meta.status)

    def info(self) -> dict:
        with self._errors():
            info = dict(self.client.info())
        self.version = info["version"]["number"]
        return info

    def index_exists(self, index: str) -> bool:
        with self._errors():
            return bool(self.client.indices.exists(index=index))

    def create_index(self, index: str, mappings: dict, settings: dict | None = None) -> None:
        with self._errors():
            self.client.indices.create(index=index, mappings=mappings, settings=settings or None)

    def mapping(self, index: str) -> dict:
        with self._errors():
            return dict(self.client.indices.get_mapping(index=index))[index]["mappings"]

    def put_mapping(self, index: str, properties: dict, meta: dict) -> None:
        with self._errors():
            self.client.indices.put_mapping(index=index, properties=properties, meta=meta)

    def delete_index(self, index: str) -> None:
        with self._errors():
            self.client.options(ignore_status=404).indices.delete(index=index)

    def refresh(self, indices: list[str]) -> None:
        with self._errors():
            self.client.indices.refresh(index=",".join(indices))

    def get(self, index: str, doc_id: str) -> dict | None:
        with self._errors():
            doc = dict(self.client.options(ignore_status=404).get(index=index, id=doc_id))
        return doc if doc.get("found") else None

    def create(self, index: str, doc_id: str, document: dict, refresh: str | None = None) -> dict:
        with self._errors():
            return dict(self.client.create(index=index, id=doc_id, document=document, refresh=refresh))

    def put(self, index: str, doc_id: str, document: dict, *, if_seq_no: int | None = None,
            if_primary_term: int | None = None, refresh: str | None = None) -> dict:
        with self._errors():
            return dict(self.client.index(index=index, id=doc_id, document=document, if_seq_no=if_seq_no,
                                          if_primary_term=if_primary_term, refresh=refresh))

    def delete(self, index: str, doc_id: str, refresh: str | None = None) -> bool:
        with self._errors():
            result = self.client.options(ignore_status=404).delete(index=index, id=doc_id, refresh=refresh)
        return result.get("result") == "deleted"

    def bulk(self, operations: list[dict]) -> dict:
        with self._errors():
            return dict(self.client.bulk(operations=operations))

    def mget(self, index: str, ids: list[str]) -> list[dict]:
        with self._errors():
            return list(self.client.mget(index=index, ids=ids)["docs"])

    def mget_docs(self, docs: list[tuple[str, str]]) -> list[dict]:
        with self._errors():
            return list(self.client.mget(docs=[{"_index": index, "_id": doc_id} for index, doc_id in docs])["docs"])

    def search(self, index: str, body: dict) -> dict:
        with self._errors():
            return dict(self.client.search(index=index, **body))

    def count(self, index: str, query: dict) -> int:
        with self._errors():
            return int(self.client.count(index=index, query=query)["count"])
