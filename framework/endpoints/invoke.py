"""Invoking an endpoint that speaks the serving contract over HTTP (process and container backends)."""

from __future__ import annotations

import random
import time

import requests

from ..errors import EndpointError
from ..models import Endpoint
from ..settings import Settings

TRANSIENT_STATUS = {429, 502, 503, 504}
TRIES = 5


class HttpInvoker:
    def __init__(self, settings: Settings):
        self.timeout = settings.endpoint_timeout
        self.session = requests.Session()

    def invoke(self, endpoint: Endpoint, body: bytes, content_type: str, accept: str) -> bytes:
        """POST /invocations; connection failures and 429/502/503/504 are retried with backoff and jitter."""
        url = endpoint.url + "/invocations"
        for attempt in range(1, TRIES + 1):
            try:
                response = self.session.post(
                    url, data=body, headers={"Content-Type": content_type, "Accept": accept}, timeout=self.timeout
                )
            except requests.Timeout:
                raise EndpointError(f"endpoint {endpoint.name!r} did not answer within {self.timeout:.0f}s", name=endpoint.name) from None
            except requests.ConnectionError:
                if attempt == TRIES:
                    raise EndpointError(f"cannot reach endpoint {endpoint.name!r} at {endpoint.url}", name=endpoint.name) from None
            else:
                if response.status_code == 200:
                    return response.content
                if response.status_code not in TRANSIENT_STATUS or attempt == TRIES:
                    raise EndpointError(
                        f"endpoint {endpoint.name!r} answered {response.status_code}: {response.text[:500]}",
                        name=endpoint.name,
                        status=response.status_code,
                    )
            time.sleep(min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")
