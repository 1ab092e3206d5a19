"""Pages from the package's Jinja templates (autoescaped), whole or just their <main> for the page's own refresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from ..auth import TokenCheck
from . import views

TEMPLATES = Path(__file__).parent / "templates"
FRAGMENT_HEADER = "X-Spotbot-Fragment"


class Renderer:
    def __init__(self, check: TokenCheck):
        self.check = check
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(when=views.when, ago=views.ago, duration=views.duration, is_image=views.is_image,
                                status_order=views.STATUS_ORDER)

    def render(self, request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        template = self.env.get_template(name)
        context = {"csrf": self.check.csrf, "auth": self.check.required, "refresh": 0, "path": request.url.path,
                   **context}
        if request.headers.get(FRAGMENT_HEADER) == "main" and "content" in template.blocks:
            # the same <main> base.html wraps the content in; its data-refresh tells the script whether to go on
            inner = "".join(template.blocks["content"](template.new_context(context)))
            html = f'<main id="main" data-refresh="{int(context["refresh"])}">{inner}</main>'
        else:
            html = template.render(context)
        # no caching by the browser or a proxy: a page shows jobs' current state, and it is behind a login
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})
