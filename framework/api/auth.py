"""The API's bearer token: required on every route but /health, compared in constant time, never logged.

The dashboard's browser sends it another way: its login exchanges the token for a session
cookie (HttpOnly, SameSite=Strict, Secure over TLS) that holds a value derived from the token,
not the token. A request that changes something and is authenticated by that cookie must also
carry the page's CSRF value in a header, which a cross-site form or script cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from ..errors import ConfigError
from ..settings import Settings

MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "spotbot_session"
CSRF_HEADER = "X-Spotbot-CSRF"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
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
        # derived from the token, so every replica of the API accepts the same cookie; changing the token ends every session
        key = token.encode() if token else secrets.token_bytes(32)
        self.session = hmac.new(key, b"spotbot dashboard session", hashlib.sha256).hexdigest()
        self.csrf = hmac.new(key, b"spotbot dashboard csrf", hashlib.sha256).hexdigest()

    @property
    def required(self) -> bool:
        return self._digest is not None

    def token_ok(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest or b"")

    def session_ok(self, request: Request) -> bool:
        return hmac.compare_digest(request.cookies.get(SESSION_COOKIE, ""), self.session)

    def csrf_ok(self, request: Request) -> bool:
        return request.method in SAFE_METHODS or hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), self.csrf)

    def allows(self, request: Request) -> bool:
        """Whether the request may pass: the bearer token, or the session cookie (with the CSRF header to change things)."""
        if self._digest is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(given.strip()):
            return True
        return self.session_ok(request) and self.csrf_ok(request)

    def __call__(self, request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if self._digest is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if self.token_ok(given):
            return
        if self.session_ok(request):
            if self.csrf_ok(request):
                return
            raise HTTPException(403, f"a request that changes something needs the {CSRF_HEADER} header of the "
                                     "dashboard's page (refused: it may come from another site)")
        raise HTTPException(401, "send the API token as `Authorization: Bearer <SPOTBOT_API_TOKEN>`",
                            headers={"WWW-Authenticate": "Bearer"})
