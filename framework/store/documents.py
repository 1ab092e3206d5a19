"""What every kind of document store shares: its index and the conditional write."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Conflict

if TYPE_CHECKING:
    from . import Store


class DocumentStore:
    kind = ""

    def __init__(self, store: "Store"):
        self.store = store
        self.engine = store.engine

    @property
    def _index(self) -> str:
        return self.store.index(self.kind)

    def _write_if(self, doc_id: str, document: dict, seq_no: int, primary_term: int) -> tuple[int, int] | None:
        """Replace a document only if nobody wrote it since (seq_no, primary_term); None when someone did.

        A conflict with a document that holds exactly what we sent is our own earlier attempt,
        applied by a server that went away before answering (this call is its retry): ours.
        """
        try:
            result = self.engine.put(self._index, doc_id, document, if_seq_no=seq_no, if_primary_term=primary_term)
        except Conflict:
            current = self.engine.get(self._index, doc_id)
            if current is not None and current["_source"] == document:
                return current["_seq_no"], current["_primary_term"]
            return None
        return result["_seq_no"], result["_primary_term"]

    def _search(self, body: dict) -> list[dict]:
        return self.engine.search(self._index, body)["hits"]["hits"]
