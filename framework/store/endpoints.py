"""Endpoint records: which model endpoints exist, where they answer and which backend runs them."""

from __future__ import annotations

import elasticsearch

from ..models import Endpoint, now_ms
from .client import unavailable_as
from .documents import DocumentStore


class EndpointStore(DocumentStore):
    kind = "endpoints"

    def get(self, name: str) -> tuple[Endpoint, int, int] | None:
        with unavailable_as(self.store.url):
            doc = self.store.es.options(ignore_status=404).get(index=self._index, id=name)
        if not doc.get("found"):
            return None
        return Endpoint.model_validate(doc["_source"]), doc["_seq_no"], doc["_primary_term"]

    def reserve(self, endpoint: Endpoint) -> tuple[int, int] | None:
        """Record a new endpoint (CREATING); None when a record of that name exists already."""
        try:
            with unavailable_as(self.store.url):
                result = self.store.es.create(index=self._index, id=endpoint.name, document=endpoint.model_dump(mode="json"))
        except elasticsearch.ConflictError:
            return None
        return result["_seq_no"], result["_primary_term"]

    def replace(self, endpoint: Endpoint, seq_no: int, primary_term: int) -> tuple[int, int] | None:
        """Write the endpoint if nobody changed it since seq_no; None otherwise."""
        endpoint.updated_at = now_ms()
        return self._write_if(endpoint.name, endpoint.model_dump(mode="json"), seq_no, primary_term)

    def list(self) -> list[Endpoint]:
        self.store.refresh("endpoints")
        with unavailable_as(self.store.url):
            hits = self.store.es.search(index=self._index, size=1000, sort=[{"name": "asc"}])["hits"]["hits"]
        return [Endpoint.model_validate(h["_source"]) for h in hits]

    def delete(self, name: str) -> bool:
        with unavailable_as(self.store.url):
            result = self.store.es.options(ignore_status=404).delete(index=self._index, id=name)
        return result.get("result") == "deleted"
