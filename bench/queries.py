"""Query benchmark: the statistics and chart queries on SQLite (the default) next to MariaDB.

Loads the same rows into a SQLite file (the embedded default, WAL, as ``powerflow up`` makes
it) and into a MariaDB database of its own: two sites in zones of their own (Asia/Seoul,
America/New_York), ``--devices`` devices (default 20) with ``--days`` days (default 30) of
hourly statistics, a renewable contract (so Scope 2 splits by site), and a day of 10-second
readings of one device. Then times what the API does for each request, without HTTP and JSON
(the same on both engines): the statistics endpoint's series (``stats.series``, over
``queries.period_sums``), the dashboard summary, and a device's readings at 1 h, 1 d and 15 min.
Prints p50/p95 in milliseconds per engine, side by side. MariaDB is used when it answers at
POWERFLOW_BENCH_DATABASE_SERVER (default root@127.0.0.1:3306), else its column says why.
Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert

from powerflow_api import readings as api_readings
from powerflow_api import stats
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import (
    DEVICES,
    HOURLY_STATS,
    READINGS,
    RENEWABLE_CONTRACTS,
    SITES,
)
from powerflow_common.logs import configure_logging
from powerflow_common.settings import Settings, load_settings

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
SEOUL, NEW_YORK = 1, 2
KG_PER_KWH = 0.478
READING_EVERY = timedelta(seconds=10)
INSERT_CHUNK = 5_000  # rows per executemany: bounded memory, few round trips


def _hourly_rows(
    devices: int, start: datetime, hours: int, now: datetime
) -> Iterator[dict[str, Any]]:
    rng = random.Random(42)  # the same rows on every engine and every run
    for h in range(hours):
        at = start + timedelta(hours=h)
        shape = 0.6 + 0.4 * ((at.hour + 6) % 24) / 24  # a daily load shape
        for d in range(1, devices + 1):
            kwh = shape * rng.uniform(0.2, 1.2)
            yield {
                "device_id": d,
                "hour_start": at,
                "samples": 360,
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


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load(engine: Engine, devices: int, days: int, now: datetime) -> float:
    """The benchmark's rows; returns the seconds it took."""
    started = time.perf_counter()
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            insert(SITES),
            [
                {"id": SEOUL, "name": "Seoul", "timezone": "Asia/Seoul", "created_at": start},
                {"id": NEW_YORK, "name": "NY", "timezone": "America/New_York", "created_at": start},
            ],
        )
        # Half the devices on each site; the first of each is its main meter (counted), the
        # rest sub-meters behind it, as a metered building is.
        half = devices // 2
        conn.execute(
            insert(DEVICES),
            [
                {
                    "id": d,
                    "code": f"q-{d:02d}",
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
        conn.execute(
            insert(RENEWABLE_CONTRACTS).values(
                site_id=SEOUL,
                period_start=date(now.year, 1, 1),
                period_end=date(now.year, 12, 31),
                energy_kwh=1_000.0,
                instrument="REC",
            )
        )
    for chunk in _chunks(_hourly_rows(devices, start, days * 24, now)):
        with engine.begin() as conn:
            conn.execute(insert(HOURLY_STATS), chunk)
    day_ago = now - timedelta(days=1)
    readings = (
        {
            "device_id": 1,
            "ts": day_ago + i * READING_EVERY,
            "power_w": 400.0 + (i % 360),
            "temperature_c": 22.0,
            "received_at": day_ago + i * READING_EVERY,
        }
        for i in range(int(timedelta(days=1) / READING_EVERY))
    )
    for chunk in _chunks(readings):
        with engine.begin() as conn:
            conn.execute(insert(READINGS), chunk)
    return time.perf_counter() - started


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of ``repeat`` runs (after one warm-up)."""
    action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def queries(
    engine: Engine, settings: Settings, now: datetime, days: int
) -> dict[str, Callable[[], Any]]:
    """What the API runs per request, by name."""
    month = (now - timedelta(days=days), now)

    def series(kind: stats.ScopeKind, ref: str | None, period: str) -> Callable[[], Any]:
        def go() -> Any:
            with engine.connect() as conn:
                scope = stats.resolve_scope(conn, settings, kind, ref)
                return stats.series(conn, settings, scope, period, *month)  # type: ignore[arg-type]

        return go

    def summary() -> Any:
        with engine.connect() as conn:
            scope = stats.resolve_scope(conn, settings, "organisation", None)
            return stats.summary(conn, settings, scope, now)

    def readings(resolution: str, span: timedelta) -> Callable[[], Any]:
        window = api_readings.Window(
            device_id=1,
            device_code="q-01",
            timezone="Asia/Seoul",
            start=now - span,
            end=now,
            resolution=resolution,  # type: ignore[arg-type]
            limit=5_000,
            after=None,
            as_of=now + timedelta(days=1),
        )
        return lambda: api_readings.read_page(engine, window)

    return {
        f"stats: site, per day, {days} d": series("site", str(SEOUL), "day"),
        f"stats: organisation, per day, {days} d": series("organisation", None, "day"),
        f"stats: organisation, per hour, {days} d": series("organisation", None, "hour"),
        f"stats: site (DST zone), per week, {days} d": series("site", str(NEW_YORK), "week"),
        "summary (overview)": summary,
        f"readings: 1 device, 1 h, {days} d": readings("1h", timedelta(days=days)),
        f"readings: 1 device, 1 d, {days} d": readings("1d", timedelta(days=days)),
        "readings: 1 device, 15 min, 24 h": readings("15m", timedelta(hours=24)),
    }


def mariadb_missing() -> str | None:
    try:
        probe = create_engine(SERVER, connect_args={"connect_timeout": 2})
        with probe.connect():
            pass
        probe.dispose()
    except Exception as exc:  # any failure to connect means: not here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return None


def run(
    url: str, args: argparse.Namespace, now: datetime
) -> tuple[float, dict[str, tuple[float, float]]]:
    migrate(url)
    engine = make_engine(url)
    try:
        load_s = load(engine, args.devices, args.days, now)
        settings = load_settings(database_url=url, api_timezone="Asia/Seoul")
        return load_s, {
            name: timed(action, args.repeat)
            for name, action in queries(engine, settings, now, args.days).items()
        }
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=int, default=30, help="days of hourly statistics")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    configure_logging("warning", "console")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    results: dict[str, tuple[float, dict[str, tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="pf-bench-q-") as folder:
        results["SQLite"] = run(f"sqlite:///{Path(folder) / 'powerflow.db'}", args, now)
    missing = mariadb_missing()
    if missing is None:
        url = f"{SERVER}/pf_bench_q_{uuid.uuid4().hex[:8]}"
        try:
            results["MariaDB"] = run(url, args, now)
        finally:
            drop_database(url)

    hourly = args.devices * args.days * 24
    print(
        f"\n{args.devices} devices x {args.days} days: {hourly:,} hourly rows, "
        f"{int(timedelta(days=1) / READING_EVERY):,} readings; {args.repeat} runs each "
        "after a warm-up, in milliseconds"
    )
    names = list(next(iter(results.values()))[1])
    header = f"{'query':44}" + "".join(f" {e + ' p50':>12} {e + ' p95':>12}" for e in results)
    print(header)
    for name in names:
        cells = "".join(
            f" {results[e][1][name][0]:12.1f} {results[e][1][name][1]:12.1f}" for e in results
        )
        print(f"{name:44}{cells}")
    print(f"{'load (s)':44}" + "".join(f" {results[e][0]:12.1f} {'':12}" for e in results))
    if missing is not None:
        print(f"\nMariaDB not measured: not reachable at {SERVER} ({missing})")


if __name__ == "__main__":
    main()
