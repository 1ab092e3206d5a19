"""The bot registry: one document per bot, id = the bot's name."""

from __future__ import annotations

import elasticsearch

from ..errors import NotFound
from ..models import BotConfig, seed_date
from ..settings import hide_password
from .client import unavailable_as
from .documents import DocumentStore


class BotRegistry(DocumentStore):
    kind = "bots"

    def register(self, config: BotConfig) -> tuple[BotConfig, bool]:
        """Create the bot, or update it when the name exists; returns (stored config, created)."""
        es = self.store.es
        config = config.model_copy(update={"es_url": hide_password(config.es_url)})  # never store a password
        with unavailable_as(self.store.url):
            for _ in range(10):
                current = es.options(ignore_status=404).get(index=self._index, id=config.name)
                if not current.get("found"):
                    try:
                        es.create(index=self._index, id=config.name, document=config.model_dump(), refresh="wait_for")
                        return self.get(config.name), True
                    except elasticsearch.ConflictError:
                        continue
                # an update keeps the first registration's create_date; the document is replaced whole,
                # conditionally on what we read, so no script and no user string ever reaches a query
                stored = config.model_copy(update={"create_date": current["_source"]["create_date"], "update_date": seed_date()})
                try:
                    es.index(
                        index=self._index,
                        id=config.name,
                        document=stored.model_dump(),
                        if_seq_no=current["_seq_no"],
                        if_primary_term=current["_primary_term"],
                        refresh="wait_for",
                    )
                    return self.get(config.name), False
                except elasticsearch.ConflictError:
                    continue
        raise RuntimeError(f"bot {config.name!r} kept changing under us; try again")

    def get(self, name: str) -> BotConfig:
        with unavailable_as(self.store.url):
            doc = self.store.es.options(ignore_status=404).get(index=self._index, id=name)
        if not doc.get("found"):
            raise NotFound(f"no bot named {name!r}; `spotbot bots list` shows the registered ones", name=name)
        return BotConfig.model_validate(doc["_source"])

    def list(self) -> list[BotConfig]:
        with unavailable_as(self.store.url):
            self.store.refresh("bots")
            hits = self.store.es.search(index=self._index, size=1000, sort=[{"name": "asc"}])["hits"]["hits"]
        return [BotConfig.model_validate(h["_source"]) for h in hits]

    def delete(self, name: str) -> None:
        with unavailable_as(self.store.url):
            result = self.store.es.options(ignore_status=404).delete(index=self._index, id=name, refresh="wait_for")
        if result.get("result") != "deleted":
            raise NotFound(f"no bot named {name!r}", name=name)
