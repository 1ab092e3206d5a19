"""The API's bearer token: required on every route but /health, compared in constant time, never logged."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from ..errors import ConfigError
from ..settings import Settings

MIN_TOKEN_LENGTH = 16
MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

bearer = HTTPBearer(auto_error=False, description="the token in SPOTBOT_API_TOKEN")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth(settings: Settings, host: str) -> None:
    """Refuse to serve without a token, unless allowed and only on a loopback address."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    if not token:
        if not settings.api_allow_no_auth:
            raise ConfigError(f"is not set: every route but /health needs a bearer token; make one with `{MAKE_ONE}`, or "
                              "set SPOTBOT_API_ALLOW_NO_AUTH=true to serve without one on 127.0.0.1",
                              field="SPOTBOT_API_TOKEN")
        if not is_loopback(host):
            raise ConfigError(f"serving without a token is allowed on a loopback address only (127.0.0.1, ::1), "
                              f"not {host}; set SPOTBOT_API_TOKEN", field="--host")
        return
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"must be at least {MIN_TOKEN_LENGTH} characters; make one with `{MAKE_ONE}`",
                          field="SPOTBOT_API_TOKEN")


class TokenCheck:
    """A FastAPI dependency: 401 unless the request carries the token (or the server runs without one)."""

    def __init__(self, settings: Settings):
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        # digests of equal length, so the comparison takes the same time whatever the caller sent
        self._digest = hashlib.sha256(token.encode()).digest() if token else None

    def __call__(self, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if self._digest is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest) or not given:
            raise HTTPException(401, "send the API token as `Authorization: Bearer <SPOTBOT_API_TOKEN>`",
                                headers={"WWW-Authenticate": "Bearer"})
