"""Everything that talks to Elasticsearch / OpenSearch: bots, jobs, chunks, files and endpoints."""

from __future__ import annotations

from ..errors import StoreError
from ..settings import Settings
from .bots import BotRegistry
from .chunks import ChunkStore
from .endpoints import EndpointStore
from .engines import Connection, Engine, connect, without_credentials
from .files import FileStore
from .indices import MAPPING_VERSION, MAPPINGS, index_settings, mapping
from .jobs import JobStore


class Store:
    """The indices under one prefix, and a verb-named store for each kind of document."""

    def __init__(self, engine: Engine, *, prefix: str = "spotbot-", replicas: int | None = None):
        self.engine = engine
        self.prefix = prefix
        self.replicas = replicas  # of the indices init() creates; None: the engine's default
        self.bots = BotRegistry(self)
        self.jobs = JobStore(self)
        self.chunks = ChunkStore(self)
        self.files = FileStore(self)
        self.endpoints = EndpointStore(self)

    @classmethod
    def from_settings(cls, settings: Settings, *, init: bool = True) -> "Store":
        """Connect; with init, create missing indices first (workers skip it: their scheduler did it)."""
        store = cls(connect(settings.connection()), prefix=settings.index_prefix, replicas=settings.es_replicas)
        if init:
            store.init()
        return store

    def index(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    def init(self) -> list[str]:
        """Create missing indices and bring older mappings up to this version; returns what it changed."""
        changed = []
        for kind in MAPPINGS:
            name = self.index(kind)
            if not self.engine.index_exists(name):
                try:
                    self.engine.create_index(name, mapping(kind), index_settings(self.replicas))
                    changed.append(name)
                except StoreError as exc:
                    if "already_exists" not in str(exc):
                        raise
                continue
            current = self.engine.mapping(name)
            version = int((current.get("_meta") or {}).get("spotbot_mapping_version", 0))
            if version > MAPPING_VERSION:
                raise StoreError(f"index {name} has mapping version {version}, newer than this spotbot's "
                                 f"{MAPPING_VERSION}: upgrade spotbot", index=name)
            if version < MAPPING_VERSION:
                # mappings only grow: new fields are added in place; a change of a field's type would need a reindex
                wanted = mapping(kind)
                self.engine.put_mapping(name, wanted["properties"], wanted["_meta"])
                changed.append(f"{name} (mapping {version} -> {MAPPING_VERSION})")
        return changed

    def refresh(self, *kinds: str) -> None:
        """Make recent writes visible to search; used before a decision that counts, never as a wait."""
        self.engine.refresh([self.index(k) for k in kinds])

    def count(self, kind: str, query: dict) -> int:
        return self.engine.count(self.index(kind), query)

    def drop(self) -> None:
        """Delete every index under the prefix (tests)."""
        for kind in MAPPINGS:
            self.engine.delete_index(self.index(kind))


__all__ = ["Store", "Connection", "MAPPING_VERSION", "without_credentials"]
