"""Bearer API keys, roles as guards, and per-key rate limits counted in Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from redis.exceptions import RedisError

from powerflow_api import metrics
from powerflow_api.keys import Principal, Role, authenticate_key
from powerflow_api.problems import ApiError
from powerflow_api.state import ApiState, api_state

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


class KeyAuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticate ``Authorization: Bearer pf_...`` and count the request against the key.

    An address with too many failed attempts is answered 429 before its key is looked up.
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        state = api_state(connection)
        address = client_address(connection)
        if not state.known_keys.knows(_bearer_key(connection)):
            check_auth_throttle(state, address)
        try:
            principal = await _authenticate(state, connection)
        except NotAuthorizedException:
            fail_auth(state, address)
            raise
        state.known_keys.remember(_bearer_key(connection))
        await enforce_rate_limit(state, principal)
        return AuthenticationResult(user=principal, auth=None)


def _bearer_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The key of an ``Authorization: Bearer`` header ("" when there is none)."""
    scheme, _, key = connection.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


async def _authenticate(
    state: ApiState, connection: ASGIConnection[Any, Any, Any, Any]
) -> Principal:
    header = connection.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise NotAuthorizedException(
            "Missing API key: send 'Authorization: Bearer pf_...' "
            "(an admin creates one with 'powerflow keys create --name NAME --role viewer')."
        )
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException(
            "Malformed Authorization header: expected 'Bearer pf_<prefix>_<secret>'."
        )
    principal = await anyio.to_thread.run_sync(authenticate_key, state.engine, key.strip())
    if principal is None:
        raise NotAuthorizedException(
            "Unknown or revoked API key: check it, or ask an admin for a new one."
        )
    return principal


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The caller's address (behind a proxy of api_trusted_proxies: X-Forwarded-For)."""
    client = connection.client
    return client.host if client is not None else "unknown"


def check_auth_throttle(state: ApiState, address: str) -> None:
    """429 (naming the limit) while ``address`` has used up its failed authentications."""
    retry_after = state.auth_throttle.retry_after_s(address)
    if retry_after is None:
        return
    metrics.AUTH_THROTTLED.inc()
    settings = state.settings
    raise ApiError(
        status_code=429,
        detail=(
            "Too many failed authentications from this address (limit api_auth_failures: "
            f"{settings.api_auth_failures_burst} at once, then "
            f"{settings.api_auth_failures_per_minute:g} a minute); retry after {retry_after} s."
        ),
        headers={"Retry-After": str(retry_after)},
        extra=[{"key": "limit", "message": "api_auth_failures"}],
    )


def fail_auth(state: ApiState, address: str) -> None:
    """Count a failed authentication (a missing, malformed, unknown or revoked key or ticket)."""
    metrics.AUTH_FAILURES.inc()
    state.auth_throttle.failed(address)


async def enforce_rate_limit(state: ApiState, principal: Principal) -> None:
    """A fixed window per key, shared by every API process through Redis.

    Fails open when Redis is down (logged, metric, /readyz), so an outage of the
    limiter does not take reads down with it; keys are still checked.
    """
    settings = state.settings
    counted = await _count_in_window(
        state, "ratelimit", principal, settings.api_rate_limit_window_s, "rate_limit"
    )
    if counted is None or counted[0] <= settings.api_rate_limit_per_window:
        return
    metrics.RATE_LIMITED.inc()
    retry_after = counted[1]
    raise ApiError(
        status_code=429,
        detail=(
            f"Rate limit of {settings.api_rate_limit_per_window} requests per "
            f"{settings.api_rate_limit_window_s} s for this key exceeded (limit api_rate_limit); "
            f"retry after {retry_after} s."
        ),
        headers={"Retry-After": str(retry_after)},
        extra=[{"key": "limit", "message": "api_rate_limit"}],
    )


async def _count_in_window(
    state: ApiState, counter: str, principal: Principal, window_s: int, what: str
) -> tuple[int, int] | None:
    """Count one more in this key's fixed window of ``window_s`` (shared through Redis):
    (the count so far, seconds until the window ends), or None while Redis is away."""
    window = int(time.time() // window_s)
    key = state.key(counter, str(principal.key_id), str(window))
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
        count, _ = await pipe.execute()
    except (RedisError, OSError, TimeoutError) as exc:
        state.redis_failed(what, exc)
        return None
    state.redis_succeeded()
    return int(count), max(1, (window + 1) * window_s - int(time.time()))


async def enforce_report_limit(state: ApiState, principal: Principal) -> None:
    """Reports requested per key in a fixed window (each one calls the model), through Redis.

    Fails open when Redis is down, like the request rate limit (logged, metric, /readyz).
    """
    settings = state.settings
    window_s = settings.api_reports_window_s
    counted = await _count_in_window(state, "reports", principal, window_s, "report_limit")
    if counted is None or counted[0] <= settings.api_reports_per_key:
        return
    metrics.RATE_LIMITED.inc()
    retry_after = counted[1]
    raise ApiError(
        status_code=429,
        detail=(
            f"This key has requested {settings.api_reports_per_key} reports in this "
            f"{window_s} s window (limit api_reports_per_key); retry after {retry_after} s."
        ),
        headers={"Retry-After": str(retry_after)},
        extra=[{"key": "limit", "message": "api_reports_per_key"}],
    )


def requires(role: Role) -> Guard:
    """A guard letting through keys of ``role`` or above (device keys read nothing)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            raise NotAuthorizedException("Missing API key.")
        if not principal.at_least(role):
            raise PermissionDeniedException(
                f"This needs a key with role '{role}' or above; this key's role is "
                f"'{principal.role}'."
            )

    guard.__name__ = f"requires_{role}"
    return guard


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated principal of a request that passed a guard."""
    principal = connection.scope.get("user")
    assert isinstance(principal, Principal)  # the auth middleware ran
    return principal
