"""/bots: register (create or update, as byob.py does), list, get and delete bots, in bot_config.json's fields."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Path as PathParam, Response

from ..bot_config import resolve_references
from ..models import NAME_PATTERN, BotConfig
from .errors import responses
from .state import Api, api

router = APIRouter(prefix="/bots", tags=["bots"])
BotName = PathParam(pattern=NAME_PATTERN.pattern, description="the bot's name")


@router.post("", response_model=BotConfig, status_code=201, responses={200: {"model": BotConfig, "description": "updated"},
                                                                       **responses(422, 503)})
def register(config: BotConfig, response: Response, state: Api = Depends(api)) -> BotConfig:
    """Create the bot, or update it when the name exists (201 created, 200 updated); the stored configuration.

    `python:` references to files are resolved against the server's working directory, as the
    CLI resolves them against the bot_config.json's folder.
    """
    resolved = resolve_references(config, Path.cwd())
    stored, created = state.store.bots.register(resolved)
    response.status_code = 201 if created else 200
    return stored


@router.get("", response_model=list[BotConfig], responses=responses(503))
def list_bots(state: Api = Depends(api)) -> list[BotConfig]:
    """Every registered bot, by name."""
    return state.store.bots.list()


@router.get("/{name}", response_model=BotConfig, responses=responses(404, 422, 503))
def get_bot(name: str = BotName, state: Api = Depends(api)) -> BotConfig:
    """One bot's stored configuration."""
    return state.store.bots.get(name)


@router.delete("/{name}", status_code=204, response_class=Response, responses=responses(404, 422, 503))
def delete_bot(name: str = BotName, state: Api = Depends(api)) -> Response:
    """Remove a bot from the registry; its jobs stay."""
    state.store.bots.delete(name)
    return Response(status_code=204)
