"""What every request meets before the app reads a byte of its body: a pure ASGI middleware.

FastAPI reads and parses a JSON body before a route's dependencies (the token check among them)
run, so a check there comes too late: anyone who can reach the port could make the server buffer
a body of any size. Here, from the request line and headers alone, in this order:

1. Host must name an address the server serves (loopback names, the bound address,
   SPOTBOT_API_ALLOWED_HOSTS): a web page that rebinds its own DNS name to 127.0.0.1 still sends
   its own name, and gets 421;
2. a request that carries a body, or changes something (any method but GET, HEAD, OPTIONS),
   needs the token: the bearer header, or the dashboard's session cookie with its CSRF header
   (401, or 403 for a session without the header). GETs without a body keep the routes' own
   checks (the dashboard's pages redirect to the login, /metrics may be public);
3. a POST must be one no web page can send cross-site without a CORS preflight, which this
   server never grants (it sets no Access-Control-* header): a JSON or image Content-Type, an
   Authorization header, or the dashboard's X-Spotbot-CSRF header (403). With a token this
   always holds; without one (SPOTBOT_API_ALLOW_NO_AUTH) it is what stops a cross-site form;
4. a body is capped (413): SPOTBOT_API_FETCH_MAX_BYTES for an image upload (POST /images),
   SPOTBOT_API_MAX_BODY_BYTES for every other. A declared Content-Length past the cap is refused
   unread; a body sent without one (chunked) is counted as the app reads it and refused as soon
   as it passes the cap.
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from .auth import CSRF_HEADER, SAFE_METHODS, TokenCheck
from .errors import error_response

log = logging.getLogger("spotbot.api")

UPLOAD_PATH = "/images"
# the Content-Types a page may POST cross-site without a preflight (the CORS "simple" ones), and none at all
SIMPLE_TYPES = ("", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# the addresses that mean "every address" when bound: compared with, never bound to
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104


class BodyTooLarge(HTTPException):
    """A body that grew past its cap while the app read it (FastAPI lets HTTPExceptions from its body reading through)."""

    field = "body"

    def __init__(self, limit: int):
        super().__init__(413, f"body: is larger than {limit} bytes")


def allowed_hosts(bound: str, extra: str) -> set[str]:
    """The names a Host header may carry: loopback names, the bound address, and SPOTBOT_API_ALLOWED_HOSTS."""
    names = {name.strip().lower().strip("[]") for name in extra.split(",") if name.strip()}
    names.update(LOOPBACK_NAMES)
    host = bound.strip().strip("[]").lower()
    if host not in WILDCARDS:
        names.add(host)
    return names


def host_name(header: str) -> str:
    """The name in a Host header, without its port ('[::1]:8080' -> '::1', 'example.org:80' -> 'example.org')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") > 1:  # a bare IPv6 address: colons but no port
        return header
    return header.partition(":")[0]


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Guard:
    """The ASGI middleware; settings, the bound host and the app's TokenCheck are given by create_app."""

    def __init__(self, app: ASGIApp, *, settings: Settings, host: str, check: TokenCheck):
        self.app = app
        self.check = check
        self.hosts = allowed_hosts(host, settings.api_allowed_hosts)
        # bound to every address: any of the machine's addresses may be asked for by number. A DNS-rebinding page
        # sends its own name, never an address, so numbers stay safe; names must still be listed
        self.any_address = host.strip().strip("[]") in WILDCARDS
        self.json_limit = settings.api_max_body_bytes
        self.upload_limit = settings.api_fetch_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # headers and cookies only: nothing here calls receive()
        limit = self.upload_limit if scope["path"] == UPLOAD_PATH and scope["method"] == "POST" else self.json_limit
        refusal = self.refusal(request, limit)
        if refusal is not None:
            status, message, field, headers = refusal
            # the body is never read; the connection is closed after the answer, so nothing more of it is taken
            response = error_response(status, message, field, headers={**headers, "Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, capped(receive, limit), send)

    def refusal(self, request: Request, limit: int) -> tuple[int, str, str | None, dict[str, str]] | None:
        """(status, message, field, headers) of the answer that refuses the request, or None to let it in."""
        headers = request.headers
        host = headers.get("host")
        if host is not None:
            name = host_name(host)
            if name not in self.hosts and not (self.any_address and is_address(name)):
                log.info("refused a request for host %r", host[:100])
                return 421, ("Host: this server does not answer to that name; add it to SPOTBOT_API_ALLOWED_HOSTS "
                             "if it is the server's"), "Host", {}
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")
        if self.check.required and (has_body or request.method not in SAFE_METHODS) and not self.check.allows(request):
            if self.check.session_ok(request):
                return 403, (f"{CSRF_HEADER}: a request that changes something needs the dashboard page's header "
                             "(refused: it may come from another site)"), CSRF_HEADER, {}
            return 401, "send the API token as `Authorization: Bearer <SPOTBOT_API_TOKEN>`", None, \
                {"WWW-Authenticate": "Bearer"}
        if request.method == "POST" and not self.intended(headers):
            return 403, ("Content-Type: a POST must send JSON (application/json) or an image, or carry the "
                         f"Authorization or {CSRF_HEADER} header (a cross-site form can do none of these)"), \
                "Content-Type", {}
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            return 413, f"body: is larger than {limit} bytes", "body", {}
        return None

    @staticmethod
    def intended(headers) -> bool:
        """Whether a POST is one a page could not send cross-site without a preflight."""
        if "authorization" in headers or CSRF_HEADER.lower() in headers:
            return True
        return headers.get("content-type", "").split(";")[0].strip().lower() not in SIMPLE_TYPES


def capped(receive: Receive, limit: int) -> Receive:
    """receive(), refusing the body as soon as more than limit bytes of it have arrived."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_capped
