"""What every kind of document store shares: its index, the conditional write, and the bulk write.

Every bulk request goes through `bulk()` below: it reports each item's outcome, retries the
items Elasticsearch refused for now (429, 5xx: a full write queue, a primary shard moving to
another node) and the whole request when the server is briefly away, with capped backoff and
jitter, and raises StoreUnavailable only once that has gone on for the store's retry period.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from ..errors import Conflict, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from . import Store

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


@dataclass
class Write:
    """One document to write in a bulk request: `create` (only if absent) or `index` (replace)."""

    index: str
    id: str
    source: dict
    op: str = "index"
    seq_no: int | None = None  # with primary_term: only if nobody wrote the document since
    primary_term: int | None = None


@dataclass
class Outcome:
    """What became of one Write: `status` is the item's HTTP status (201/200 written, 409 conflict, ...)."""

    write: Write
    status: int
    seq_no: int | None = None
    primary_term: int | None = None
    error: dict | str | None = field(default=None)

    @property
    def written(self) -> bool:
        return self.status in (200, 201)

    @property
    def conflict(self) -> bool:
        return self.status == 409


def transient_status(status: int) -> bool:
    return status == 429 or status >= 500


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

    def _all(self, body: dict, sort: list[dict], *, page: int = 500) -> Iterable[dict]:
        """Every hit of a search, page by page (search_after on `sort`, whose last key must be unique)."""
        after = None
        while True:
            extra = {"search_after": after} if after else {}
            hits = self._search({**body, "size": page, "sort": sort, **extra})
            yield from hits
            if len(hits) < page:
                return
            after = hits[-1]["sort"]


def bulk(store: "Store", writes: list[Write], *, what: str) -> list[Outcome]:
    """Write in one bulk request (more only to retry refusals); one Outcome per Write, in order.

    Items refused for now (429, 5xx) and requests that fail for want of the server are tried
    again until the store's retry period is spent; conflicts (409) and other refusals are
    reported, never raised: the caller decides what they mean.
    """
    outcomes: list[Outcome | None] = [None] * len(writes)
    pending = list(range(len(writes)))
    deadline = time.monotonic() + store.retry_seconds
    delay = FIRST_DELAY
    last = ""
    while pending:
        try:
            items = store.engine.bulk(_operations([writes[i] for i in pending]))["items"]
        except StoreUnavailable as exc:
            last = str(exc)
            items = None
        if items is not None:
            refused = []
            for position, item in zip(pending, items):
                info = next(iter(item.values()))
                status = int(info.get("status", 500))
                if transient_status(status):
                    refused.append(position)
                    last = f"{status} {_reason(info.get('error'))}"
                    continue
                outcomes[position] = Outcome(writes[position], status, info.get("_seq_no"), info.get("_primary_term"),
                                             info.get("error"))
            pending = refused
        if not pending:
            break
        if time.monotonic() + delay > deadline:
            raise StoreUnavailable(f"{what}: Elasticsearch kept refusing {len(pending)} of {len(writes)} write(s) "
                                   f"for {store.retry_seconds:.0f}s (last: {last})", url=store.engine.address)
        time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 -- jitter of a backoff, not a secret
        delay = min(MAX_DELAY, delay * 2)
    return [outcome for outcome in outcomes if outcome is not None]


def refused(outcomes: list[Outcome], *, what: str, allow: tuple[int, ...] = ()) -> None:
    """Raise StoreError for the first item refused for good (other than a conflict or an allowed status)."""
    for outcome in outcomes:
        if not outcome.written and not outcome.conflict and outcome.status not in allow:
            raise StoreError(f"{what}: Elasticsearch refused {outcome.write.id} ({outcome.status}): "
                             f"{_reason(outcome.error)}", status=outcome.status, index=outcome.write.index)


def _operations(writes: list[Write]) -> list[dict]:
    ops: list[dict] = []
    for write in writes:
        action: dict = {"_index": write.index, "_id": write.id}
        if write.seq_no is not None:
            action["if_seq_no"], action["if_primary_term"] = write.seq_no, write.primary_term
        ops.append({write.op: action})
        ops.append(write.source)
    return ops


def _reason(error: dict | str | None) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', '')}: {error.get('reason', '')}".strip(": ")
    return str(error or "")
