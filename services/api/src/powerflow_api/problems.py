"""Errors as RFC 9457 problem details (``application/problem+json``), never a bare 500 for input."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import OperationalError

from powerflow_api.enrolments import BROKER_NOT_CONFIGURED, ENROLMENT_STATUS, RETRY_AFTER_S
from powerflow_api.schemas import Problem
from powerflow_common.bounds import OutOfBounds
from powerflow_common.errors import EnrolmentError, PowerflowError
from powerflow_common.logs import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


# A route handler's ``opt`` key naming the setting of its body cap, when not the general one.
BODY_LIMIT_SETTING = "body_limit_setting"


class ApiError(HTTPException, PowerflowError):
    """An error with an actionable ``detail`` that a client can fix (or wait out)."""


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    """A problem+json response."""
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _errors(extra: Any) -> list[dict[str, str]] | None:
    if not isinstance(extra, list):
        return None
    out = []
    for item in extra:
        if isinstance(item, dict):
            out.append({str(k): str(v) for k, v in item.items() if v is not None})
    return out or None


def http_exception_handler(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[Problem]:
    """Litestar's and our HTTP errors, as problem+json."""
    status = exc.status_code
    detail = exc.detail or _TITLES.get(status, "Error")
    errors = _errors(exc.extra)
    if isinstance(exc, ValidationException) and errors:
        # Name the offending parameters so a person can fix the request.
        parts = [f"{e.get('key', '?')}: {e.get('message', '')}" for e in errors]
        detail = f"Invalid request: {'; '.join(parts)}"
    return problem_response(
        status, detail, instance=request.url.path, errors=errors, headers=exc.headers
    )


def too_large_handler(
    request: Request[Any, Any, Any], exc: RequestEntityTooLarge
) -> Response[Problem]:
    """A body over its route's cap: 413 naming the cap and the setting that sets it."""
    handler = request.route_handler
    limit = handler.resolve_request_max_body_size()
    setting = str(handler.opt.get(BODY_LIMIT_SETTING, "api_max_body_bytes"))
    return problem_response(
        413,
        f"The request body is larger than this endpoint accepts ({limit} bytes, setting "
        f"{setting}); send less (ingest: split the batch).",
        instance=request.url.path,
        errors=[{"key": "limit", "message": setting}],
    )


def out_of_bounds_handler(request: Request[Any, Any, Any], exc: OutOfBounds) -> Response[Problem]:
    """A value outside its range (a time in year 1, an id beyond the id column): 400."""
    return problem_response(
        400,
        f"Invalid request: {exc}",
        instance=request.url.path,
        errors=[{"key": exc.name, "message": exc.message}],
    )


def enrolment_error_handler(
    request: Request[Any, Any, Any], exc: EnrolmentError
) -> Response[Problem]:
    """An enrolment or revocation refused (422/404/409) or stopped by the broker or the
    database (503, with Retry-After unless only configuration can fix it). ``errors`` carries
    the machine-readable reason, as the CLI prints it."""
    status = ENROLMENT_STATUS.get(exc.reason)
    if status is None:  # a reason nobody mapped: a bug, logged as one
        return internal_error_handler(request, exc)
    retry = status in (409, 503) and exc.reason != BROKER_NOT_CONFIGURED
    if status == 503:
        log.error("enrolment_unavailable", path=request.url.path, reason=exc.reason)
    return problem_response(
        status,
        exc.detail,
        instance=request.url.path,
        errors=[{"key": "reason", "message": exc.reason}],
        headers={"Retry-After": str(RETRY_AFTER_S)} if retry else None,
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """A bug or an outage: log it with its traceback (no query string), answer problem+json."""
    log.error(
        "request_failed",
        method=request.method,
        path=request.url.path,
        error=type(exc).__name__,
        exc_info=exc,
    )
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "The server failed to answer; the error was logged. Retry, and report it if it persists.",
        instance=request.url.path,
    )


def database_unavailable_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Problem]:
    """The database is down or unreachable: 503, so clients and balancers retry elsewhere."""
    log.error("database_unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        503,
        "The database is unreachable; retry shortly (see /readyz).",
        instance=request.url.path,
        headers={"Retry-After": "5"},
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RequestEntityTooLarge: too_large_handler,
    HTTPException: http_exception_handler,
    OutOfBounds: out_of_bounds_handler,
    EnrolmentError: enrolment_error_handler,
    OperationalError: database_unavailable_handler,
    Exception: internal_error_handler,
}

__all__ = ["PROBLEM_JSON", "ApiError", "MediaType", "problem_response"]
