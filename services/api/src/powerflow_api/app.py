"""The Litestar application: REST under /api/v1, the live socket, health, the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import redis.asyncio as aioredis
from litestar import Litestar, MediaType, Router, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from powerflow_api import metrics
from powerflow_api.auth import KeyAuthMiddleware
from powerflow_api.controllers.alerts import AlertController, AlertRuleController
from powerflow_api.controllers.baselines import BaselineController
from powerflow_api.controllers.corrections import CorrectionController
from powerflow_api.controllers.devices import DeviceController
from powerflow_api.controllers.health import HealthController
from powerflow_api.controllers.ingest import IngestController
from powerflow_api.controllers.live import LiveController
from powerflow_api.controllers.me import MeController
from powerflow_api.controllers.readings import LatestController, ReadingController
from powerflow_api.controllers.reports import ReportController
from powerflow_api.controllers.sites import SiteController
from powerflow_api.controllers.stats import StatsController
from powerflow_api.controllers.tariffs import CostController, SiteTariffController, TariffController
from powerflow_api.keys import active_key_ids
from powerflow_api.live import LiveHub
from powerflow_api.problems import EXCEPTION_HANDLERS
from powerflow_api.state import ApiState
from powerflow_api.throttle import FailureThrottle, KnownKeys
from powerflow_common.admission import legacy_codes
from powerflow_common.db.engine import make_engine
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)

PACKAGE_STATIC = Path(__file__).with_name("static")

_PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>powerflow</title></head>
<body><h1>powerflow</h1><p>The dashboard is not built yet. The API is at
<a href="/schema">/schema</a> (OpenAPI: <a href="/schema/openapi.json">openapi.json</a>).</p>
</body></html>"""


def access_log(app: ASGIApp) -> ASGIApp:
    """Log and count each HTTP request: path without its query string, never a key."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except Exception as exc:
            # Raised before a response started (e.g. by the auth middleware): the exception
            # handlers answer outside this middleware, with the status the exception maps to.
            status = _status_of(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            metrics.LATENCY.labels(route).observe(elapsed)
            user = scope.get("user")
            log.info(
                "http_request",
                method=method,
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 1),
                key=getattr(user, "name", None),
            )

    return middleware


def _status_of(exc: Exception) -> int:
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 503 if isinstance(exc, OperationalError) else 500


async def _connect_nats_forever(state: ApiState, stop: asyncio.Event) -> None:
    """Connect to NATS (retrying until stopped) and subscribe the live hub to readings."""
    delay = 0.5
    while not stop.is_set():
        try:
            nc = await connect_nats(state.settings, name="powerflow-api")
        except Exception as exc:
            log.error("nats_unavailable", error=type(exc).__name__, retry_in_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
            continue
        # HTTP ingest publishes to the streams: make sure they exist, as every worker does.
        try:
            await ensure_streams(
                nc.jetstream(timeout=state.settings.nats_timeout_s), state.settings
            )
        except Exception as exc:
            log.error("jetstream_streams_unavailable", error=type(exc).__name__)
        await nc.subscribe(state.settings.names.readings_wildcard, cb=state.hub.on_message)
        state.nc = nc
        log.info("live_subscribed", subject=state.settings.names.readings_wildcard)
        return


async def _close_revoked_sockets(state: ApiState, stop: asyncio.Event) -> None:
    """Every api_live_key_check_s, close the live sockets whose key was revoked since.

    One query for all open sockets' keys, so the cost does not grow with sockets; a revoked
    key's socket is closed at most api_live_key_check_s after the revocation.
    """
    interval = state.settings.api_live_key_check_s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        key_ids = state.hub.key_ids()
        if stop.is_set() or not key_ids:
            continue
        try:
            active = await anyio.to_thread.run_sync(active_key_ids, state.engine, key_ids)
        except Exception as exc:
            # Sockets stay open until the database answers again; said loudly.
            log.error("live_key_check_failed", error=type(exc).__name__)
            continue
        state.hub.close_keys(key_ids - active)


async def _refresh_legacy_codes(state: ApiState, stop: asyncio.Event) -> None:
    """Keep the live hub's list of legacy-topic devices current (every api_live_key_check_s):
    an enrolment or revocation shows in the live view within that interval."""
    while not stop.is_set():
        try:
            state.hub.legacy_codes = await anyio.to_thread.run_sync(legacy_codes, state.engine)
        except Exception as exc:
            # The last list stays (readings of other devices are unaffected); said loudly.
            log.error("live_legacy_codes_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), state.settings.api_live_key_check_s)


def create_app(settings: Settings, *, engine: Engine | None = None) -> Litestar:
    """The API for these settings; pass ``engine`` to share one (tests)."""
    owned_engine = engine is None
    db = engine or make_engine(settings.database_url.get_secret_value(), pool_size=10)
    state = ApiState(
        settings=settings,
        engine=db,
        redis=aioredis.from_url(
            settings.redis_connection_url(),
            socket_timeout=settings.api_redis_timeout_s,
            socket_connect_timeout=settings.api_redis_timeout_s,
        ),
        hub=LiveHub(settings.api_live_queue_size, settings.api_live_max_per_key),
        auth_throttle=FailureThrottle(
            settings.api_auth_failures_burst,
            settings.api_auth_failures_per_minute,
            settings.api_auth_tracked_addresses,
        ),
        known_keys=KnownKeys(settings.api_auth_tracked_addresses),
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_connect_nats_forever(state, stop)),
            asyncio.create_task(_close_revoked_sockets(state, stop)),
            asyncio.create_task(_refresh_legacy_codes(state, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            state.hub.close_all()
            if state.nc is not None:
                await close_nats(state.nc)
                state.nc = None
            await state.redis.aclose()
            if owned_engine:
                db.dispose()

    api = Router(
        path="/api/v1",
        route_handlers=[
            DeviceController,
            SiteController,
            ReadingController,
            LatestController,
            StatsController,
            LiveController,
            ReportController,
            MeController,
            CorrectionController,
            TariffController,
            SiteTariffController,
            CostController,
            BaselineController,
            # Alerts.
            AlertRuleController,
            AlertController,
        ],
        # Only /api/v1 needs a key: health, metrics, the schema and the dashboard are public.
        middleware=[DefineMiddleware(KeyAuthMiddleware)],
    )
    # Ingest batches are the one large body; everything else stays under api_max_body_bytes.
    ingest_api = Router(
        path="/api/v1",
        route_handlers=[IngestController],
        middleware=[DefineMiddleware(KeyAuthMiddleware)],
        request_max_body_size=settings.api_ingest_max_body_bytes,
    )
    handlers: list[Any] = [api, ingest_api, HealthController]
    static_dir = settings.api_static_dir or PACKAGE_STATIC
    if static_dir.is_dir():
        handlers.append(
            create_static_files_router(
                path="/", directories=[static_dir], html_mode=True, include_in_schema=False
            )
        )
    else:

        @get("/", media_type=MediaType.HTML, include_in_schema=False)
        async def placeholder() -> str:
            return _PLACEHOLDER

        handlers.append(placeholder)

    cors = (
        CORSConfig(
            allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            # Paged lists' totals and 429/503 waits must reach a dashboard on another origin.
            expose_headers=["X-Total-Count", "Retry-After"],
        )
        if settings.api_cors_origins
        else None
    )
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        middleware=[access_log],
        state=State({"api": state}),
        request_max_body_size=settings.api_max_body_bytes,
        # Keep powerflow's logging (structlog JSON); Litestar's default would replace it.
        logging_config=None,
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors,
        openapi_config=OpenAPIConfig(
            title="powerflow API",
            version="1",
            description="Electricity, carbon and live readings. Send 'Authorization: Bearer "
            "pf_...' on every /api/v1 request; errors are RFC 9457 problem+json.",
            path="/schema",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http", scheme="bearer", description="pf_<prefix>_<secret>"
                    )
                }
            ),
            security=[{"apiKey": []}],
        ),
    )
