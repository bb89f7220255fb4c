"""Chart benchmark: the 1-year daily site chart and the 30-day 15-minute chart, before and after
the rollup tables (daily_site_stats, quarter_hour_stats), side by side in one run.

Loads the same rows into a SQLite file (the embedded default) and into a MariaDB database of
its own: two sites (Asia/Seoul, America/New_York), ``--devices`` devices (default 20) with a
year of hourly statistics (``--days``, default 366), their quarter hours for the last
``--quarter-days`` days (default 30) and, for one device, that month's raw readings at 5 s
(518,400 rows). Then times what the API does per request, without HTTP and JSON:

- **daily site chart, 1 year**: ``stats.series(site, day)`` over a year; *before* is the path
  of step 8 (``queries.period_sums`` over hourly_stats: the site's 10 devices x 8,784 hours),
  *after* reads the site's 366 days from daily_site_stats (the edges of the range from
  hourly_stats). The one-time cost of building a site's days is printed too.
- **15-minute chart, 30 days**: one device's readings at ``resolution=15m``; *before* groups
  the raw readings in SQL (the step 8 path, 518,400 rows), *after* reads 2,880 rows of
  quarter_hour_stats.

Prints p50/p95 in milliseconds per engine and the before/after ratio. MariaDB is used when it
answers at POWERFLOW_BENCH_DATABASE_SERVER (default root@127.0.0.1:3306), else its column
says why. ``--quick`` loads 40 days and 3 days of readings. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import Engine, create_engine, insert

from powerflow_api import readings as api_readings
from powerflow_api import stats
from powerflow_common import daily_site
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import (
    DEVICES,
    HOURLY_STATS,
    QUARTER_HOUR_STATS,
    READINGS,
    SITES,
)
from powerflow_common.logs import configure_logging
from powerflow_common.settings import Settings, load_settings

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
SEOUL, NEW_YORK = 1, 2
KG_PER_KWH = 0.478
READING_EVERY = timedelta(seconds=5)
QUARTER = timedelta(minutes=15)
INSERT_CHUNK = 5_000  # rows per executemany: bounded memory, few round trips
AIM_MS = 50.0  # issue 14: both charts under 50 ms


def _stat(
    device: int, at: datetime, kwh: float, now: datetime, rng: random.Random
) -> dict[str, Any]:
    return {
        "device_id": device,
        "hour_start": at,
        "samples": 720,
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


def _hourly_rows(
    devices: int, start: datetime, hours: int, now: datetime
) -> Iterator[dict[str, Any]]:
    rng = random.Random(42)  # the same rows on every engine and every run
    for h in range(hours):
        at = start + timedelta(hours=h)
        shape = 0.6 + 0.4 * ((at.hour + 6) % 24) / 24  # a daily load shape
        for d in range(1, devices + 1):
            yield _stat(d, at, shape * rng.uniform(0.2, 1.2), now, rng)


def _quarter_rows(
    devices: int, start: datetime, quarters: int, now: datetime
) -> Iterator[dict[str, Any]]:
    rng = random.Random(7)
    for q in range(quarters):
        at = start + q * QUARTER
        hour = at.replace(minute=0)
        for d in range(1, devices + 1):
            row = _stat(d, hour, rng.uniform(0.05, 0.3), now, rng)
            row["quarter_start"] = at
            row["samples"] = 180
            yield row


def _readings(start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    at, i = start, 0
    while at < end:
        yield {
            "device_id": 1,
            "ts": at,
            "power_w": 400.0 + (i % 360),
            "temperature_c": 22.0,
            "received_at": at,
        }
        i += 1
        at += READING_EVERY


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load(engine: Engine, args: argparse.Namespace, now: datetime) -> float:
    """The benchmark's rows; returns the seconds it took."""
    started = time.perf_counter()
    start = now - timedelta(days=args.days)
    half = args.devices // 2
    with engine.begin() as conn:
        conn.execute(
            insert(SITES),
            [
                {"id": SEOUL, "name": "Seoul", "timezone": "Asia/Seoul", "created_at": start},
                {"id": NEW_YORK, "name": "NY", "timezone": "America/New_York", "created_at": start},
            ],
        )
        # Half the devices on each site; the first of each is its main meter, the rest sub-meters.
        conn.execute(
            insert(DEVICES),
            [
                {
                    "id": d,
                    "code": f"c-{d:02d}",
                    "site_id": SEOUL if d <= half else NEW_YORK,
                    "meter_role": "main" if d in (1, half + 1) else "sub",
                    "payload_format": "original",
                    "bidirectional": False,
                    "first_seen_at": start,
                    "last_seen_at": now,
                    "admitted_at": start,
                    "admitted_by": "bench",
                }
                for d in range(1, args.devices + 1)
            ],
        )
    q_start = now - timedelta(days=args.quarter_days)
    for table, rows in (
        (HOURLY_STATS, _hourly_rows(args.devices, start, args.days * 24, now)),
        (QUARTER_HOUR_STATS, _quarter_rows(args.devices, q_start, args.quarter_days * 96, now)),
        (READINGS, _readings(q_start, now)),
    ):
        for chunk in _chunks(rows):
            with engine.begin() as conn:
                conn.execute(insert(table), chunk)
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


@contextlib.contextmanager
def step8_path() -> Iterator[None]:
    """The API as before the rollup tables: no daily cache read, none built."""
    with (
        mock.patch.object(daily_site, "cached_period_sums", return_value=None),
        mock.patch.object(daily_site, "rebuild_site", return_value=0),
    ):
        yield


def charts(
    engine: Engine, settings: Settings, now: datetime, args: argparse.Namespace
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """(before, after) per chart."""
    year = (now - timedelta(days=args.days - 1), now)

    def daily(cached: bool) -> Callable[[], Any]:
        def go() -> Any:
            with engine.connect() as conn:
                scope = stats.resolve_scope(conn, settings, "site", str(SEOUL))
                if cached:
                    return stats.series(conn, settings, scope, "day", *year)
                with step8_path():
                    return stats.series(conn, settings, scope, "day", *year)

        return go

    window = api_readings.Window(
        device_id=1,
        device_code="c-01",
        timezone="Asia/Seoul",
        start=now - timedelta(days=args.quarter_days),
        end=now,
        resolution="15m",
        limit=5_000,
        after=None,
        as_of=now + timedelta(days=1),
    )

    def quarters_from_raw() -> Any:  # the step 8 path: raw readings grouped by the database
        with engine.connect() as conn:
            return list(api_readings._grouped(conn, window, window.limit, 900))

    return {
        f"daily site chart, {args.days} d": (daily(False), daily(True)),
        f"15-minute chart, {args.quarter_days} d": (
            quarters_from_raw,
            lambda: api_readings.read_page(engine, window),
        ),
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


Result = tuple[float, float, dict[str, tuple[tuple[float, float], tuple[float, float]]]]


def run(url: str, args: argparse.Namespace, now: datetime) -> Result:
    migrate(url)
    engine = make_engine(url)
    try:
        load_s = load(engine, args, now)
        settings = load_settings(database_url=url, api_timezone="Asia/Seoul")
        started = time.perf_counter()
        daily_site.rebuild_site(engine, SEOUL, default_tz="Asia/Seoul", lock_timeout_s=10.0)
        build_ms = (time.perf_counter() - started) * 1000
        out = {}
        for name, (before, after) in charts(engine, settings, now, args).items():
            # Alternating halves, so a busy moment of the shared machine hits both alike.
            out[name] = (timed(before, args.repeat), timed(after, args.repeat))
        return load_s, build_ms, out
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=int, default=366, help="days of hourly statistics")
    parser.add_argument("--quarter-days", type=int, default=30, help="days of quarters/raw")
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="40 days, 3 days of raw readings")
    args = parser.parse_args()
    if args.quick:
        args.days, args.quarter_days, args.repeat = 40, 3, 10
    configure_logging("warning", "console")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="pf-bench-charts-") as folder:
        results["SQLite"] = run(f"sqlite:///{Path(folder) / 'powerflow.db'}", args, now)
    missing = mariadb_missing()
    if missing is None:
        url = f"{SERVER}/pf_bench_c_{uuid.uuid4().hex[:8]}"
        try:
            results["MariaDB"] = run(url, args, now)
        finally:
            drop_database(url)

    raw = int(timedelta(days=args.quarter_days) / READING_EVERY)
    print(
        f"\n{args.devices} devices: {args.devices * args.days * 24:,} hourly rows "
        f"({args.days} d), {args.devices * args.quarter_days * 96:,} quarter rows and {raw:,} "
        f"raw readings of one device ({args.quarter_days} d); {args.repeat} runs each after a "
        "warm-up, milliseconds"
    )
    for engine_name, (load_s, build_ms, out) in results.items():
        print(
            f"\n{engine_name} (load {load_s:.0f} s; building a site's days once: {build_ms:.0f} ms)"
        )
        print(
            f"{'chart':28} {'before p50':>11} {'before p95':>11} {'after p50':>10} "
            f"{'after p95':>10} {'p95 ratio':>10}  aim < {AIM_MS:.0f} ms"
        )
        for name, ((b50, b95), (a50, a95)) in out.items():
            verdict = "met" if a95 < AIM_MS else "NOT met"
            print(
                f"{name:28} {b50:11.1f} {b95:11.1f} {a50:10.1f} {a95:10.1f} "
                f"{b95 / a95:9.1f}x  {verdict}"
            )
    if missing is not None:
        print(f"\nMariaDB not measured: not reachable at {SERVER} ({missing})")


if __name__ == "__main__":
    main()
