"""What the database benchmarks share: the server they measure, the rows they seed, timing.

One copy, so that the query and chart benchmarks seed the same sites, devices and hourly
statistics, time alike and measure SQLite and MariaDB the same way: their numbers compare.
A benchmark script runs as ``python bench/NAME.py``; it puts the checkout on ``sys.path``
to import this as ``bench._common`` (as bench/nats_cluster.py imports bench/pipeline.py).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, insert

from powerflow_api import readings as api_readings
from powerflow_api.schemas import Resolution
from powerflow_common.db.engine import connect_failure, drop_database
from powerflow_common.db.models import DEVICES, SITES

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
SEOUL, NEW_YORK = 1, 2
KG_PER_KWH = 0.478
INSERT_CHUNK = 5_000  # rows per executemany: bounded memory, few round trips
# Seeded, so every engine and every run gets the same rows.
HOURLY_SEED = 42
# The one device whose raw readings a benchmark loads.
READINGS_DEVICE = 1
# Points a readings page may hold: more than any chart here asks for, so one page is one chart.
PAGE_LIMIT = 5_000
# The 95th percentile of a sorted sample list: the last sample below the top 5 %.
P95 = 0.95
T = TypeVar("T")


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of ``repeat`` runs (after one warm-up)."""
    action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * P95) - 1)]


def mariadb_missing() -> str | None:
    """Why MariaDB at SERVER cannot be measured, or None when it answers."""
    return connect_failure(SERVER)


def on_both_engines(prefix: str, run: Callable[[str], T]) -> tuple[dict[str, T], str | None]:
    """``run(url)`` on a fresh SQLite file, then on a MariaDB database of its own (dropped
    after) when the server answers: results by engine name, and why MariaDB was not measured."""
    results: dict[str, T] = {}
    with tempfile.TemporaryDirectory(prefix=f"pf-bench-{prefix}-") as folder:
        results["SQLite"] = run(f"sqlite:///{Path(folder) / 'powerflow.db'}")
    missing = mariadb_missing()
    if missing is None:
        url = f"{SERVER}/pf_bench_{prefix}_{uuid.uuid4().hex[:8]}"
        try:
            results["MariaDB"] = run(url)
        finally:
            drop_database(url)
    return results, missing


def insert_chunked(engine: Engine, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """Insert ``rows`` INSERT_CHUNK at a time, a transaction each."""
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK:
            with engine.begin() as conn:
                conn.execute(insert(table), chunk)
            chunk = []
    if chunk:
        with engine.begin() as conn:
            conn.execute(insert(table), chunk)


def insert_sites_and_devices(
    conn: Connection, devices: int, start: datetime, now: datetime, code_prefix: str
) -> None:
    """Two sites (Seoul, New York); half the devices on each, the first of each its main meter
    (counted), the rest sub-meters behind it, as a metered building is."""
    conn.execute(
        insert(SITES),
        [
            {"id": SEOUL, "name": "Seoul", "timezone": "Asia/Seoul", "created_at": start},
            {"id": NEW_YORK, "name": "NY", "timezone": "America/New_York", "created_at": start},
        ],
    )
    half = devices // 2
    conn.execute(
        insert(DEVICES),
        [
            {
                "id": d,
                "code": f"{code_prefix}-{d:02d}",
                "site_id": SEOUL if d <= half else NEW_YORK,
                "meter_role": "main" if d in (1, half + 1) else "sub",
                "payload_format": "original",
                "bidirectional": False,
                "first_seen_at": start,
                "last_seen_at": now,
                "admitted_at": start,
                "admitted_by": "bench",
            }
            for d in range(1, devices + 1)
        ],
    )


def hourly_stat(
    device: int,
    at: datetime,
    kwh: float,
    now: datetime,
    rng: random.Random,
    samples: int,
) -> dict[str, Any]:
    """An hourly_stats row of ``kwh`` (also a quarter_hour_stats row, given its quarter)."""
    return {
        "device_id": device,
        "hour_start": at,
        "samples": samples,
        "coverage": 1.0,
        "energy_kwh": kwh,
        "export_kwh": 0.0,
        "unallocated_kwh": 0.0,
        "unallocated_export_kwh": 0.0,
        "power_avg_w": kwh * 1000,
        "power_min_w": kwh * 600,
        "power_max_w": kwh * 1500,
        "temperature_avg_c": rng.uniform(18, 27),
        "humidity_avg_pct": rng.uniform(30, 60),
        "brightness_avg_lux": rng.uniform(0, 800),
        "co2_kg": kwh * KG_PER_KWH,
        "emission_factor_id": 1,
        "factor_set": "original",
        "energy_source": "power",
        "computed_at": now,
    }


def hourly_rows(
    devices: int, start: datetime, hours: int, now: datetime, samples: int
) -> Iterator[dict[str, Any]]:
    """``hours`` hours of every device from ``start``, on a daily load shape."""
    rng = random.Random(HOURLY_SEED)
    for h in range(hours):
        at = start + timedelta(hours=h)
        shape = 0.6 + 0.4 * ((at.hour + 6) % 24) / 24  # a daily load shape
        for d in range(1, devices + 1):
            yield hourly_stat(d, at, shape * rng.uniform(0.2, 1.2), now, rng, samples)


def device_readings(start: datetime, end: datetime, every: timedelta) -> Iterator[dict[str, Any]]:
    """READINGS_DEVICE's raw readings every ``every`` in [start, end), received on time."""
    for i in range(-(-(end - start) // every)):
        at = start + i * every
        yield {
            "device_id": READINGS_DEVICE,
            "ts": at,
            "power_w": 400.0 + (i % 360),
            "temperature_c": 22.0,
            "received_at": at,
        }


def readings_window(
    code_prefix: str, start: datetime, now: datetime, resolution: Resolution
) -> api_readings.Window:
    """The API's query for READINGS_DEVICE's chart over [start, now), as a request makes it
    (Seoul's days; every row received by then counts)."""
    return api_readings.Window(
        device_id=READINGS_DEVICE,
        device_code=f"{code_prefix}-{READINGS_DEVICE:02d}",
        timezone="Asia/Seoul",
        start=start,
        end=now,
        resolution=resolution,
        limit=PAGE_LIMIT,
        after=None,
        as_of=now + timedelta(days=1),
    )
