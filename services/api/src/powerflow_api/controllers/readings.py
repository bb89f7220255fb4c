"""Readings: one device's readings by time range (paged), the latest readings, CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import Parameter, PathParameter
from litestar.response import Stream
from sqlalchemy import Connection, select

from powerflow_api import schemas
from powerflow_api.auth import requires
from powerflow_api.data import (
    RAW_FIELDS,
    device_count,
    device_rows,
    devices_t,
    raw_point,
    readings_t,
    sites_t,
    to_device,
)
from powerflow_api.paging import LIMIT, OFFSET, TOTAL, page, page_limit
from powerflow_api.problems import ApiError
from powerflow_api.readings import (
    Window,
    as_utc,
    check_range,
    decode_cursor,
    iter_all,
    read_page,
)
from powerflow_api.state import api_state
from powerflow_common.bounds import MAX_CURSOR_CHARS, MAX_DEVICE_CODE_CHARS
from powerflow_common.settings import Settings
from powerflow_common.validation import canonical_device_code

Req = Request[Any, Any, Any]
Code = Annotated[
    str, PathParameter(description="The device code", max_length=MAX_DEVICE_CODE_CHARS)
]

START = Parameter(
    default=None, description="Range start (ISO 8601; UTC when no offset); default: end - 24 h"
)
END = Parameter(default=None, description="Range end, exclusive (ISO 8601); default: now")
RESOLUTION = Parameter(
    default="raw",
    description="raw (ranges up to api_raw_max_range_h), 1m (grouped raw readings, up to "
    "api_minute_max_range_days), 15m (quarter-hour statistics, up to 100 days), 1h/1d (from "
    "hourly statistics; days in the site's timezone)",
)

POINT_FIELDS = tuple(schemas.ReadingPoint.__struct_fields__)


def build_window(
    conn: Connection,
    settings: Settings,
    code: str,
    start: datetime | None,
    end: datetime | None,
    resolution: schemas.Resolution,
    limit: int,
    cursor: str | None,
    *,
    csv_export: bool = False,
) -> Window:
    """Validate a readings query into a Window (404 unknown device, 400 bad range/cursor)."""
    if limit > settings.api_readings_page_max:
        raise ApiError(
            status_code=400,
            detail=f"Invalid request: limit: must be at most {settings.api_readings_page_max}.",
            extra=[{"key": "limit", "message": f"at most {settings.api_readings_page_max}"}],
        )
    # Times first: a bad range is a 400 whether or not the device exists.
    now = datetime.now(UTC)
    end_utc = as_utc(end, "end") if end else now
    start_utc = as_utc(start, "start") if start else end_utc - timedelta(hours=24)
    code = canonical_device_code(code)
    row = conn.execute(
        select(devices_t.c.id, sites_t.c.timezone)
        .select_from(devices_t.outerjoin(sites_t, sites_t.c.id == devices_t.c.site_id))
        .where(devices_t.c.code == code)
    ).first()
    if row is None:
        raise ApiError(status_code=404, detail=f"No device with code {code!r}.")
    after = None
    as_of = now
    if cursor:
        decoded = decode_cursor(cursor)
        if decoded.device_id != row.id or decoded.resolution != resolution:
            raise ApiError(
                status_code=400,
                detail="This cursor belongs to another device or resolution; "
                "repeat the query that returned it.",
            )
        after, as_of = decoded.after, decoded.as_of
    check_range(settings, resolution, start_utc, end_utc, csv=csv_export)
    return Window(
        device_id=row.id,
        device_code=code,
        timezone=row.timezone or settings.organisation_timezone,
        start=start_utc,
        end=end_utc,
        resolution=resolution,
        limit=limit,
        after=after,
        as_of=as_of,
    )


class ReadingController(Controller):
    path = "/devices/{code:str}/readings"
    tags = ["readings"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("viewer")], sync_to_thread=True)
    def readings(
        self,
        request: Req,
        code: Code,
        start: datetime | None = START,
        end: datetime | None = END,
        resolution: schemas.Resolution = RESOLUTION,
        limit: int = Parameter(default=1000, ge=1, description="Points per page"),
        cursor: str | None = Parameter(
            default=None, max_length=MAX_CURSOR_CHARS, description="next_cursor of the last page"
        ),
    ) -> schemas.ReadingsPage:
        """A device's readings in [start, end), oldest first, a page at a time."""
        code = canonical_device_code(code)
        state = api_state(request)
        with state.engine.connect() as conn:
            w = build_window(conn, state.settings, code, start, end, resolution, limit, cursor)
        items, next_cursor = read_page(state.engine, w)
        return schemas.ReadingsPage(
            device_code=code,
            resolution=resolution,
            start=w.start,
            end=w.end,
            items=items,
            next_cursor=next_cursor,
        )

    @get("/latest", guards=[requires("viewer")], sync_to_thread=True)
    def latest(self, request: Req, code: Code) -> schemas.LatestReading:
        """The device's most recent reading."""
        code = canonical_device_code(code)
        state = api_state(request)
        with state.engine.connect() as conn:
            devices = device_rows(conn, code=code)
            if not devices:
                raise ApiError(status_code=404, detail=f"No device with code {code!r}.")
            return _latest(conn, devices[0], state.settings)

    @get("/export", guards=[requires("viewer")], sync_to_thread=True, media_type="text/csv")
    def export(
        self,
        request: Req,
        code: Code,
        start: datetime | None = START,
        end: datetime | None = END,
        resolution: schemas.Resolution = RESOLUTION,
    ) -> Stream:
        """The readings in [start, end) as CSV, streamed (up to 400 days at any resolution)."""
        state = api_state(request)
        with state.engine.connect() as conn:
            w = build_window(
                conn, state.settings, code, start, end, resolution, 1, None, csv_export=True
            )
        filename = f"readings-{code.replace(':', '')}-{resolution}.csv"
        return Stream(
            _csv_chunks(iter_all(state.engine, w)),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


class LatestController(Controller):
    path = "/readings"
    tags = ["readings"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/latest", guards=[requires("viewer")], sync_to_thread=True, response_headers=[TOTAL])
    def latest_all(
        self, request: Req, limit: int | None = LIMIT, offset: int = OFFSET
    ) -> Response[list[schemas.LatestReading]]:
        """The latest reading of each device, by device code, a page at a time.

        ``X-Total-Count`` says how many devices there are; page with ``offset``.
        """
        state = api_state(request)
        size = page_limit(state.settings, limit)
        with state.engine.connect() as conn:
            rows = device_rows(conn, limit=size, offset=offset)
            total = device_count(conn)
            return page([_latest(conn, d, state.settings) for d in rows], total)


def _latest(conn: Connection, device: Any, settings: Settings) -> schemas.LatestReading:
    r = readings_t
    row = conn.execute(
        select(r.c.ts, *[r.c[f] for f in RAW_FIELDS])
        .where(r.c.device_id == device.id)
        .order_by(r.c.ts.desc())
        .limit(1)
    ).first()
    return schemas.LatestReading(
        device_code=device.code,
        online=to_device(device, settings.api_online_threshold_s).online,
        reading=None if row is None else raw_point(row),
    )


def _csv_chunks(
    points: Iterator[schemas.ReadingPoint], rows_per_chunk: int = 2000
) -> Iterator[str]:
    """CSV text in chunks of many rows (each chunk is one hop to the worker thread)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(POINT_FIELDS)
    for n, point in enumerate(points, 1):
        writer.writerow(
            ["" if (v := getattr(point, f)) is None else _cell(v) for f in POINT_FIELDS]
        )
        if n % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
