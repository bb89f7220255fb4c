"""Chart benchmark: the API's charts read hourly_stats; the same answered from raw readings.

Generates 10 devices x 90 days of 5-second readings (about 15.5 million rows, bulk-loaded in
the database with MariaDB's sequence engine), their hourly statistics, and a year of hourly
statistics, then prints p50/p95 of each chart endpoint next to the same question asked of
the raw readings, in one run. Needs MariaDB (the sequence engine); not part of `make test`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import Engine, text

# Run as ``python bench/hourly_vs_raw.py``: the checkout on the path for the shared pieces.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench._common import SERVER, timed  # noqa: E402
from powerflow_api.app import create_app  # noqa: E402
from powerflow_api.keys import create_key  # noqa: E402
from powerflow_common.db.engine import drop_database, make_engine, migrate  # noqa: E402
from powerflow_common.jetstream import drop_namespace  # noqa: E402
from powerflow_common.logs import configure_logging  # noqa: E402
from powerflow_common.settings import Settings, load_settings  # noqa: E402

DEVICES = 10


def load(engine: Engine, days: int, history_days: int, now: datetime) -> None:
    """Readings for ``days`` and hourly statistics for ``history_days``, all in SQL."""
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    samples = days * 17_280
    history_start = start - timedelta(days=history_days - days)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sites (name, timezone, region, created_at)"
                " VALUES ('bench', 'Asia/Seoul', 'KR', :now)"
            ),
            {"now": now},
        )
        for d in range(DEVICES):
            conn.execute(
                text(
                    "INSERT INTO devices (code, site_id, payload_format, meter_role, bidirectional,"
                    " first_seen_at, last_seen_at, admitted_at) VALUES (:code, 1, 'original',"
                    " 'standalone', 0, :first, :now, :first)"
                ),
                {"code": f"q-{d:02d}", "first": start, "now": now},
            )
    for d in range(DEVICES):
        with engine.begin() as conn:
            # A daily load shape with noise, temperature following the day.
            conn.execute(
                text(
                    f"INSERT INTO readings (device_id, ts, power_w, temperature_c, humidity_pct,"
                    f" brightness_lux, received_at)"
                    f" SELECT {d + 1}, :start + INTERVAL seq * 5 SECOND,"
                    f" 400 + 300 * SIN(seq / 2750.0) + RAND() * 50,"
                    f" 22 + 4 * SIN(seq / 2750.0), 50 + RAND() * 5, 300 + 200 * SIN(seq / 2750.0),"
                    f" :start + INTERVAL seq * 5 SECOND"
                    f" FROM seq_0_to_{samples - 1}"
                ),
                {"start": start},
            )
        print(f"  readings of device {d + 1}/{DEVICES} loaded", flush=True)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO hourly_stats (device_id, hour_start, samples, coverage, energy_kwh,"
                " export_kwh, unallocated_kwh, unallocated_export_kwh, power_avg_w, power_min_w,"
                " power_max_w, temperature_avg_c, humidity_avg_pct, brightness_avg_lux, co2_kg,"
                " emission_factor_id, factor_set, energy_source, computed_at)"
                " SELECT device_id, hour, COUNT(*), LEAST(1, COUNT(*) / 720), AVG(power_w) / 1000,"
                " 0, 0, 0, AVG(power_w), MIN(power_w), MAX(power_w), AVG(temperature_c),"
                " AVG(humidity_pct), AVG(brightness_lux), AVG(power_w) / 1000 * 0.478, 1,"
                " 'original', 'power', :now"
                " FROM (SELECT device_id, ts - INTERVAL MINUTE(ts) MINUTE - INTERVAL SECOND(ts)"
                "       SECOND - INTERVAL MICROSECOND(ts) MICROSECOND AS hour, power_w,"
                "       temperature_c, humidity_pct, brightness_lux FROM readings) r"
                " GROUP BY device_id, hour"
            ),
            {"now": now},
        )
        hours = (history_days - days) * 24
        conn.execute(
            text(
                "INSERT INTO hourly_stats (device_id, hour_start, samples, coverage, energy_kwh,"
                " export_kwh, unallocated_kwh, unallocated_export_kwh, power_avg_w, power_min_w,"
                " power_max_w, temperature_avg_c, humidity_avg_pct, brightness_avg_lux, co2_kg,"
                " emission_factor_id, factor_set, energy_source, computed_at)"
                " SELECT d.id, :hstart + INTERVAL s.seq HOUR, 720, 1, 0.4, 0, 0, 0, 400, 100, 700,"
                " 22, 50, 300, 0.4 * 0.478, 1, 'original', 'power', :now"
                f" FROM seq_0_to_{hours - 1} s CROSS JOIN devices d"
            ),
            {"hstart": history_start, "now": now},
        )
    print("  hourly statistics computed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90, help="days of 5-second raw readings")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    configure_logging("warning", "console")
    url = f"{SERVER}/pf_bench_q_{uuid.uuid4().hex[:8]}"
    migrate(url)
    engine = make_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        started = time.monotonic()
        load(engine, args.days, 365, now)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT COUNT(*) FROM readings")).scalar_one()
            hourly = conn.execute(text("SELECT COUNT(*) FROM hourly_stats")).scalar_one()
        print(
            f"loaded {rows:,} readings and {hourly:,} hourly rows in "
            f"{time.monotonic() - started:.0f} s"
        )
        run(engine, url, now, args.repeat, args.days)
    finally:
        engine.dispose()
        drop_database(url)


def run(engine: Engine, url: str, now: datetime, repeat: int, days: int) -> None:
    """Time every chart query through the API and from raw readings; print the table."""
    settings = load_settings(
        database_url=url,
        namespace=f"benchq{uuid.uuid4().hex[:6]}",
        api_rate_limit_per_window=1_000_000,
    )
    try:
        measure(engine, settings, now, repeat, days)
    finally:
        drop_namespace(settings)  # the API created its namespace's streams


def measure(engine: Engine, settings: Settings, now: datetime, repeat: int, days: int) -> None:
    """The API side and the raw side of each query, side by side."""
    key, _ = create_key(engine, "bench", "viewer")
    auth = {"Authorization": f"Bearer {key}"}

    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    month_ago, day_ago = iso(now - timedelta(days=30)), iso(now - timedelta(hours=24))
    year_ago = iso(now - timedelta(days=365))

    with TestClient(create_app(settings, engine=engine), timeout=60) as client:

        def get(path: str) -> Any:
            response = client.get(path, headers=auth)
            assert response.status_code == 200, response.text
            return response.json()

        def raw_window() -> None:
            cursor = None
            while True:
                page = get(
                    f"/api/v1/devices/q-00/readings?start={day_ago}&end={iso(now)}"
                    f"&limit=5000" + (f"&cursor={cursor}" if cursor else "")
                )
                cursor = page.get("next_cursor")
                if not cursor:
                    return

        api = {
            "30-day hourly chart (1 device)": lambda: get(
                f"/api/v1/devices/q-00/readings?resolution=1h&start={month_ago}&end={iso(now)}"
                "&limit=5000"
            ),
            "1-year daily chart (site)": lambda: get(
                f"/api/v1/stats/sites/1?period=day&start={year_ago}&end={iso(now)}"
            ),
            "24-hour raw window (1 device, paged)": raw_window,
            "summary (overview)": lambda: get("/api/v1/stats/summary"),
        }

        def sql(statement: str, **params: Any) -> Callable[[], Any]:
            def go() -> Any:
                with engine.connect() as conn:
                    return conn.execute(text(statement), params).all()

            return go

        hour = (
            "ts - INTERVAL MINUTE(ts) MINUTE - INTERVAL SECOND(ts) SECOND"
            " - INTERVAL MICROSECOND(ts) MICROSECOND"
        )
        raw = {
            "30-day hourly chart (1 device)": sql(
                f"SELECT {hour} AS h, AVG(power_w), MIN(power_w), MAX(power_w), COUNT(*)"
                " FROM readings WHERE device_id = 1 AND ts >= :a AND ts < :b GROUP BY h",
                a=now - timedelta(days=30),
                b=now,
            ),
            "1-year daily chart (site)": sql(
                "SELECT DATE(ts + INTERVAL 9 HOUR) AS d, SUM(power_w) * 5 / 3600000"
                " FROM readings WHERE ts >= :a AND ts < :b GROUP BY d",
                a=now - timedelta(days=365),
                b=now,
            ),
            "24-hour raw window (1 device, paged)": sql(
                "SELECT * FROM readings WHERE device_id = 1 AND ts >= :a AND ts < :b ORDER BY ts",
                a=now - timedelta(hours=24),
                b=now,
            ),
            "summary (overview)": sql(
                "SELECT device_id, SUM(power_w) * 5 / 3600000 FROM readings"
                " WHERE ts >= :a GROUP BY device_id",
                a=now.replace(day=1, hour=0, minute=0, second=0),
            ),
        }
        print(
            f"\n{'query':40} {'API p50':>9} {'API p95':>9} {'raw p50':>9} {'raw p95':>9} "
            f"{'raw/API':>8}"
        )
        for name, action in api.items():
            a50, a95 = timed(action, repeat)
            r50, r95 = timed(raw[name], max(3, repeat // 4))
            print(
                f"{name:40} {a50:8.1f}ms {a95:8.1f}ms {r50:8.1f}ms {r95:8.1f}ms {r50 / a50:7.1f}x"
            )
        print(
            f"\n(raw readings exist for {days} days; the 1-year raw query scans those. The raw "
            "24-hour window is the same rows read directly, without HTTP and JSON.)"
        )


if __name__ == "__main__":
    main()
