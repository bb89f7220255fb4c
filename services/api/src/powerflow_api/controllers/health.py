"""Liveness, readiness and Prometheus metrics (no key needed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio.to_thread
from litestar import Controller, MediaType, Request, Response, get
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from powerflow_api import schemas
from powerflow_api.state import ApiState, api_state
from powerflow_common.broker_health import drop_alarm, read_records
from powerflow_common.jetstream import stream_problems
from powerflow_common.settings import Settings

Req = Request[Any, Any, Any]


class HealthController(Controller):
    path = "/"
    tags = ["health"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/healthz")
    async def healthz(self) -> schemas.Health:
        """Liveness: the process answers."""
        return schemas.Health(status="ok")

    @get("/readyz")
    async def readyz(self, request: Req) -> Response[schemas.Readiness]:
        """Readiness: 200 when the database and NATS answer.

        Degraded (still 200): Redis down, the MQTT broker seen dropping messages recently, or
        a stream above its usage alert or still to migrate.
        """
        state = api_state(request)
        detail: dict[str, str] = {}

        def ping_db() -> None:
            with state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(anyio.to_thread.run_sync(ping_db), 3)
            database = True
        except Exception as exc:
            database, detail["database"] = False, type(exc).__name__
        nats = state.nc is not None and state.nc.is_connected
        if not nats:
            detail["nats"] = "not connected"
        streams_ok = True
        if state.nc is not None and nats:
            streams_ok = await _streams_ok(state.nc.jetstream(), state.settings, detail)
        try:
            await state.redis.ping()
            redis = True
            state.redis_succeeded()
        except Exception as exc:
            redis, detail["redis"] = False, type(exc).__name__
            state.redis_failed("readyz", exc)
            detail["redis_consequence"] = "rate limits not enforced; live tickets refused"
        broker_degraded = nats and await _broker_drops(state, detail)
        if database and nats:
            degraded = not redis or broker_degraded or not streams_ok
            status: Literal["ready", "degraded", "unavailable"] = (
                "degraded" if degraded else "ready"
            )
            code = 200
        else:
            status, code = "unavailable", 503
        return Response(
            schemas.Readiness(
                status=status, database=database, nats=nats, redis=redis, detail=detail
            ),
            status_code=code,
        )

    @get("/metrics", media_type=MediaType.TEXT)
    async def metrics(self) -> Response[bytes]:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _broker_drops(state: ApiState, detail: dict[str, str]) -> bool:
    """Whether a broker dropped messages within the alarm window (what ingest recorded)."""
    if state.nc is None:
        return False
    try:
        reading = read_records(state.nc.jetstream(), state.settings.names)
        records = await asyncio.wait_for(reading, 3)
    except Exception as exc:
        detail["broker"] = f"broker drop records unreadable: {type(exc).__name__}"
        return False
    window = timedelta(seconds=state.settings.broker_drop_alarm_window_s)
    alarm = drop_alarm(records, datetime.now(UTC), window)
    if alarm.detail:
        detail["broker"] = alarm.detail
    return alarm.degraded


async def _streams_ok(js: JetStreamContext, settings: Settings, detail: dict[str, str]) -> bool:
    """A stream near its byte limit (or still to migrate) makes the API 'degraded'."""
    try:
        problems = await asyncio.wait_for(stream_problems(js, settings), 3)
    except Exception as exc:
        problems = [f"stream check failed ({type(exc).__name__})"]
    if problems:
        detail["streams"] = "; ".join(problems)
    return not problems
