"""Retrying transient failures (a server restarting, a 5xx, a timeout) with capped backoff and jitter."""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from .errors import SpotbotError

log = logging.getLogger("spotbot.retry")
T = TypeVar("T")

FIRST_DELAY = 0.2
MAX_DELAY = 10.0


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, SpotbotError) and bool(getattr(exc, "transient", False))


def retrying(call: Callable[[], T], *, seconds: float, what: str, before_retry: Callable[[], None] | None = None) -> T:
    """call(), again and again while it fails transiently, for at most `seconds`; then the last error."""
    deadline = time.monotonic() + seconds
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except SpotbotError as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
        time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 -- jitter of a backoff, not a secret
        delay = min(MAX_DELAY, delay * 2)
        if before_retry:
            before_retry()
