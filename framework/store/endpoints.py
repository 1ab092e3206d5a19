"""Endpoint records: which model endpoints exist, where they answer and which backend runs them."""

from __future__ import annotations

from ..errors import Conflict
from ..models import Endpoint, now_ms
from .documents import DocumentStore


class EndpointStore(DocumentStore):
    kind = "endpoints"

    def get(self, name: str) -> tuple[Endpoint, int, int] | None:
        doc = self.engine.get(self._index, name)
        if doc is None:
            return None
        return Endpoint.model_validate(doc["_source"]), doc["_seq_no"], doc["_primary_term"]

    def reserve(self, endpoint: Endpoint) -> tuple[int, int] | None:
        """Record a new endpoint (CREATING); None when a record of that name exists already."""
        try:
            result = self.engine.create(self._index, endpoint.name, endpoint.model_dump(mode="json"))
        except Conflict:
            return None
        return result["_seq_no"], result["_primary_term"]

    def replace(self, endpoint: Endpoint, seq_no: int, primary_term: int) -> tuple[int, int] | None:
        """Write the endpoint if nobody changed it since seq_no; None otherwise."""
        endpoint.updated_at = now_ms()
        return self._write_if(endpoint.name, endpoint.model_dump(mode="json"), seq_no, primary_term)

    def list(self) -> list[Endpoint]:
        """Every endpoint record, by name (page by page: none is left out)."""
        self.store.refresh("endpoints")
        return [Endpoint.model_validate(h["_source"]) for h in self._all({"query": {"match_all": {}}}, [{"name": "asc"}])]

    def delete(self, name: str) -> bool:
        return self.engine.delete(self._index, name)
