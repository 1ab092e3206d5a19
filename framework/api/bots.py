"""/bots: register (create or update, as byob.py does), list, get and delete bots, in bot_config.json's fields."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Path as PathParam, Response

from ..bot_config import resolve_references
from ..errors import ConfigError
from ..models import NAME_PATTERN, PYTHON_PREFIX, BotConfig, split_list
from ..settings import Settings
from .errors import responses
from .state import Api, api

router = APIRouter(prefix="/bots", tags=["bots"])
BotName = PathParam(pattern=NAME_PATTERN.pattern, description="the bot's name")


def check_bots_dir(settings: Settings) -> None:
    """Refuse to start with a SPOTBOT_API_BOTS_DIR that is not a folder (registrations would all fail later)."""
    if settings.api_bots_dir and not Path(settings.api_bots_dir).is_dir():
        raise ConfigError(f"{settings.api_bots_dir} is not a folder", field="SPOTBOT_API_BOTS_DIR")


@router.post("", response_model=BotConfig, status_code=201, responses={200: {"model": BotConfig, "description": "updated"},
                                                                       **responses(422, 503)})
def register(config: BotConfig, response: Response, state: Api = Depends(api)) -> BotConfig:
    """Create the bot, or update it when the name exists (201 created, 200 updated); the stored configuration.

    `python:` references (code the server's workers will run) must be .py files given relative to
    SPOTBOT_API_BOTS_DIR, without '..', and exist there; without that setting the API takes container
    images only. Module names and absolute paths are for the CLI, whose user owns the machine.
    """
    bots_dir = state.settings.api_bots_dir
    if not bots_dir:
        for field, references in (("bot_image", [config.bot_image]),
                                  ("endpoint_ecr_image_path", split_list(config.endpoint_ecr_image_path))):
            if any(reference.startswith(PYTHON_PREFIX) for reference in references):
                raise ConfigError("python: references are taken through the API only when SPOTBOT_API_BOTS_DIR names "
                                  "the folder that holds them (or register with the CLI, or use container images)",
                                  field=field)
    resolved = resolve_references(config, Path(bots_dir or "."), confined=True, forbidden=(state.settings.home,))
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
