"""HTTP ingest for gateways that cannot speak MQTT: the same validation and exactly-once path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody

from powerflow_api import metrics
from powerflow_api.auth import principal_of
from powerflow_api.keys import Principal, key_devices
from powerflow_api.problems import BODY_LIMIT_SETTING, ApiError
from powerflow_api.state import api_state
from powerflow_common.http_ingest import MAX_ITEMS, ItemResult, decode_items, publish_items
from powerflow_common.jetstream import is_stream_full
from powerflow_common.validation import limits_from_settings

Req = Request[Any, Any, Any]


class IngestBatch(msgspec.Struct, frozen=True):
    """Readings in the original device format or the canonical one, mixed as you like."""

    readings: list[dict[str, Any]]


class IngestResult(msgspec.Struct, frozen=True):
    """How many were accepted and rejected, and what became of each item, in order."""

    accepted: int
    rejected: int
    items: list[ItemResult]
    # Messages JetStream already had (same content id): a retried POST, stored once.
    duplicates: int = 0


def may_ingest(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Device keys (which may do nothing else) and operators or admins; not viewers."""
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("Missing API key.")
    if principal.role == "viewer":
        raise PermissionDeniedException(
            "Ingest needs a 'device' key or an 'operator'/'admin' key; this key is a viewer's."
        )


class IngestController(Controller):
    path = "/ingest"
    tags = ["ingest"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    # Ingest batches are the one large body (MAX_ITEMS readings): app.py mounts this
    # controller on its own router with api_ingest_max_body_bytes.
    @post(
        "/",
        guards=[may_ingest],
        status_code=202,
        opt={BODY_LIMIT_SETTING: "api_ingest_max_body_bytes"},
    )
    async def ingest(self, request: Req, data: JSONBody[IngestBatch]) -> IngestResult:
        """Validate a batch and queue its readings; a retried POST stores nothing twice.

        A device key's items of devices it is not bound to are refused one by one
        (``device_not_allowed``); the others are stored. Operator and admin keys post for any.
        """
        state = api_state(request)
        if not data.readings:
            raise ApiError(status_code=400, detail="'readings' is empty: send at least one.")
        if len(data.readings) > MAX_ITEMS:
            raise ApiError(
                status_code=413,
                detail=f"{len(data.readings)} readings in one batch; send at most {MAX_ITEMS}.",
            )
        settings = state.settings
        principal = principal_of(request)
        allowed = (
            await anyio.to_thread.run_sync(key_devices, state.engine, principal.key_id)
            if principal.role == "device"
            else None
        )
        now = datetime.now(UTC)
        readings, results, rejected = decode_items(
            data.readings, now, limits_from_settings(settings), allowed
        )
        nc = state.nc
        if nc is None or not nc.is_connected:
            raise ApiError(
                status_code=503,
                detail="The message stream (NATS) is unreachable; nothing was stored. Retry.",
                headers={"Retry-After": "5"},
            )
        try:
            duplicates = await publish_items(
                nc.jetstream(),
                settings.names,
                readings,
                rejected,
                received_at=now,
                timeout_s=settings.nats_timeout_s,
                rejected_payload_max_bytes=settings.rejected_payload_max_bytes,
                on_duplicate=lambda kind: metrics.DUPLICATE_PUBLISHES.labels(kind).inc(),
            )
        except Exception as exc:
            if is_stream_full(exc):
                raise ApiError(
                    status_code=503,
                    detail="The readings stream is at its byte limit (the writer is behind);"
                    " retry the same request later.",
                    headers={"Retry-After": "30"},
                ) from exc
            # Some may have been queued: a retry with the same readings stores nothing twice.
            raise ApiError(
                status_code=503,
                detail=f"The message stream did not acknowledge the batch ({type(exc).__name__});"
                " retry the same request.",
                headers={"Retry-After": "5"},
            ) from exc
        return IngestResult(
            accepted=len(readings), rejected=len(rejected), items=results, duplicates=duplicates
        )
