"""Database access of the API (sync SQLAlchemy Core; handlers run it in a worker thread)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from powerflow_api import schemas
from powerflow_common.db.models import (
    DEVICES,
    EMISSION_FACTORS,
    HOURLY_STATS,
    READINGS,
    RENEWABLE_CONTRACTS,
    SITES,
)
from powerflow_common.wire import MEASURED_QUANTITIES

devices_t = DEVICES
sites_t = SITES
readings_t = READINGS
hourly_t = HOURLY_STATS
factors_t = EMISSION_FACTORS
contracts_t = RENEWABLE_CONTRACTS

RAW_FIELDS = MEASURED_QUANTITIES  # the columns of a raw reading point


def device_rows(
    conn: Connection,
    *,
    code: str | None = None,
    site_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Any]:
    """Devices with the power of their latest reading (a primary-key lookup at last_seen_at).

    Ordered by code, so ``limit``/``offset`` pages are stable.
    """
    r = readings_t
    d = devices_t
    stmt = (
        select(d, r.c.power_w.label("latest_power_w"))
        .select_from(d.outerjoin(r, (r.c.device_id == d.c.id) & (r.c.ts == d.c.last_seen_at)))
        .order_by(d.c.code)
    )
    if code is not None:
        stmt = stmt.where(d.c.code == code)
    if site_id is not None:
        stmt = stmt.where(d.c.site_id == site_id)
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    return list(conn.execute(stmt).all())


def device_count(conn: Connection, *, site_id: int | None = None) -> int:
    """How many devices (of a site) there are, for the pages' ``X-Total-Count``."""
    stmt = select(func.count()).select_from(devices_t)
    if site_id is not None:
        stmt = stmt.where(devices_t.c.site_id == site_id)
    return int(conn.execute(stmt).scalar_one())


def to_device(
    row: Any, online_threshold_s: float, now: datetime | None = None, *, counted: bool = False
) -> schemas.Device:
    """A device row as the API shows it."""
    now = now or datetime.now(UTC)
    online = row.last_seen_at >= now - timedelta(seconds=online_threshold_s)
    return schemas.Device(
        id=row.id,
        code=row.code,
        name=row.name,
        site_id=row.site_id,
        location=row.location,
        meter_role=row.meter_role,
        payload_format=row.payload_format,
        bidirectional=bool(row.bidirectional),
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        online=online,
        power_w=row.latest_power_w,
        counted=counted,
        admitted_at=row.admitted_at,
        admitted_by=row.admitted_by,
        enrolment=enrolment_state(row.enrolled_at, row.revoked_at),
        enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at,
        legacy_topic=bool(row.legacy_topic),
    )


def enrolment_state(
    enrolled_at: datetime | None, revoked_at: datetime | None
) -> schemas.EnrolmentState:
    """A device's enrolment as the API names it (the CLI's ``devices list`` says the same,
    and also checks the broker's accounts; the API's list does not ask the broker)."""
    if revoked_at is not None:
        return "revoked"
    return "enrolled" if enrolled_at is not None else "not_enrolled"


def to_site(row: Any) -> schemas.Site:
    return schemas.Site(
        id=row.id,
        name=row.name,
        timezone=row.timezone,
        region=row.region,
        floor_area_m2=row.floor_area_m2,
        created_at=row.created_at,
    )


def raw_point(row: Any) -> schemas.ReadingPoint:
    return schemas.ReadingPoint(ts=row.ts, **{f: getattr(row, f) for f in RAW_FIELDS})


def factors_by_id(conn: Connection, ids: set[int]) -> list[schemas.Factor]:
    """The emission factors with these ids, as the API names them."""
    if not ids:
        return []
    rows = conn.execute(select(factors_t).where(factors_t.c.id.in_(sorted(ids)))).all()
    return [
        schemas.Factor(
            id=row.id,
            factor_set=row.factor_set,
            region=row.region,
            kg_co2e_per_kwh=row.kg_co2e_per_kwh,
            source=row.source,
            method=row.method,
        )
        for row in rows
    ]
