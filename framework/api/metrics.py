"""/metrics: Prometheus' text format, read from the store and reused for SPOTBOT_METRICS_CACHE_SECONDS.

The token guards it like every other route unless SPOTBOT_METRICS_PUBLIC=true (a Prometheus
that cannot send a bearer token; it shows job ids and bot names, never a file's key).
A scrape that finds the store away answers 503, so Prometheus records the scrape as failed
instead of storing stale numbers.
"""

from __future__ import annotations

import threading
import time

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from .. import metrics
from .auth import TokenCheck
from .errors import responses
from .state import Api

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsCache:
    """The last rendering and when it was made; one collection at a time, however many scrapes arrive at once."""

    def __init__(self, state: Api):
        self.state = state
        self.seconds = state.settings.metrics_cache_seconds
        self._lock = threading.Lock()
        self._text = ""
        self._at = float("-inf")

    def text(self) -> str:
        with self._lock:
            if time.monotonic() - self._at >= self.seconds:
                self._text = metrics.render(metrics.collect(self.state.store))
                self._at = time.monotonic()
            return self._text


def install(app: FastAPI, state: Api, check: TokenCheck) -> None:
    cache = MetricsCache(state)
    dependencies = [] if state.settings.metrics_public else [Depends(check)]

    answers = responses(503) if not state.settings.metrics_public else {503: responses(503)[503]}

    # no response_class: the errors stay documented as JSON, the answer as text
    @app.get("/metrics", tags=["metrics"], dependencies=dependencies, response_model=None,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format 0.0.4"}, **answers})
    def prometheus_metrics() -> PlainTextResponse:
        """Jobs, files, workers, per-bot counters, processing times and endpoints, for Prometheus."""
        return PlainTextResponse(cache.text(), media_type=CONTENT_TYPE)
