"""One error shape for every answer: {"error": {"code", "message", "details"}}.

Only this module knows which HTTP status a domain error means.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import psycopg
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DataError, DBAPIError

from domain.errors import DomainError, TooManyRequests

log = structlog.get_logger()

STATUS_BY_CODE = {
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "insufficient_credits": 402,
    "invalid_input": 422,
    "batch_too_large": 422,
    "payment_channel_unavailable": 502,
    "not_found": 404,
    "conflict": 409,
    "too_late": 409,
    "unsupported_media_type": 415,
    "illegal_transition": 409,
}


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    code: str  # stable, snake_case: what a client branches on
    message: str  # for people
    details: dict[str, Any]  # e.g. `field` for invalid_input, `retry_after_s` for rate_limited


class Error(msgspec.Struct, forbid_unknown_fields=True):
    """Every error answer's body (the OpenAPI document's `Error`)."""

    error: ErrorDetail


# The code of an HTTP error Litestar itself raises, by status; any other is named after its detail.
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_entity_too_large"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _respond(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(error_body(code, message, details), status_code=status, media_type=MediaType.JSON, headers=headers)


def on_domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, TooManyRequests) else None
    return _respond(STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message, exc.details, headers)


def on_validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's body/query validation: 422, naming each offending field."""
    problems = [_problem(item) for item in (exc.extra or [])] if isinstance(exc.extra, list) else []
    field = problems[0]["field"] if problems else None
    message = problems[0]["message"] if problems else str(exc.detail)
    return _respond(422, "invalid_input", message, {"field": field, "problems": problems})


def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (and its exceptions raised here), with their headers: a 405's `Allow`."""
    if isinstance(exc, NotAuthorizedException):
        return _respond(401, "unauthorized", exc.detail, headers=exc.headers)
    named = re.sub(r"[^a-z0-9]+", "_", str(exc.detail).lower()).strip("_")
    code = HTTP_CODES.get(exc.status_code) or named or "http_error"
    extra = exc.extra if isinstance(exc.extra, dict) else None
    return _respond(exc.status_code, code, exc.detail, extra, exc.headers)


def on_undecodable(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A body the JSON decoder cannot take at all: not UTF-8, or nested deeper than it recurses."""
    reason = "nested too deeply" if isinstance(exc, RecursionError) else "not UTF-8 text"
    return _respond(400, "bad_request", f"the request body cannot be read: {reason}")


def on_unstorable(_: Request[Any, Any, Any], exc: DataError) -> Response[Any]:
    """The last net: a value the database cannot hold (a NUL byte in text, a number out of range).
    Ids and cursors are checked before they get this far; anything else that does is still the
    client's input, not our failure."""
    log.warning("unstorable_input", error=type(exc.orig).__name__ if exc.orig else "DataError")
    return _respond(400, "bad_request", "a value in the request cannot be used (a NUL byte, or out of range)")


def on_database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    """A connection the database dropped (a restart, a failover): the pool reconnects for the next
    request, so the client is told to retry (connections are not pinged before each use)."""
    if exc.connection_invalidated:
        log.warning("database_connection_lost", error=type(exc.orig).__name__ if exc.orig else "DBAPIError")
        return _respond(503, "unavailable", "the database connection was lost; retry", headers={"Retry-After": "1"})
    return on_unexpected(request, exc)


def on_connection_lost(request: Request[Any, Any, Any], exc: psycopg.OperationalError) -> Response[Any]:
    """The same, caught by the driver before SQLAlchemy wrapped it: a connection found closed while
    a checkout switched it to autocommit (`infra.db.reads`). SQLAlchemy discards it on return."""
    log.warning("database_connection_lost", error=type(exc).__name__)
    return _respond(503, "unavailable", "the database connection was lost; retry", headers={"Retry-After": "1"})


def on_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled_error", error=repr(exc))
    return _respond(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "something went wrong on our side")


_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`")


def _problem(item: Any) -> dict[str, Any]:
    raw = str(item.get("message", "")) if isinstance(item, dict) else str(item)
    key = item.get("key") if isinstance(item, dict) else None
    if key and str(item.get("source", "")).lower().endswith("header"):  # named as the client sends it
        key = "-".join(part.capitalize() for part in str(key).split("_"))
    match = _MSGSPEC_PATH.search(raw)
    named = _named_field(raw)
    field: str | None = named or key
    if match:
        field = ".".join(p for p in (msgspec_path(match.group("path")), named) if p)
    return {"field": field, "message": _MSGSPEC_PATH.sub("", raw) or raw}


def msgspec_path(path: str) -> str:
    """msgspec's `$.input.scene` / `$[0]` style path -> `input.scene` / `0`."""
    return re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".")


def _named_field(message: str) -> str | None:
    """The field msgspec names in 'missing required field `x`' / 'unknown field `x`'."""
    match = re.search(r"(?:missing required|unknown) field `([^`]+)`", message)
    return match.group(1) if match else None


HANDLERS: dict[type[Exception] | int, Any] = {
    DomainError: on_domain_error,
    ValidationException: on_validation_error,
    HTTPException: on_http_error,
    RecursionError: on_undecodable,
    DataError: on_unstorable,
    DBAPIError: on_database_error,
    psycopg.OperationalError: on_connection_lost,
    UnicodeDecodeError: on_undecodable,
    Exception: on_unexpected,
}
