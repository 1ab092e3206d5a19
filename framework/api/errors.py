"""Errors as JSON: every failure the API answers is {"status", "message", "field"}, the message naming the field.

spotbot's own errors (framework/errors.py) map to one HTTP status each; request validation
(pydantic, through FastAPI) becomes 422 with the first wrong field; anything unexpected is a
500 whose details stay in the server's log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ..errors import (ConfigError, Conflict, EndpointError, ImageRefused, LaunchError, NotFound, NotReady, SpotbotError,
                      StorageError, StoreError, StoreUnavailable, TaskError, WrongState)

log = logging.getLogger("spotbot.api")

# the CLI's names for a few fields the scheduler reports, as the API's JSON calls them
API_FIELDS = {"--input": "input", "--output": "output", "--job-id": "job_id", "--bots": "workers", "JOB": "job_id",
              "job": "job_id"}
STATUS_BY_ERROR: list[tuple[type[SpotbotError], int]] = [
    (NotFound, 404),
    (WrongState, 409),
    (Conflict, 409),
    (TaskError, 422),
    (ConfigError, 422),
    (NotReady, 503),
    (StoreUnavailable, 503),
    (StoreError, 503),
    (StorageError, 503),
    (EndpointError, 503),
    (LaunchError, 503),
]
DESCRIPTIONS = {
    401: "missing or wrong bearer token",
    403: "a POST a web page could send cross-site (send JSON or an image), or a dashboard session without its header",
    404: "not found",
    409: "not possible in the current state",
    413: "too large",
    415: "not an image type the API takes",
    421: "the Host header names no address this server serves",
    422: "a field is wrong; the message names it",
    503: "Elasticsearch, S3 or a part of spotbot is not available",
}


class ErrorBody(BaseModel):
    """What every error response holds."""

    status: int = Field(description="the HTTP status code")
    message: str = Field(description="what was wrong and how to fix it; names the field when one is wrong")
    field: str | None = Field(None, description="the request field at fault, when there is one")


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (401 always: every route but /health needs the token)."""
    return {code: {"model": ErrorBody, "description": DESCRIPTIONS[code]} for code in sorted({401, *codes})}


def error_response(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(status=status, message=message, field=field).model_dump(), status_code=status,
                        headers=headers)


def status_of(exc: SpotbotError) -> int:
    if isinstance(exc, ImageRefused):
        return exc.status
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(exc, kind)), 500)


def spotbot_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpotbotError)
    status = status_of(exc)
    message, field = str(exc), getattr(exc, "field", None)
    if field in API_FIELDS:
        message = message.replace(f"{field}:", f"{API_FIELDS[field]}:", 1)
        field = API_FIELDS[field]
    for option, name in API_FIELDS.items():
        if option.startswith("--"):
            message = message.replace(option, name)
    if status >= 500:
        log.warning("answered %d: %s", status, message)
    return error_response(status, message, field)


def validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(part) for part in first.get("loc", ())]
    field = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "request")
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    kind = first.get("type", "")
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not a field of this request"
    elif kind == "json_invalid":
        field, message = "body", f"is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    elif kind in ("model_attributes_type", "dict_type") and field == "body":
        message = "must be a JSON object"
    return error_response(422, f"{field}: {message}", field)


def http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (no such route, method not allowed, 401 from auth) in the same shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # FastAPI's "error parsing the body" (bytes that are not UTF-8): bad input, as all others
        return error_response(422, f"body: could not be read as JSON ({exc.detail})", "body")
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "field", None),
                          headers=getattr(exc, "headers", None))


def unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error", exc_info=exc)
    return error_response(500, "internal error; the server's log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(SpotbotError, spotbot_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
