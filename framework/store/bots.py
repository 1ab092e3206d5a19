"""The bot registry: one document per bot, id = the bot's name."""

from __future__ import annotations

from ..errors import Conflict, Contention, NotFound
from ..models import BotConfig, seed_date
from ..settings import hide_password
from .documents import DocumentStore


class BotRegistry(DocumentStore):
    kind = "bots"

    def register(self, config: BotConfig) -> tuple[BotConfig, bool]:
        """Create the bot, or update it when the name exists; returns (stored config, created)."""
        config = config.model_copy(update={"es_url": hide_password(config.es_url)})  # never store a password
        for _ in range(10):
            current = self.engine.get(self._index, config.name)
            if current is None:
                try:
                    self.engine.create(self._index, config.name, config.model_dump(), refresh="wait_for")
                    return self.get(config.name), True
                except Conflict:
                    continue
            # an update keeps the first registration's create_date; the document is replaced whole,
            # conditionally on what we read, so no script and no user string ever reaches a query
            stored = config.model_copy(update={"create_date": current["_source"]["create_date"], "update_date": seed_date()})
            try:
                self.engine.put(self._index, config.name, stored.model_dump(), if_seq_no=current["_seq_no"],
                                if_primary_term=current["_primary_term"], refresh="wait_for")
                return self.get(config.name), False
            except Conflict:
                continue
        raise Contention(f"bot {config.name!r} kept changing under us; try again", name=config.name)

    def get(self, name: str) -> BotConfig:
        doc = self.engine.get(self._index, name)
        if doc is None:
            raise NotFound(f"no bot named {name!r}; `spotbot bots list` shows the registered ones", name=name)
        return BotConfig.model_validate(doc["_source"])

    def list(self) -> list[BotConfig]:
        """Every registered bot, by name (page by page: none is left out)."""
        self.store.refresh("bots")
        return [BotConfig.model_validate(h["_source"]) for h in self._all({"query": {"match_all": {}}}, [{"name": "asc"}])]

    def delete(self, name: str) -> None:
        if not self.engine.delete(self._index, name, refresh="wait_for"):
            raise NotFound(f"no bot named {name!r}", name=name)
