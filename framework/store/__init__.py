"""Everything that talks to Elasticsearch: the registry of bots, jobs, chunks, files and endpoints."""

from __future__ import annotations

import elasticsearch

from ..settings import Settings
from .bots import BotRegistry
from .chunks import ChunkStore
from .client import connect, redact_url, unavailable_as
from .endpoints import EndpointStore
from .files import FileStore
from .indices import MAPPING_VERSION, MAPPINGS, mapping
from .jobs import JobStore


class Store:
    """The indices under one prefix, and a verb-named store for each kind of document."""

    def __init__(self, es: elasticsearch.Elasticsearch, *, prefix: str = "spotbot-", url: str = ""):
        self.es = es
        self.prefix = prefix
        self.url = url
        self.bots = BotRegistry(self)
        self.jobs = JobStore(self)
        self.chunks = ChunkStore(self)
        self.files = FileStore(self)
        self.endpoints = EndpointStore(self)
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "Store":
        url = settings.require_es()
        store = cls(connect(url), prefix=settings.index_prefix, url=url)
        store.init()
        return store

    def index(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    def init(self) -> list[str]:
        """Create missing indices with their mappings; returns the names it created."""
        created = []
        with unavailable_as(self.url):
            for kind in MAPPINGS:
                name = self.index(kind)
                if self.es.indices.exists(index=name):
                    continue
                try:
                    self.es.indices.create(index=name, mappings=mapping(kind))
                    created.append(name)
                except elasticsearch.BadRequestError as exc:
                    if "already_exists" not in str(exc.error):
                        raise
        self._ready = True
        return created

    def refresh(self, *kinds: str) -> None:
        """Make recent writes visible to search; used before a decision that counts, never as a wait."""
        with unavailable_as(self.url):
            self.es.indices.refresh(index=",".join(self.index(k) for k in kinds))

    def drop(self) -> None:
        """Delete every index under the prefix (tests and `spotbot local down --wipe`)."""
        with unavailable_as(self.url):
            for kind in MAPPINGS:
                self.es.options(ignore_status=404).indices.delete(index=self.index(kind))


__all__ = ["Store", "MAPPING_VERSION", "redact_url"]
