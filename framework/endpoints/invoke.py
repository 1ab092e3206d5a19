"""Invoking an endpoint that speaks the serving contract over HTTP (process and container backends)."""

from __future__ import annotations

import requests
import requests.adapters

from ..errors import EndpointError
from ..models import Endpoint
from ..settings import Settings


class HttpInvoker:
    def __init__(self, settings: Settings):
        self.timeout = settings.endpoint_timeout
        # one session for all of a worker's threads (requests shares its pool safely for plain POSTs); as many
        # kept connections as files in flight, so concurrent calls do not open and drop connections
        self.session = requests.Session()
        pool = max(10, 2 * settings.concurrency)
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool))
        self.session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool))

    def invoke(self, endpoint: Endpoint, body: bytes, content_type: str, accept: str) -> bytes:
        """One POST /invocations. Unreachable, timeouts, 429 and 5xx raise a transient EndpointError."""
        try:
            response = self.session.post(endpoint.url + "/invocations", data=body,
                                         headers={"Content-Type": content_type, "Accept": accept}, timeout=self.timeout)
        except requests.Timeout:
            raise EndpointError(f"endpoint {endpoint.name!r} did not answer within {self.timeout:g}s",
                                name=endpoint.name, transient=True) from None
        except requests.ConnectionError:
            raise EndpointError(f"cannot reach endpoint {endpoint.name!r} at {endpoint.url}",
                                name=endpoint.name, transient=True, unreachable=True) from None
        if response.status_code == 200:
            return response.content
        raise EndpointError(
            f"endpoint {endpoint.name!r} answered {response.status_code}: {response.text[:500]}",
            name=endpoint.name, status=response.status_code,
            transient=response.status_code >= 500 or response.status_code == 429,
        )
