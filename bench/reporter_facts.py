"""Time a report's fact computation: one month of 100 devices from hourly_stats (aim: under 2 s).

Makes its own database (``POWERFLOW_BENCH_DATABASE_SERVER``, default local root), fills it,
times ``load_inputs`` + ``compute_facts`` for the site (on a tariff: the report costs and
bills its month), prints the result and drops it again.
"""

from __future__ import annotations

import math
import os
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert

from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import Device, HourlyStat, Site, SiteTariff
from powerflow_common.periods import utc_bounds
from powerflow_common.settings import load_settings
from powerflow_reporter.facts import ReportScope, compute_facts, load_inputs

DEVICES = 100
SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")


def main() -> None:
    url = f"{SERVER}/pf_bench_{uuid.uuid4().hex[:8]}"
    migrate(url)
    engine = make_engine(url)
    try:
        start, end = utc_bounds(date(2026, 1, 1), date(2026, 2, 1), "Asia/Seoul")
        rng = random.Random(7)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            site_id = conn.execute(
                insert(Site).values(
                    name="bench",
                    timezone="Asia/Seoul",
                    region="KR",
                    floor_area_m2=5000.0,
                    created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                insert(Device),
                [
                    {
                        "code": f"bench-{i:03d}",
                        "name": f"Bench device {i}",
                        "site_id": site_id,
                        "payload_format": "original",
                        "meter_role": "standalone",
                        "bidirectional": False,
                        "first_seen_at": now,
                        "last_seen_at": now,
                        # Admitted (migration 0006): a waiting device is in no total.
                        "admitted_at": now,
                    }
                    for i in range(DEVICES)
                ],
            )
            ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM devices ORDER BY id")]
            # On a seeded tariff valid in January 2026 (migration 0010; KEPCO's start in June
            # 2026): the report also costs the month and bills it.
            conn.execute(
                insert(SiteTariff).values(
                    site_id=site_id,
                    tariff_name="gb-price-cap-flat",
                    contract_power_kw=300.0,
                    valid_from=date(2025, 1, 1),
                    recorded_at=now,
                    recorded_by="bench",
                )
            )
        hours = int((end - start + timedelta(days=31)) / timedelta(hours=1))  # and the month before
        first = start - timedelta(days=31)
        fill_started = time.perf_counter()
        for device_id in ids:
            rows = []
            for h in range(hours):
                hour = first + timedelta(hours=h)
                kwh = (
                    0.2
                    + 0.3 * (1 + math.sin((hour.hour - 6) / 24 * 2 * math.pi))
                    + rng.random() * 0.05
                )
                rows.append(
                    {
                        "device_id": device_id,
                        "hour_start": hour,
                        "samples": 720,
                        "coverage": 1.0,
                        "energy_kwh": kwh,
                        "co2_kg": kwh * 0.478,
                        "emission_factor_id": 1,
                        "factor_set": "original",
                        "power_avg_w": kwh * 1000,
                        "power_max_w": kwh * 1300,
                        "temperature_avg_c": 5 + 10 * math.sin(h / 24),
                        "humidity_avg_pct": 45.0,
                        "brightness_avg_lux": 600.0 if 9 <= (hour.hour + 9) % 24 < 18 else 0.0,
                        "computed_at": now,
                    }
                )
            with engine.begin() as conn:
                conn.execute(insert(HourlyStat), rows)
        filled_s = time.perf_counter() - fill_started
        timings = []
        for _ in range(3):
            began = time.perf_counter()
            with engine.connect() as conn:
                inputs = load_inputs(
                    conn,
                    ReportScope(kind="site", site_id=int(site_id)),
                    start,
                    end,
                    default_tz="Asia/Seoul",
                    settings=load_settings(),
                )
            loaded = time.perf_counter()
            facts = compute_facts(inputs)
            timings.append((loaded - began, time.perf_counter() - loaded))
        best = min(timings, key=sum)
        print(
            f"reporter facts: {DEVICES} devices x {len(inputs.rows) // DEVICES} hours "
            f"({len(inputs.rows)} rows; the previous month summed in SQL): "
            f"load {best[0]:.3f} s + compute {best[1]:.3f} s = {sum(best):.3f} s "
            f"(best of 3; aim < 2 s; {len(facts.values)} facts; filled in {filled_s:.1f} s); "
            f"cost {facts.value('cost1_currency')} {facts.value('cost1_energy_related_total')}, "
            f"{facts.value('cost1_bill_months')} bill(s)"
        )
    finally:
        engine.dispose()
        drop_database(url)


if __name__ == "__main__":
    main()
