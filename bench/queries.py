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
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

# Run as ``python bench/queries.py``: the checkout on the path for the shared bench pieces.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench._common import (  # noqa: E402
    NEW_YORK,
    SEOUL,
    SERVER,
    device_readings,
    hourly_rows,
    insert_chunked,
    insert_sites_and_devices,
    on_both_engines,
    readings_window,
    timed,
)
from powerflow_api import readings as api_readings  # noqa: E402
from powerflow_api import schemas, stats  # noqa: E402
from powerflow_common.db.engine import make_engine, migrate  # noqa: E402
from powerflow_common.db.models import HOURLY_STATS, READINGS, RENEWABLE_CONTRACTS  # noqa: E402
from powerflow_common.logs import configure_logging  # noqa: E402
from powerflow_common.settings import Settings, load_settings  # noqa: E402

READING_EVERY = timedelta(seconds=10)
HOUR_SAMPLES = 360  # a full hour of 10-second readings


def load(engine: Engine, devices: int, days: int, now: datetime) -> float:
    """The benchmark's rows; returns the seconds it took."""
    started = time.perf_counter()
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        insert_sites_and_devices(conn, devices, start, now, "q")
        conn.execute(
            insert(RENEWABLE_CONTRACTS).values(
                site_id=SEOUL,
                period_start=date(now.year, 1, 1),
                period_end=date(now.year, 12, 31),
                energy_kwh=1_000.0,
                instrument="REC",
            )
        )
    insert_chunked(engine, HOURLY_STATS, hourly_rows(devices, start, days * 24, now, HOUR_SAMPLES))
    insert_chunked(engine, READINGS, device_readings(now - timedelta(days=1), now, READING_EVERY))
    return time.perf_counter() - started


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

    def readings(resolution: schemas.Resolution, span: timedelta) -> Callable[[], Any]:
        window = readings_window("q", now - span, now, resolution)
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


def run(
    url: str, args: argparse.Namespace, now: datetime
) -> tuple[float, dict[str, tuple[float, float]]]:
    migrate(url)
    engine = make_engine(url)
    try:
        load_s = load(engine, args.devices, args.days, now)
        settings = load_settings(database_url=url, organisation_timezone="Asia/Seoul")
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
    results, missing = on_both_engines("q", lambda url: run(url, args, now))

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
