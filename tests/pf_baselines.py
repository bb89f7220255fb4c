"""A synthetic site for baseline tests: daily kWh a known function of outdoor temperature."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from pf_api_data import add_device, add_site
from sqlalchemy import Engine, insert

from powerflow_common.db.models import HourlyStat

SEOUL = ZoneInfo("Asia/Seoul")
BASELINE = (date(2025, 3, 1), 120)  # first local day, days
REPORTING = (date(2025, 7, 1), 60)
NOISE_KWH = 8.0


def law(t: float) -> float:
    """The site's daily kWh: 300 base, 9 kWh/°C below 14 °C, 12 kWh/°C above 22 °C."""
    return 300.0 + 9.0 * max(14.0 - t, 0.0) + 12.0 * max(t - 22.0, 0.0)


def outdoor_c(i: int, rng: np.random.Generator) -> float:
    return 2.0 + 30.0 * ((i * 37) % 120) / 119 + float(rng.normal(0, 1.0))  # 2 .. 32 °C, mixed


def add_days(
    engine: Engine, meter: int, yard: int, first: date, days: int, factor: float, seed: int
) -> dict[date, float]:
    """Whole local days of hours: the meter's kWh by the law (x factor), the yard's °C."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    temps = {}
    now = datetime.now(UTC)
    for i in range(days):
        day = first + timedelta(days=i)
        t = outdoor_c(i, rng)
        temps[day] = t
        kwh = factor * law(t) + float(rng.normal(0, NOISE_KWH))
        start = datetime(day.year, day.month, day.day, tzinfo=SEOUL).astimezone(UTC)
        for h in range(24):
            hour = start + timedelta(hours=h)
            common = {"hour_start": hour, "samples": 720, "coverage": 1.0, "computed_at": now}
            rows.append(
                {**common, "device_id": meter, "energy_kwh": kwh / 24, "temperature_avg_c": None}
            )
            rows.append({**common, "device_id": yard, "energy_kwh": 0.0, "temperature_avg_c": t})
    with engine.begin() as conn:
        conn.execute(insert(HourlyStat), rows)
    return temps


def make_plant(engine: Engine) -> dict[str, Any]:
    """Site "Plant" (Seoul): main meter meter-1, yard-1 with the outdoor temperature (not
    marked outdoor yet); 120 baseline days from 1 March 2025, then 60 days from 1 July at
    90 % of the law (a 10 % saving)."""
    seen = datetime(2025, 3, 1, tzinfo=UTC)
    site = add_site(engine, "Plant", "Asia/Seoul")
    meter = add_device(engine, "meter-1", last_seen=seen, site_id=site, meter_role="main")
    yard = add_device(engine, "yard-1", last_seen=seen, site_id=site, meter_role="standalone")
    temps = add_days(engine, meter, yard, *BASELINE, factor=1.0, seed=1)
    add_days(engine, meter, yard, *REPORTING, factor=0.9, seed=2)
    return {"site": site, "temps": temps}
