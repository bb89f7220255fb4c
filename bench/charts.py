"""Chart benchmark: the 1-year daily site chart and the 30-day 15-minute chart, before and after
the rollup tables (daily_site_stats, quarter_hour_stats), side by side in one run.

Loads the same rows into a SQLite file (the embedded default) and into a MariaDB database of
its own: two sites (Asia/Seoul, America/New_York), ``--devices`` devices (default 20) with a
year of hourly statistics (``--days``, default 366), their quarter hours for the last
``--quarter-days`` days (default 30) and, for one device, that month's raw readings at 5 s
(518,400 rows). Then times what the API does per request, without HTTP and JSON:

- **daily site chart, 1 year**: ``stats.series(site, day)`` over a year; *before* is the path
  without the cache (``queries.period_sums`` over hourly_stats: the site's 10 devices x
  8,784 hours), *after* reads the site's 366 days from daily_site_stats (the edges of the range from
  hourly_stats). The one-time cost of building a site's days is printed too.
- **15-minute chart, 30 days**: one device's readings at ``resolution=15m``; *before* groups
  the raw readings in SQL (the path without quarter_hour_stats, 518,400 rows), *after* reads
  2,880 rows of quarter_hour_stats.

Prints p50/p95 in milliseconds per engine and the before/after ratio. MariaDB is used when it
answers at POWERFLOW_BENCH_DATABASE_SERVER (default root@127.0.0.1:3306), else its column
says why. ``--quick`` loads 40 days and 3 days of readings. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import Engine

# Run as ``python bench/charts.py``: the checkout on the path for the shared bench pieces.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench._common import (  # noqa: E402
    SEOUL,
    SERVER,
    device_readings,
    hourly_rows,
    hourly_stat,
    insert_chunked,
    insert_sites_and_devices,
    on_both_engines,
    readings_window,
    timed,
)
from powerflow_api import readings as api_readings  # noqa: E402
from powerflow_api import stats  # noqa: E402
from powerflow_common import daily_site  # noqa: E402
from powerflow_common.db.engine import make_engine, migrate  # noqa: E402
from powerflow_common.db.models import (  # noqa: E402
    HOURLY_STATS,
    QUARTER_HOUR_STATS,
    READINGS,
)
from powerflow_common.logs import configure_logging  # noqa: E402
from powerflow_common.settings import Settings, load_settings  # noqa: E402

READING_EVERY = timedelta(seconds=5)
QUARTER = timedelta(minutes=15)
AIM_MS = 50.0  # the aim: both charts under 50 ms
# Samples a full hour and a full quarter of 5-second readings hold.
HOUR_SAMPLES = 720
QUARTER_SAMPLES = 180
QUARTER_SEED = 7  # the same quarters on every engine and every run


def _quarter_rows(
    devices: int, start: datetime, quarters: int, now: datetime
) -> Iterator[dict[str, Any]]:
    rng = random.Random(QUARTER_SEED)
    for q in range(quarters):
        at = start + q * QUARTER
        hour = at.replace(minute=0)
        for d in range(1, devices + 1):
            row = hourly_stat(d, hour, rng.uniform(0.05, 0.3), now, rng, QUARTER_SAMPLES)
            row["quarter_start"] = at
            yield row


def load(engine: Engine, args: argparse.Namespace, now: datetime) -> float:
    """The benchmark's rows; returns the seconds it took."""
    started = time.perf_counter()
    start = now - timedelta(days=args.days)
    with engine.begin() as conn:
        insert_sites_and_devices(conn, args.devices, start, now, "c")
    q_start = now - timedelta(days=args.quarter_days)
    for table, rows in (
        (HOURLY_STATS, hourly_rows(args.devices, start, args.days * 24, now, HOUR_SAMPLES)),
        (QUARTER_HOUR_STATS, _quarter_rows(args.devices, q_start, args.quarter_days * 96, now)),
        (READINGS, device_readings(q_start, now, READING_EVERY)),
    ):
        insert_chunked(engine, table, rows)
    return time.perf_counter() - started


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

    window = readings_window("c", now - timedelta(days=args.quarter_days), now, "15m")

    def quarters_from_raw() -> Any:  # without quarter_hour_stats: raw grouped in SQL
        with engine.connect() as conn:
            return list(api_readings._grouped(conn, window, window.limit, 900))

    return {
        f"daily site chart, {args.days} d": (daily(False), daily(True)),
        f"15-minute chart, {args.quarter_days} d": (
            quarters_from_raw,
            lambda: api_readings.read_page(engine, window),
        ),
    }


Result = tuple[float, float, dict[str, tuple[tuple[float, float], tuple[float, float]]]]


def run(url: str, args: argparse.Namespace, now: datetime) -> Result:
    migrate(url)
    engine = make_engine(url)
    try:
        load_s = load(engine, args, now)
        settings = load_settings(database_url=url, organisation_timezone="Asia/Seoul")
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
    results, missing = on_both_engines("c", lambda url: run(url, args, now))

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
