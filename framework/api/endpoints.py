"""/endpoints: the recorded model endpoints and whether each answers /ping now."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import Field

from ..endpoints import EndpointManager
from ..models import Endpoint
from .errors import responses
from .state import Api, api

router = APIRouter(prefix="/endpoints", tags=["endpoints"])


class EndpointOut(Endpoint):
    healthy: bool = Field(description="whether it answered /ping just now")


@router.get("", response_model=list[EndpointOut], responses=responses(503))
def list_endpoints(state: Api = Depends(api)) -> list[EndpointOut]:
    """Every recorded endpoint, by name."""
    manager = EndpointManager(state.settings, state.store)
    return [EndpointOut(**endpoint.model_dump(), healthy=healthy) for endpoint, healthy in manager.list()]
