"""What every route works with (the server's Api) and the dependency that hands it to them.

Apart from app.py so the routers and the app import it, and app.py imports the routers, with no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..scheduler import Scheduler
from ..settings import Settings
from ..storage import Storage
from ..store import Store
from .background import Background
from .labelling import ImageLabelling


@dataclass
class Api:
    """What the routes work with, built once per server."""

    settings: Settings
    store: Store
    storage: Storage
    scheduler: Scheduler
    background: Background
    labelling: ImageLabelling


def api(request: Request) -> Api:
    """A route's dependency: the server's Api."""
    return request.app.state.api
