"""Corrections: an operator overwrites a stored value on purpose; everyone can read the audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter, PathParameter

from powerflow_api import metrics, schemas
from powerflow_api.auth import principal_of, requires
from powerflow_api.problems import ApiError
from powerflow_api.state import api_state
from powerflow_common.bounds import MAX_DEVICE_CODE_CHARS, utc_in_bounds
from powerflow_common.corrections import (
    MAX_LIST_LIMIT,
    CorrectionRecord,
    CorrectionRequest,
    correct,
    list_corrections,
)
from powerflow_common.errors import CorrectionRefused, CorrectionTargetMissing

Req = Request[Any, Any, Any]
Code = Annotated[
    str, PathParameter(description="The device code", max_length=MAX_DEVICE_CODE_CHARS)
]
Ts = Annotated[
    str,
    PathParameter(
        description="The stored reading's timestamp, ISO 8601 (UTC when no offset; "
        "write '+' as %2B), e.g. 2026-11-29T07:10:30Z"
    ),
]
SINCE = Parameter(default=None, description="Only corrections made at or after (ISO 8601; UTC)")
# Audit ids are BIGINT: a larger number can name no row (and must not reach SQL).
MAX_AUDIT_ID = 2**63 - 1


def to_problem(exc: CorrectionRefused) -> ApiError:
    """404 for a device or reading that does not exist, 422 for anything else refused."""
    status = 404 if isinstance(exc, CorrectionTargetMissing) else 422
    return ApiError(status_code=status, detail=f"{exc.detail} ({exc.reason}); nothing changed.")


def to_schema(record: CorrectionRecord) -> schemas.Correction:
    return schemas.Correction(
        id=record.id,
        device_code=record.device_code,
        ts=record.ts,
        column=record.column_name,
        old_value=record.old_value,
        new_value=record.new_value,
        reason=record.reason,
        corrected_by=record.corrected_by,
        corrected_at=record.corrected_at,
        totals_republished_at=record.totals_republished_at,
    )


def parse_ts(value: str) -> datetime:
    """An ISO 8601 timestamp from the path; without an offset it is UTC, like every query."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            status_code=400,
            detail=f"{value[:64]!r} is not an ISO 8601 timestamp, e.g. 2026-11-29T07:10:30Z.",
        ) from None
    return utc_in_bounds("ts", parsed)


class CorrectionController(Controller):
    path = "/devices/{code:str}"
    tags = ["corrections"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @post(
        "/readings/{ts:str}/corrections",
        guards=[requires("operator")],
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=schemas.CorrectionResult,
                description="Every value already was the one asked: nothing changed",
            )
        },
    )
    async def create_correction(
        self, request: Req, code: Code, ts: Ts, data: JSONBody[schemas.CorrectionCreate]
    ) -> Response[schemas.CorrectionResult]:
        """Overwrite stored values of one reading (operator); its hours' totals follow.

        201 with the audit rows when something changed, 200 when every value was already
        the one asked (repeating a request is safe). ``totals_republished`` false means the
        value is stored but NATS did not acknowledge the recompute: totals are stale until
        ``powerflow corrections --republish-stale`` (or this request again).
        """
        state = api_state(request)
        js = state.nc.jetstream() if state.nc is not None and state.nc.is_connected else None
        correction = CorrectionRequest(
            device_code=code,
            ts=parse_ts(ts),
            values=data.values,
            reason=data.reason,
            corrected_by=principal_of(request).name,
        )
        try:
            outcome = await correct(state.engine, js, state.settings, correction)
        except CorrectionRefused as exc:
            raise to_problem(exc) from exc
        applied = outcome.applied
        metrics.CORRECTIONS.labels("stale" if not outcome.totals_republished else "ok").inc(
            len(applied.changed)
        )
        if outcome.totals_republished:
            detail = f"{len(applied.changed)} value(s) changed; the hours' totals are recomputed."
        else:
            detail = (
                f"{len(applied.changed)} value(s) changed, but the recompute of their hours was "
                f"not acknowledged ({outcome.error}): totals are stale until this request is "
                "repeated or an operator runs 'powerflow corrections --republish-stale'."
            )
        body = schemas.CorrectionResult(
            device_code=applied.device_code,
            ts=applied.ts,
            changed=[to_schema(r) for r in applied.changed],
            unchanged=applied.unchanged,
            hours=outcome.hours,
            totals_republished=outcome.totals_republished,
            detail=detail,
        )
        return Response(body, status_code=201 if applied.changed else 200)

    @get("/corrections", guards=[requires("viewer")])
    async def list_device_corrections(
        self,
        request: Req,
        code: Code,
        since: datetime | None = SINCE,
        before_id: int | None = Parameter(
            default=None, ge=1, le=MAX_AUDIT_ID, description="next_before_id of the last page"
        ),
        limit: int = Parameter(default=100, ge=1, le=MAX_LIST_LIMIT, description="Per page"),
    ) -> schemas.CorrectionsPage:
        """A device's corrections, newest first: who changed what, when, why, and from what."""
        state = api_state(request)
        if since is not None:
            since = utc_in_bounds("since", since)
        try:
            records = await anyio.to_thread.run_sync(
                lambda: list_corrections(
                    state.engine, code, since=since, before_id=before_id, limit=limit
                )
            )
        except CorrectionRefused as exc:
            raise to_problem(exc) from exc
        return schemas.CorrectionsPage(
            device_code=code,
            items=[to_schema(r) for r in records],
            next_before_id=records[-1].id if len(records) == limit else None,
        )
