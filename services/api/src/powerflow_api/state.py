"""What one API process holds: settings, database engine, Redis and NATS clients."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from litestar.connection import ASGIConnection
from sqlalchemy import Engine

from powerflow_api import metrics
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from powerflow_api.live import LiveHub
    from powerflow_api.throttle import FailureThrottle, KnownKeys

log = get_logger(__name__)

_LOUD_EVERY_S = 30.0


@dataclass
class ApiState:
    """Shared by every request of one process (the app's ``state.api``)."""

    settings: Settings
    engine: Engine
    redis: aioredis.Redis
    hub: LiveHub
    auth_throttle: FailureThrottle
    known_keys: KnownKeys
    nc: NATS | None = None
    redis_ok: bool = True
    _last_redis_log: float = field(default=0.0)

    def key(self, *parts: str) -> str:
        """A Redis key in this namespace, so tests and tenants sharing one Redis never meet."""
        return ":".join(["powerflow", self.settings.namespace or "-", *parts])

    def redis_failed(self, what: str, exc: BaseException) -> None:
        """Record a Redis failure loudly: log (at most every 30 s), metric, readiness."""
        metrics.REDIS_ERRORS.inc()
        metrics.REDIS_UP.set(0)
        now = time.monotonic()
        if self.redis_ok or now - self._last_redis_log > _LOUD_EVERY_S:
            log.error(
                "redis_unavailable",
                during=what,
                error=type(exc).__name__,
                consequence="rate limits are not enforced (fail open); live tickets refused",
            )
            self._last_redis_log = now
        self.redis_ok = False

    def redis_succeeded(self) -> None:
        if not self.redis_ok:
            log.warning("redis_available_again")
        self.redis_ok = True
        metrics.REDIS_UP.set(1)


def api_state(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiState:
    """The process's ApiState from a request or socket."""
    return cast(ApiState, connection.app.state.api)
