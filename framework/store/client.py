"""The connection to Elasticsearch: one client, errors turned into spotbot's."""

from __future__ import annotations

import contextlib
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import elastic_transport
import elasticsearch

from ..errors import StoreUnavailable


def redact_url(url: str) -> str:
    """The URL without user and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def connect(url: str) -> elasticsearch.Elasticsearch:
    """A client for url; user:password in the URL becomes basic authentication."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreUnavailable(f"{redact_url(url) or url!r} is not an http(s):// Elasticsearch URL", url=redact_url(url))
    auth = (parts.username, parts.password or "") if parts.username else None
    return elasticsearch.Elasticsearch(
        redact_url(url),
        basic_auth=auth,
        request_timeout=30,
        max_retries=5,
        retry_on_timeout=True,
        retry_on_status=(429, 502, 503, 504),
    )


@contextlib.contextmanager
def unavailable_as(url: str) -> Iterator[None]:
    """Turn a connection failure into StoreUnavailable naming the URL."""
    try:
        yield
    except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
        raise StoreUnavailable(
            f"cannot reach Elasticsearch at {redact_url(url)} ({type(exc).__name__}); "
            "is it running? (`spotbot local up` starts the embedded one)",
            url=redact_url(url),
        ) from None
    except elasticsearch.ApiError as exc:
        if exc.meta.status >= 500 or exc.meta.status == 429:
            raise StoreUnavailable(
                f"Elasticsearch at {redact_url(url)} answered {exc.meta.status}: {exc.message}", url=redact_url(url)
            ) from None
        raise
