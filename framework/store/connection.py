"""How to reach Elasticsearch (a Connection, from Settings) and how a client's errors become spotbot's.

Shared by the two clients (elastic.py, opensearch.py) and by engines.py, which picks one; the
clients import this module, never engines.py, so no import runs in a circle.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, Conflict, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from ..settings import Settings


def without_credentials(url: str) -> str:
    """The URL without user and password: for connecting (credentials go apart) and for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class Connection:
    """Where and how to connect, from Settings."""

    url: str  # one URL, or several comma-separated URLs of one cluster's nodes
    engine: str = "auto"  # auto | elasticsearch | opensearch
    username: str = ""
    password: str = ""
    api_key: str = ""
    auth: str = ""  # "" (none, basic or api key) | sigv4
    region: str = "us-east-1"
    ca_certs: str = ""
    verify_certs: bool = True
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Connection":
        """Where and how to reach Elasticsearch, as the settings say."""
        if settings.es_auth not in ("", "sigv4"):
            raise ConfigError(f"{settings.es_auth!r} is not a known authentication; leave it empty or use sigv4",
                              field="SPOTBOT_ES_AUTH")
        return cls(
            url=",".join(settings.es_urls()), engine=settings.es_engine, username=settings.es_username,
            password=settings.es_password.get_secret_value() if settings.es_password else "",
            api_key=settings.es_api_key.get_secret_value() if settings.es_api_key else "",
            auth=settings.es_auth, region=settings.region, ca_certs=settings.es_ca_certs,
            verify_certs=settings.es_verify_certs,
        )

    @property
    def urls(self) -> list[str]:
        return [url.strip() for url in self.url.split(",") if url.strip()]

    @property
    def addresses(self) -> list[str]:
        """Each node's URL without credentials: what the clients connect to."""
        return [without_credentials(url) for url in self.urls]

    @property
    def address(self) -> str:
        """The nodes, for messages (a single URL reads as before)."""
        return ",".join(self.addresses)

    def basic_auth(self) -> tuple[str, str] | None:
        if self.username:
            return self.username, self.password
        for url in self.urls:  # nodes of one cluster share their users: the first URL carrying one names it
            parts = urlsplit(url)
            if parts.username:
                return parts.username, parts.password or ""
        return None

    def sigv4(self):
        """A requests auth signing with the boto3 session's credentials (refreshed when temporary)."""
        import boto3
        from requests_aws4auth import AWS4Auth

        credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            raise ConfigError("SigV4 needs AWS credentials, and the boto3 session found none", field="SPOTBOT_ES_AUTH")
        return AWS4Auth(refreshable_credentials=credentials, region=self.region, service="es")



@contextlib.contextmanager
def translated(address: str, conflict: type, not_found: type, connection_errors: tuple, api_error: type,
               status_of) -> Iterator[None]:
    """Map one client's exceptions to spotbot's."""
    try:
        yield
    except conflict:
        raise Conflict("the document changed since it was read (409)") from None
    except connection_errors as exc:
        raise StoreUnavailable(
            f"cannot reach Elasticsearch at {address} ({type(exc).__name__}); "
            "is it running? (`spotbot local up` starts the embedded one)", url=address,
        ) from None
    except api_error as exc:
        status = status_of(exc)
        if status == 429 or (isinstance(status, int) and status >= 500):
            raise StoreUnavailable(f"Elasticsearch at {address} answered {status}: {exc}", url=address) from None
        raise StoreError(f"Elasticsearch at {address} refused the request ({status}): {exc}", status=status) from None
