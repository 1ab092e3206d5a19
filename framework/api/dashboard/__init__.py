"""The web dashboard served by `spotbot serve` at /dashboard: pages, thumbnails, the login and its assets.

Its assets (templates, CSS, a small script) ship in the package; nothing is fetched from
elsewhere at run time. A page asked for without a session goes to the login, which trades
the API token for a session cookie (see auth.py).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from ..auth import TokenCheck
from . import pages, thumbnails
from .render import Renderer

STATIC = Path(__file__).parent / "static"


class LoginRequired(Exception):
    """A dashboard page was asked for without a valid session: show the login."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


def install(app: FastAPI, check: TokenCheck) -> None:
    """Add the dashboard's routes to the API's app."""
    app.state.dashboard = Renderer(check)

    def viewer(request: Request) -> None:
        if not check.allows(request):
            raise LoginRequired(request.url.path)

    def to_login(_: Request, exc: Exception) -> RedirectResponse:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(f"/dashboard/login?next={quote(exc.path)}", status_code=303)

    app.add_exception_handler(LoginRequired, to_login)
    app.include_router(pages.login)
    app.include_router(pages.session_routes(check))
    for router in (pages.router, thumbnails.router):
        app.include_router(router, dependencies=[Depends(viewer)])
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard", status_code=307)
