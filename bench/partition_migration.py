"""Migration 0008 on a big ``readings`` table: rows/s of the ALTER that partitions it by month.

Builds a fresh MariaDB database at revision 0007, fills ``readings`` with ``--rows`` rows of 20
devices spread evenly over twelve months of 2025 (MariaDB's SEQUENCE engine generates them in
SQL), then times ``powerflow migrate`` to head (the ``ALTER TABLE .. PARTITION BY RANGE
COLUMNS(ts)`` copies every row), the retention job's ``REORGANIZE`` of the catch-all (new
months ahead), the job's rolled-up check over the year and one ``DROP PARTITION`` of a month.
Prints rows/s and the data size. Not part of ``make test`` (it takes minutes);
docs/operations.md quotes its numbers.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from powerflow_aggregator.retention_job import (
    ensure_partitions,
    not_rolled_up,
    readings_partitions,
)
from powerflow_common.db.engine import drop_database, make_engine, migrate

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
DEVICES = 20
YEAR_S = 365 * 24 * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    per_device = args.rows // DEVICES
    step_s = YEAR_S // per_device
    url = f"{SERVER}/pf_bench_part_{uuid.uuid4().hex[:8]}"
    migrate(url, "0007")
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, code, payload_format, meter_role, bidirectional,"
                    " first_seen_at, last_seen_at, legacy_topic) SELECT seq, CONCAT('bench-', seq),"
                    " 'original', 'standalone', 0, '2025-01-01', '2025-01-01', 0"
                    f" FROM seq_1_to_{DEVICES}"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO readings (device_id, ts, power_w, energy_wh, received_at)"
                    " SELECT d.seq, TIMESTAMP('2025-01-01') + INTERVAL s.seq * :step SECOND,"
                    " 100 + d.seq, s.seq * 0.5, TIMESTAMP('2025-01-02')"
                    f" FROM seq_1_to_{DEVICES} d, seq_0_to_{per_device - 1} s"
                ),
                {"step": step_s},
            )
        fill_s = time.perf_counter() - started
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE TABLE readings")  # fresh sizes in information_schema
            rows = conn.execute(text("SELECT COUNT(*) FROM readings")).scalar_one()
            size = conn.execute(
                text(
                    "SELECT data_length + index_length FROM information_schema.TABLES"
                    " WHERE table_schema = DATABASE() AND table_name = 'readings'"
                )
            ).scalar_one()
        print(f"filled {rows:,} rows ({size / 1024**2:,.0f} MiB) in {fill_s:.1f} s")
        engine.dispose()
        started = time.perf_counter()
        migrate(url)
        alter_s = time.perf_counter() - started
        rate = rows / alter_s
        print(f"migration 0008 (ALTER .. PARTITION BY): {alter_s:.1f} s, {rate:,.0f} rows/s")
        engine = make_engine(url)
        started = time.perf_counter()
        _, added = ensure_partitions(engine, datetime.now(UTC) + timedelta(days=200))
        reorganize_s = time.perf_counter() - started
        print(f"REORGANIZE catch-all into {len(added)} months: {reorganize_s:.2f} s")
        # The job's rolled-up check over the whole year (no stats yet: every device is held at
        # its first hour, but the grouping still reads every row of the range).
        started = time.perf_counter()
        held = not_rolled_up(engine, None, datetime(2026, 1, 1, tzinfo=UTC), first_only=True)
        scan_s = time.perf_counter() - started
        print(
            f"rolled-up check over {rows:,} rows ({len(held)} devices held): {scan_s:.1f} s, "
            f"{rows / scan_s:,.0f} rows/s"
        )
        with engine.connect() as conn:
            first = (readings_partitions(conn) or [])[0].name
            count = conn.execute(text(f"SELECT COUNT(*) FROM readings PARTITION ({first})"))
            month_rows = count.scalar_one()
            started = time.perf_counter()
            conn.exec_driver_sql(f"ALTER TABLE readings DROP PARTITION {first}")
            drop_s = time.perf_counter() - started
        print(f"DROP PARTITION {first} ({month_rows:,} rows): {drop_s:.2f} s")
    finally:
        engine.dispose()
        drop_database(url)


if __name__ == "__main__":
    main()
