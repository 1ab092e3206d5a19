"""What every kind of document store shares: its index and the conditional write."""

from __future__ import annotations

from typing import TYPE_CHECKING

import elasticsearch

from .client import unavailable_as

if TYPE_CHECKING:
    from . import Store


class DocumentStore:
    kind = ""

    def __init__(self, store: "Store"):
        self.store = store

    @property
    def _index(self) -> str:
        return self.store.index(self.kind)

    def _write_if(self, doc_id: str, document: dict, seq_no: int, primary_term: int) -> tuple[int, int] | None:
        """Replace a document only if nobody wrote it since (seq_no, primary_term); None when someone did."""
        try:
            with unavailable_as(self.store.url):
                result = self.store.es.index(
                    index=self._index, id=doc_id, document=document, if_seq_no=seq_no, if_primary_term=primary_term
                )
        except elasticsearch.ConflictError:
            return None
        return result["_seq_no"], result["_primary_term"]
