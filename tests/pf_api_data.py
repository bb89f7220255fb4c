"""Rows for API tests, written straight into the real database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, insert

from powerflow_common.db.models import (
    Device,
    EmissionFactorRow,
    HourlyStat,
    ReadingRow,
    RenewableContract,
    Site,
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def add_site(engine: Engine, name: str = "HQ", timezone: str = "Asia/Seoul") -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(Site).values(
                name=name, timezone=timezone, region="KR", created_at=datetime.now(UTC)
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_device(
    engine: Engine,
    code: str,
    *,
    last_seen: datetime,
    site_id: int | None = None,
    meter_role: str = "standalone",
    admitted: bool = True,
) -> int:
    """A device row; admitted (counted in totals) unless ``admitted=False``: waiting."""
    with engine.begin() as conn:
        result = conn.execute(
            insert(Device).values(
                code=code,
                site_id=site_id,
                meter_role=meter_role,
                payload_format="original",
                bidirectional=False,
                first_seen_at=last_seen,
                last_seen_at=last_seen,
                admitted_at=last_seen if admitted else None,
                admitted_by="test" if admitted else None,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_readings(
    engine: Engine, device_id: int, points: list[tuple[datetime, float]], received_at: datetime
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ReadingRow),
            [
                {
                    "device_id": device_id,
                    "ts": ts,
                    "power_w": power,
                    "temperature_c": 21.5,
                    "received_at": received_at,
                }
                for ts, power in points
            ],
        )


def add_factor(engine: Engine, kg_per_kwh: float = 0.5) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(EmissionFactorRow).values(
                factor_set=f"test-{uuid.uuid4().hex[:8]}",
                region="KR",
                kg_co2e_per_kwh=kg_per_kwh,
                source="test factor",
                method="location",
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_hour(
    engine: Engine,
    device_id: int,
    hour_start: datetime,
    *,
    energy_kwh: float,
    factor_id: int | None = None,
    kg_per_kwh: float = 0.5,
    power_max_w: float | None = None,
    **extra: Any,
) -> None:
    power_avg_w = energy_kwh * 1000.0
    with engine.begin() as conn:
        conn.execute(
            insert(HourlyStat).values(
                device_id=device_id,
                hour_start=hour_start,
                samples=720,
                coverage=1.0,
                energy_kwh=energy_kwh,
                export_kwh=0.0,
                unallocated_kwh=0.0,
                power_avg_w=power_avg_w,
                power_min_w=power_avg_w,
                power_max_w=power_max_w if power_max_w is not None else power_avg_w,
                co2_kg=energy_kwh * kg_per_kwh,
                emission_factor_id=factor_id,
                computed_at=datetime.now(UTC),
                **extra,
            )
        )


def add_contract(engine: Engine, site_id: int, start: date, end: date, kwh: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(RenewableContract).values(
                site_id=site_id,
                period_start=start,
                period_end=end,
                energy_kwh=kwh,
                instrument="REC",
            )
        )
