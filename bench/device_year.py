"""What a device-year costs: rows and bytes of raw readings, hourly and quarter-hour statistics.

Inserts ``--devices`` devices x ``--hours`` hours of readings 5 s apart (the fleet's cadence;
the original format's four quantities, as `make run`'s simulated fleet sends them) in time
order across devices, as the writer stores them (1,000-row batches, so pages fill the way they
do in production), and a year of hourly statistics per device (rows made by the aggregator's
own ``stat_row`` from a computed hour) and their quarters (four rows an hour, as
quarter_hour.store_quarters writes them). Then it reads what the engine allocated:

- MariaDB: ``information_schema.tables`` data_length + index_length after ``ANALYZE TABLE``
  (what InnoDB allocated: pages, including their free space, the primary key and every
  secondary index; partitions summed);
- SQLite: the pages of each table and its indexes from the ``dbstat`` virtual table (the
  file is their sum plus the schema).

From the bytes per row it prints a device-year (6,311,520 readings at 5 s, 8,766 hours) and
storage after 1 to 10 years with raw readings kept for ever and with a raw retention of
400 days (raw then stops growing at 400 days of readings; hourly and quarter rows stay for
ever). daily_site_stats is per site-day, not per device (365 rows a site-year): left out. Not
part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from powerflow_aggregator.rows import stat_row
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import (
    EMISSION_FACTORS,
    HOURLY_STATS,
    QUARTER_HOUR_STATS,
    READINGS,
)
from powerflow_common.energy import HOUR, EnergySample, hourly_energy, quarter_hour_energy

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
READING_INTERVAL = timedelta(seconds=5)  # what devices send (docs/architecture.md)
SECONDS_PER_YEAR = 365.25 * 86_400  # a Julian year: leap days included on average
READINGS_PER_DEVICE_YEAR = SECONDS_PER_YEAR / READING_INTERVAL.total_seconds()  # 6,311,520
HOURS_PER_YEAR = SECONDS_PER_YEAR / 3600  # 8,766
QUARTERS_PER_YEAR = 4 * HOURS_PER_YEAR  # every quarter of a device reporting every 5 s
RAW_RETENTION_DAYS = 400  # the example: a year and a bit, for year-on-year questions
BATCH_ROWS = 1_000  # the writer's default writer_batch_max_readings
YEARS_SHOWN = (1, 2, 5, 10)
FLEETS = (20, 1_000)  # make run's fleet; the large one
START = datetime(2026, 1, 1, tzinfo=UTC)
FACTOR_SET = "original"  # the default set (settings.factor_set)


@dataclass(frozen=True, slots=True)
class TableCost:
    """What one table took: rows and allocated bytes (data and indexes)."""

    rows: int
    bytes: int

    @property
    def per_row(self) -> float:
        return self.bytes / self.rows


@dataclass(frozen=True, slots=True)
class EngineCost:
    name: str
    readings: TableCost
    hourly: TableCost
    quarters: TableCost

    def raw_bytes(self, days: float) -> float:
        return self.readings.per_row * days * 86_400 / READING_INTERVAL.total_seconds()

    def stored_after(self, years: float, retention_days: float | None) -> float:
        """Bytes one device holds after ``years``: raw (capped by retention), hours, quarters."""
        kept_days = years * SECONDS_PER_YEAR / 86_400
        if retention_days is not None:
            kept_days = min(kept_days, retention_days)
        rollups = self.hourly.per_row * HOURS_PER_YEAR + self.quarters.per_row * QUARTERS_PER_YEAR
        return self.raw_bytes(kept_days) + rollups * years


def readings(devices: int, hours: int) -> Iterator[list[dict[str, Any]]]:
    """Rows as the writer stores them, in 1,000-row batches, time-ordered across devices."""
    steps = int(hours * HOUR / READING_INTERVAL)
    batch: list[dict[str, Any]] = []
    for step in range(steps):
        ts = START + READING_INTERVAL * step
        for device in range(1, devices + 1):
            batch.append(
                {
                    "device_id": device,
                    "ts": ts,
                    "received_at": ts + timedelta(milliseconds=300 + step % 200),
                    "power_w": round(100 + device + (step * 37 % 1000) / 10, 2),
                    "temperature_c": round(20 + (step % 300) / 100, 2),
                    "humidity_pct": round(40 + (step % 200) / 10, 1),
                    "brightness_lux": float(300 + step % 500),
                }
            )
            if len(batch) == BATCH_ROWS:
                yield batch
                batch = []
    if batch:
        yield batch


def _hour_samples() -> list[EnergySample]:
    return [
        EnergySample(
            ts=START + READING_INTERVAL * i,
            power_w=100 + (i * 37 % 1000) / 10,
            temperature_c=20 + (i % 300) / 100,
            humidity_pct=40 + (i % 200) / 10,
            brightness_lux=float(300 + i % 500),
        )
        for i in range(int(HOUR / READING_INTERVAL) + 1)
    ]


def hourly_rows(devices: int, factor_id: int | None) -> Iterator[list[dict[str, Any]]]:
    """A year of hourly_stats rows per device, each the aggregator's row of a computed hour."""
    (computed,) = hourly_energy(_hour_samples(), START, START + HOUR)
    template = stat_row(
        computed, device_id=0, factor=None, factor_set=FACTOR_SET, computed_at=datetime.now(UTC)
    )
    template["emission_factor_id"] = factor_id
    template["flags"] = None
    batch: list[dict[str, Any]] = []
    for hour in range(round(HOURS_PER_YEAR)):
        for device in range(1, devices + 1):
            batch.append({**template, "device_id": device, "hour_start": START + HOUR * hour})
            if len(batch) == BATCH_ROWS:
                yield batch
                batch = []
    if batch:
        yield batch


def quarter_rows(devices: int, factor_id: int | None) -> Iterator[list[dict[str, Any]]]:
    """A year of quarter_hour_stats rows per device: each hour's four computed quarters."""
    templates = []
    for quarter in quarter_hour_energy(_hour_samples(), START, START + HOUR):
        row = stat_row(
            quarter, device_id=0, factor=None, factor_set=FACTOR_SET, computed_at=datetime.now(UTC)
        )
        row["emission_factor_id"] = factor_id
        row["flags"] = None
        row["offset"] = row.pop("hour_start") - START
        templates.append(row)
    batch: list[dict[str, Any]] = []
    for hour in range(round(HOURS_PER_YEAR)):
        hour_start = START + HOUR * hour
        for device in range(1, devices + 1):
            for template in templates:
                row = {k: v for k, v in template.items() if k != "offset"}
                row.update(
                    device_id=device,
                    hour_start=hour_start,
                    quarter_start=hour_start + template["offset"],
                )
                batch.append(row)
                if len(batch) == BATCH_ROWS:
                    yield batch
                    batch = []
    if batch:
        yield batch


def fill(engine: Engine, devices: int, hours: int) -> tuple[int, int, int]:
    raw = hourly = quarters = 0
    with engine.connect() as conn:
        factor_id = conn.execute(select(func.min(EMISSION_FACTORS.c.id))).scalar()
    for batch in readings(devices, hours):
        with engine.begin() as conn:
            conn.execute(insert(READINGS), batch)
        raw += len(batch)
    for batch in hourly_rows(devices, factor_id):
        with engine.begin() as conn:
            conn.execute(insert(HOURLY_STATS), batch)
        hourly += len(batch)
    for batch in quarter_rows(devices, factor_id):
        with engine.begin() as conn:
            conn.execute(insert(QUARTER_HOUR_STATS), batch)
        quarters += len(batch)
    return raw, hourly, quarters


def mariadb_bytes(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        conn.execute(text(f"ANALYZE TABLE {table}")).all()
        data, index = conn.execute(
            text(
                "SELECT data_length, index_length FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = :t"
            ),
            {"t": table},
        ).one()
    return int(data) + int(index)


def sqlite_bytes(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        total = conn.execute(
            text(
                "SELECT SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name"
                " WHERE m.tbl_name = :t"
            ),
            {"t": table},
        ).scalar_one()
    return int(total)


def sqlite_btrees(engine: Engine, table: str) -> str:
    """Each b-tree of ``table`` and its bytes: a rowid table keeps its primary key twice."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m"
                " ON m.name = d.name WHERE m.tbl_name = :t GROUP BY d.name"
            ),
            {"t": table},
        ).all()
    return ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in rows)


def measure(name: str, url: str, devices: int, hours: int) -> EngineCost:
    migrate(url)
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        raw, hourly, quarters = fill(engine, devices, hours)
        elapsed = time.perf_counter() - started
        size = mariadb_bytes if engine.dialect.name != "sqlite" else sqlite_bytes
        cost = EngineCost(
            name,
            TableCost(raw, size(engine, READINGS.name)),
            TableCost(hourly, size(engine, HOURLY_STATS.name)),
            TableCost(quarters, size(engine, QUARTER_HOUR_STATS.name)),
        )
        if engine.dialect.name == "sqlite":
            print(f"{name} b-trees of readings: {sqlite_btrees(engine, READINGS.name)}")
    finally:
        engine.dispose()
        drop_database(url)
    print(
        f"{name}: {raw:,} readings, {hourly:,} hourly and {quarters:,} quarter rows inserted"
        f" in {elapsed:.1f} s"
    )
    return cost


def gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def report(costs: list[EngineCost]) -> None:
    print()
    print(
        f"A device-year at one reading per {READING_INTERVAL.total_seconds():.0f} s: "
        f"{READINGS_PER_DEVICE_YEAR:,.0f} readings, {HOURS_PER_YEAR:,.0f} hourly rows, "
        f"{QUARTERS_PER_YEAR:,.0f} quarter rows"
    )
    print(f"{'engine':<9}{'table':<20}{'rows measured':>14}{'bytes/row':>11}{'device-year':>13}")
    for cost in costs:
        for table, part, per_year in (
            ("readings", cost.readings, READINGS_PER_DEVICE_YEAR),
            ("hourly_stats", cost.hourly, HOURS_PER_YEAR),
            ("quarter_hour_stats", cost.quarters, QUARTERS_PER_YEAR),
        ):
            print(
                f"{cost.name:<9}{table:<20}{part.rows:>14,}{part.per_row:>11.1f}"
                f"{gb(part.per_row * per_year):>13}"
            )
    print()
    print(f"Stored per device after N years: everything kept / raw kept {RAW_RETENTION_DAYS} days")
    print(f"{'engine':<9}" + "".join(f"{f'{y} y':>26}" for y in YEARS_SHOWN))
    for cost in costs:
        cells = [
            f"{gb(cost.stored_after(y, None))} / {gb(cost.stored_after(y, RAW_RETENTION_DAYS))}"
            for y in YEARS_SHOWN
        ]
        print(f"{cost.name:<9}" + "".join(f"{c:>26}" for c in cells))
    for fleet in FLEETS:
        print()
        print(
            f"A fleet of {fleet:,} devices after 5 years (everything / {RAW_RETENTION_DAYS} days)"
        )
        for cost in costs:
            rollup_rows = HOURS_PER_YEAR + QUARTERS_PER_YEAR
            rows_all = 5 * (READINGS_PER_DEVICE_YEAR + rollup_rows) * fleet
            rows_kept = (
                RAW_RETENTION_DAYS * 86_400 / READING_INTERVAL.total_seconds() + 5 * rollup_rows
            ) * fleet
            everything = gb(cost.stored_after(5, None) * fleet)
            kept = gb(cost.stored_after(5, RAW_RETENTION_DAYS) * fleet)
            print(
                f"{cost.name:<9}{rows_all:>16,.0f} rows {everything:>11}"
                f" / {rows_kept:>14,.0f} rows {kept:>11}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=10)
    # 10 devices x 24 h = 172,800 readings: enough pages that the per-row cost is stable.
    parser.add_argument("--hours", type=int, default=24)
    args = parser.parse_args()
    costs = []
    folder = Path(tempfile.mkdtemp(prefix="pf-bench-device-year-"))
    costs.append(
        measure("SQLite", f"sqlite:///{folder / 'powerflow.db'}", args.devices, args.hours)
    )
    try:
        url = f"{SERVER}/pf_bench_{uuid.uuid4().hex[:8]}"
        costs.insert(0, measure("MariaDB", url, args.devices, args.hours))
    except Exception as exc:
        print(f"MariaDB skipped: {type(exc).__name__}: {exc}"[:200])
    report(costs)


if __name__ == "__main__":
    main()
