"""ESG reports: request one (operator), follow its status, download its files (viewer)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, Parameter, PathParameter
from litestar.response import File
from pydantic import ValidationError

from powerflow_api.auth import enforce_report_limit, principal_of, requires
from powerflow_api.problems import ApiError
from powerflow_api.schemas import RowId
from powerflow_api.state import ApiState, api_state
from powerflow_common.bounds import MAX_OFFSET, MAX_REPORT_ID_CHARS
from powerflow_common.report_requests import (
    MAX_DEVICES,
    InvalidReportRequest,
    ReportRequest,
    ReportView,
    create_report,
    get_report,
    list_reports,
    report_file,
)

Req = Request[Any, Any, Any]
ReportId = Annotated[
    str,
    PathParameter(description="The report id, as POST returned it", max_length=MAX_REPORT_ID_CHARS),
]
Kind = Annotated[
    Literal["html", "pdf", "markdown", "facts"], PathParameter(description="Which file")
]


class ReportCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Local days ``period_start`` up to ``period_end`` (exclusive) for a scope, in a language."""

    period_start: date
    period_end: date
    scope: Literal["organisation", "site", "devices"] = "organisation"
    site_id: RowId | None = None
    device_ids: Annotated[list[RowId], msgspec.Meta(max_length=MAX_DEVICES)] = msgspec.field(
        default_factory=list
    )
    language: Literal["en", "ko"] = "en"


class Report(msgspec.Struct, frozen=True):
    """A report's status; ``files`` lists the kinds ready at ``/api/v1/reports/{id}/{kind}``."""

    id: str
    status: str
    created_at: datetime
    updated_at: datetime
    period_start: datetime
    period_end: datetime
    scope: str
    language: str
    files: list[str]
    scope_ref: Any = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    grounding: Any = None


def _out(view: ReportView) -> Report:
    return msgspec.convert(view.as_dict(), Report)


def _not_found(report_id: str) -> NotFoundException:
    return NotFoundException(f"No report {report_id!r}; list them with GET /api/v1/reports.")


def _create(state: ApiState, wanted: ReportRequest) -> Report:
    try:
        report_id = create_report(state.engine, state.settings, wanted)
    except InvalidReportRequest as exc:
        raise ApiError(status_code=422, detail=str(exc)) from None
    view = get_report(state.engine, state.settings, report_id)
    assert view is not None  # committed before it was enqueued
    return _out(view)


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @post("/", guards=[requires("operator")], status_code=202)
    async def request_report(self, request: Req, data: JSONBody[ReportCreate]) -> Report:
        """Queue a report; follow it with GET /api/v1/reports/{id} (operator).

        At most api_reports_per_key reports per key per api_reports_window_s (429 beyond);
        a request refused as invalid (422) before it reaches the database is not counted.
        """
        state = api_state(request)
        try:
            wanted = ReportRequest(
                **{**msgspec.structs.asdict(data), "device_ids": data.device_ids}
            )
        except ValidationError as exc:
            messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise ApiError(status_code=422, detail=messages) from None
        await enforce_report_limit(state, principal_of(request))
        return await anyio.to_thread.run_sync(_create, state, wanted)

    @get("/", guards=[requires("viewer")], sync_to_thread=True)
    def list_all(
        self,
        request: Req,
        limit: int = Parameter(default=50, ge=1, le=500, description="At most this many"),
        offset: int = Parameter(
            default=0, ge=0, le=MAX_OFFSET, description="Skip this many (newest first)"
        ),
    ) -> list[Report]:
        """Reports, newest first."""
        state = api_state(request)
        views = list_reports(state.engine, state.settings, limit=limit, offset=offset)
        return [_out(v) for v in views]

    @get("/{report_id:str}", guards=[requires("viewer")], sync_to_thread=True)
    def get_one(self, request: Req, report_id: ReportId) -> Report:
        """One report's status (queued, running, done, failed with its reason) and files."""
        state = api_state(request)
        view = get_report(state.engine, state.settings, report_id)
        if view is None:
            raise _not_found(report_id)
        return _out(view)

    @get("/{report_id:str}/{kind:str}", guards=[requires("viewer")], sync_to_thread=True)
    def download(self, request: Req, report_id: ReportId, kind: Kind) -> File:
        """A finished report's HTML, PDF, Markdown or facts JSON."""
        state = api_state(request)
        try:
            found = report_file(state.settings, report_id, kind)
        except InvalidReportRequest:
            raise _not_found(report_id) from None
        if found is None:
            view = get_report(state.engine, state.settings, report_id)
            if view is None:
                raise _not_found(report_id)
            raise ApiError(
                status_code=409,
                detail=f"Report {report_id} is {view.status}; its {kind} is not ready.",
            )
        path, media_type = found
        return File(
            path=path,
            media_type=media_type,
            filename=f"powerflow-report-{report_id}{path.suffix}",
            content_disposition_type="inline" if kind == "html" else "attachment",
        )
