"""The HTTP API (`spotbot serve`): one FastAPI app over the same scheduler and stores as the CLI.

It plays the part API Gateway + Lambda play in the seeds: bots, jobs and endpoints over JSON,
and seed 000's ImageLabeller routes. Request bodies are the CLI's pydantic models, so the
OpenAPI schema at /openapi.json is generated from the same definitions that validate input.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .. import __version__
from ..errors import SpotbotError
from ..scheduler import Scheduler
from ..settings import Settings
from ..storage import Storage
from ..store import Store
from . import bots, dashboard, endpoints, error_groups, errors, images, jobs, metrics
from .auth import TokenCheck, check_auth
from .background import Background
from .fetch import ImageFetcher
from .guard import Guard
from .labelling import ImageLabelling
from .state import Api

log = logging.getLogger("spotbot.api")


class Health(BaseModel):
    status: str
    elasticsearch: str


def build(settings: Settings) -> Api:
    """Connect to Elasticsearch and S3 (creating missing indices) and set up the services; fails fast at start."""
    store = Store.from_settings(settings)
    storage = Storage(settings)
    # workers get the scheduler's settings as environment variables: the API's token is not theirs to see
    scheduler = Scheduler(settings.model_copy(update={"api_token": None}), store, storage)
    background = Background(scheduler)
    labelling = ImageLabelling(settings, store, storage, scheduler, background, ImageFetcher(settings))
    return Api(settings, store, storage, scheduler, background, labelling)


def create_app(settings: Settings, *, host: str = "127.0.0.1", services: Api | None = None) -> FastAPI:
    """The app, refusing to exist without a token (unless allowed, on loopback only)."""
    check_auth(settings, host)
    bots.check_bots_dir(settings)
    state = services or build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.background.start()
        state.labelling.start()
        yield
        state.background.stop()

    app = FastAPI(title="spotbot", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description=__doc__)
    app.state.api = state
    errors.install(app)
    check = TokenCheck(settings)
    # the Host header, the token, cross-site POSTs and body sizes, checked before any body is read; added before
    # the access log, which is then outside it and records what it refused too
    app.add_middleware(Guard, settings=settings, host=host, check=check)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        # the path without its query: a URL given to /submit-image may carry a signature (a presigned S3 URL)
        started = time.monotonic()
        response = await call_next(request)
        log.info("%s %s %d %.3fs", request.method, request.url.path, response.status_code, time.monotonic() - started)
        return response

    protected = [Depends(check)]

    for router in (bots.router, jobs.router, error_groups.router, endpoints.router, images.router):
        app.include_router(router, dependencies=protected)
    metrics.install(app, state, check)  # /metrics: the token unless SPOTBOT_METRICS_PUBLIC=true
    dashboard.install(app, check)  # /dashboard: pages behind a login that trades the token for a cookie

    @app.get("/health", response_model=Health, tags=["health"],
             responses={503: {"model": Health, "description": "Elasticsearch does not answer"}})
    def health() -> JSONResponse:
        """Whether the server and its Elasticsearch answer; the one route without a token."""
        try:
            state.store.engine.index_exists(state.store.index("jobs"))
        except SpotbotError:
            return JSONResponse(Health(status="unavailable", elasticsearch="unreachable").model_dump(), status_code=503)
        return JSONResponse(Health(status="ok", elasticsearch="ok").model_dump())

    @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app
