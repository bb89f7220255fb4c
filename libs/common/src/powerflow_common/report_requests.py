"""Report requests, shared by everything that asks for a report: create, read and find them.

``create_report`` validates a request, commits the row (status ``queued``) and only then
enqueues the job; if Redis is away the row stays queued and the reaper enqueues it later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from powerflow_common.bounds import date_in_bounds
from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import DEVICES, ESG_REPORTS, SITES
from powerflow_common.errors import InvalidInput
from powerflow_common.logs import get_logger
from powerflow_common.periods import utc_bounds, validate_timezone
from powerflow_common.report_queue import enqueue_report
from powerflow_common.settings import Settings

__all__ = [
    "FILE_KINDS",
    "MAX_PERIOD_DAYS",
    "InvalidReportRequest",
    "ReportKind",
    "ReportRequest",
    "ReportView",
    "create_report",
    "get_report",
    "list_reports",
    "report_dir",
    "report_file",
]

log = get_logger(__name__)

MAX_PERIOD_DAYS = 366
MAX_DEVICES = 1000

ReportKind = Literal["html", "pdf", "markdown", "facts"]
# kind -> (file name inside the report's directory, media type)
FILE_KINDS: dict[str, tuple[str, str]] = {
    "html": ("report.html", "text/html; charset=utf-8"),
    "pdf": ("report.pdf", "application/pdf"),
    "markdown": ("report.md", "text/markdown; charset=utf-8"),
    "facts": ("facts.json", "application/json"),
}

_reports = ESG_REPORTS
_sites = SITES
_devices = DEVICES


class InvalidReportRequest(InvalidInput, ValueError):
    """The request can never succeed as given (HTTP 422 / 404 for a missing site or device)."""


class ReportRequest(BaseModel):
    """What a user asks for: local days ``period_start`` up to ``period_end`` (exclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period_start: date
    period_end: date = Field(description="exclusive: 2026-01-01 to 2026-02-01 is January")
    scope: Literal["organisation", "site", "devices"] = "organisation"
    site_id: int | None = None
    device_ids: tuple[int, ...] = ()
    language: Literal["en", "ko"] = "en"

    @model_validator(mode="after")
    def _consistent(self) -> ReportRequest:
        # Days far outside any data would overflow turning local midnights into UTC.
        date_in_bounds("period_start", self.period_start)
        date_in_bounds("period_end", self.period_end)
        if self.period_end <= self.period_start:
            raise ValueError("period_end must be after period_start (it is exclusive)")
        if (self.period_end - self.period_start).days > MAX_PERIOD_DAYS:
            raise ValueError(f"a report covers at most {MAX_PERIOD_DAYS} days")
        if self.scope == "site" and self.site_id is None:
            raise ValueError("scope 'site' needs site_id")
        if self.scope != "site" and self.site_id is not None:
            raise ValueError("site_id is only for scope 'site'")
        if self.scope == "devices" and not self.device_ids:
            raise ValueError("scope 'devices' needs device_ids")
        if self.scope != "devices" and self.device_ids:
            raise ValueError("device_ids are only for scope 'devices'")
        if len(self.device_ids) > MAX_DEVICES:
            raise ValueError(f"at most {MAX_DEVICES} devices")
        return self


@dataclass(frozen=True, slots=True)
class ReportView:
    """A report row as the API shows it; ``files`` lists the kinds ready to download."""

    id: str
    status: str  # queued, running, done, failed
    created_at: datetime
    updated_at: datetime
    period_start: datetime  # UTC
    period_end: datetime  # UTC, exclusive
    scope: str
    scope_ref: Any
    language: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    error: str | None
    grounding: Any
    files: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the facts are a file of their own: ``facts``)."""
        return {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "scope": self.scope,
            "scope_ref": self.scope_ref,
            "language": self.language,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error": self.error,
            "grounding": self.grounding,
            "files": list(self.files),
        }


def scope_timezone(engine: Engine, request: ReportRequest, default_tz: str) -> str:
    """The calendar of the report: the site's time zone, else the organisation's."""
    if request.scope != "site":
        return validate_timezone(default_tz)
    with engine.connect() as conn:
        tz = conn.execute(
            select(_sites.c.timezone).where(_sites.c.id == request.site_id)
        ).scalar_one_or_none()
    if tz is None:
        raise InvalidReportRequest(f"no site with id {request.site_id}")
    return validate_timezone(str(tz))


def _check_devices(engine: Engine, device_ids: tuple[int, ...]) -> None:
    with engine.connect() as conn:
        found = set(
            conn.execute(select(_devices.c.id).where(_devices.c.id.in_(device_ids))).scalars()
        )
    missing = sorted(set(device_ids) - found)
    if missing:
        raise InvalidReportRequest(f"no devices with ids {missing[:20]}")


def insert_report(
    engine: Engine,
    settings: Settings,
    request: ReportRequest,
    *,
    report_id: str | None = None,
) -> tuple[str, bool]:
    """Validate and commit the row; returns (id, created). An existing ``report_id`` is kept."""
    if request.scope == "devices":
        _check_devices(engine, request.device_ids)
    tz = scope_timezone(engine, request, settings.organisation_timezone)
    start_utc, end_utc = utc_bounds(request.period_start, request.period_end, tz)
    now = datetime.now(UTC)
    if end_utc > now + timedelta(days=1):
        raise InvalidReportRequest("period_end is in the future")
    new_id = report_id or str(uuid.uuid4())
    scope_ref: dict[str, Any] = {"timezone": tz}
    if request.scope == "site":
        scope_ref["site_id"] = request.site_id
    elif request.scope == "devices":
        scope_ref["device_ids"] = list(request.device_ids)
    try:
        with begin_write(engine) as conn:
            if (
                report_id is not None
                and conn.execute(select(_reports.c.id).where(_reports.c.id == report_id)).first()
            ):
                return report_id, False
            conn.execute(
                insert(_reports).values(
                    id=new_id,
                    created_at=now,
                    updated_at=now,
                    status="queued",
                    period_start=start_utc,
                    period_end=end_utc,
                    scope=request.scope,
                    scope_ref=scope_ref,
                    language=request.language,
                )
            )
    except IntegrityError:
        # Another scheduler inserted the same (site, month) id first: the key allows one.
        if report_id is None:
            raise
        return report_id, False
    return new_id, True


def create_report(engine: Engine, settings: Settings, request: ReportRequest) -> str:
    """Validate, commit a ``queued`` row, enqueue its job; returns the report id.

    Raises InvalidReportRequest for a missing site or device or a future period.
    """
    report_id, _ = insert_report(engine, settings, request)
    try:
        enqueue_report(settings, report_id)
    except Exception as exc:  # Redis away: the committed row waits for the reaper
        log.warning("report_enqueue_failed", report_id=report_id, error=type(exc).__name__)
    return report_id


def _files(settings: Settings, report_id: str) -> tuple[str, ...]:
    directory = report_dir(settings, report_id)
    return tuple(kind for kind, (name, _) in FILE_KINDS.items() if (directory / name).is_file())


def _view(settings: Settings, row: Any) -> ReportView:
    return ReportView(
        id=row.id,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        period_start=row.period_start,
        period_end=row.period_end,
        scope=row.scope,
        scope_ref=row.scope_ref,
        language=row.language,
        model=row.model,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        error=row.error,
        grounding=row.grounding,
        files=_files(settings, row.id) if row.status == "done" else (),
    )


_VIEW_COLUMNS = [c for c in _reports.c if c.name not in ("facts",)]


def get_report(engine: Engine, settings: Settings, report_id: str) -> ReportView | None:
    """One report's status and metadata, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(*_VIEW_COLUMNS).where(_reports.c.id == report_id)).first()
    return None if row is None else _view(settings, row)


def list_reports(
    engine: Engine, settings: Settings, *, limit: int = 50, offset: int = 0
) -> list[ReportView]:
    """Reports, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(*_VIEW_COLUMNS)
            .order_by(_reports.c.created_at.desc(), _reports.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return [_view(settings, r) for r in rows]


def report_dir(settings: Settings, report_id: str) -> Path:
    """Where a report's files live: ``POWERFLOW_REPORTS_DIR/<id>/``."""
    # The id is ours (a UUID), but it arrives in URLs: refuse anything that could leave the dir.
    if not report_id or any(c not in "0123456789abcdef-" for c in report_id):
        raise InvalidReportRequest("not a report id")
    return settings.reports_dir / report_id


def report_file(settings: Settings, report_id: str, kind: str) -> tuple[Path, str] | None:
    """(path, media type) of a report's ``html``, ``pdf``, ``markdown`` or ``facts`` file."""
    if kind not in FILE_KINDS:
        raise InvalidReportRequest(f"kind must be one of {', '.join(FILE_KINDS)}")
    name, media_type = FILE_KINDS[kind]
    path = report_dir(settings, report_id) / name
    return (path, media_type) if path.is_file() else None
