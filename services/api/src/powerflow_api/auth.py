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
    """Authenticate ``Authorization: Bearer pf_...`` and count the request against the key."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
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
        state = api_state(connection)
        principal = await anyio.to_thread.run_sync(authenticate_key, state.engine, key.strip())
        if principal is None:
            raise NotAuthorizedException(
                "Unknown or revoked API key: check it, or ask an admin for a new one."
            )
        await enforce_rate_limit(state, principal)
        return AuthenticationResult(user=principal, auth=None)


async def enforce_rate_limit(state: ApiState, principal: Principal) -> None:
    """A fixed window per key, shared by every API process through Redis.

    Fails open when Redis is down (logged, metric, /readyz), so an outage of the
    limiter does not take reads down with it; keys are still checked.
    """
    settings = state.settings
    window_s = settings.api_rate_limit_window_s
    window = int(time.time() // window_s)
    counter = state.key("ratelimit", str(principal.key_id), str(window))
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, window_s + 1)
        count, _ = await pipe.execute()
    except (RedisError, OSError, TimeoutError) as exc:
        state.redis_failed("rate_limit", exc)
        return
    state.redis_succeeded()
    if int(count) > settings.api_rate_limit_per_window:
        metrics.RATE_LIMITED.inc()
        retry_after = max(1, (window + 1) * window_s - int(time.time()))
        raise ApiError(
            status_code=429,
            detail=(
                f"Rate limit of {settings.api_rate_limit_per_window} requests per "
                f"{window_s} s for this key exceeded; retry after {retry_after} s."
            ),
            headers={"Retry-After": str(retry_after)},
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
