"""The writer's store on each database: rows/s of 1,000-reading batches, one commit each.

Runs ``powerflow_writer.store.store_readings`` (register devices, read what is stored, upsert,
commit) on a fresh SQLite file with ``synchronous=FULL`` (the default) and ``NORMAL``, and on
MariaDB when it answers, and prints rows/s and the p50/p95 commit time per batch. Not part of
``make test``. ``--batches`` sets the work (default 40 batches: 40,000 new rows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.wire import Reading
from powerflow_writer.store import store_readings

SERVER = os.environ.get("POWERFLOW_BENCH_DATABASE_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
DEVICES = 50
GAP = timedelta(minutes=5)


def batches(count: int, size: int) -> list[list[Reading]]:
    """``count`` batches of new readings: 50 devices, 5 s apart, as a fleet sends them."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for b in range(count):
        batch = []
        for i in range(size):
            n = b * size + i
            batch.append(
                Reading(
                    device_code=f"bench-{n % DEVICES}",
                    ts=start + timedelta(seconds=5 * (n // DEVICES)),
                    power_w=100.0 + n % 17,
                    energy_wh=float(n),
                    temperature_c=21.5,
                )
            )
        out.append(batch)
    return out


def run(name: str, url: str, make: Callable[[str], Engine], work: list[list[Reading]]) -> None:
    migrate(url)
    engine = make(url)
    try:
        times = []
        started = time.perf_counter()
        for batch in work:
            t0 = time.perf_counter()
            result = store_readings(engine, batch, received_at=datetime.now(UTC), max_gap=GAP)
            times.append(time.perf_counter() - t0)
            assert result.inserted == len(batch), result
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
        drop_database(url)
    rows = sum(len(b) for b in work)
    p95 = statistics.quantiles(times, n=20)[-1]
    p50 = statistics.median(times)
    print(
        f"{name:<24} {rows / elapsed:>9,.0f} rows/s"
        f"   batch p50 {p50 * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=40)
    # 1,000: the writer's default batch_max_readings; small batches show the cost of commits.
    parser.add_argument("--size", type=int, default=1_000)
    args = parser.parse_args()
    work = batches(args.batches, args.size)
    folder = Path(tempfile.mkdtemp(prefix="pf-bench-store-"))
    print(f"store_readings, {args.size}-reading batches, {args.batches} batches")
    for mode in ("FULL", "NORMAL"):
        url = f"sqlite:///{folder / mode.lower() / 'powerflow.db'}"
        run(
            f"SQLite synchronous={mode}",
            url,
            lambda u, m=mode: make_engine(u, sqlite_synchronous=m),  # type: ignore[misc]
            work,
        )
    try:
        run("MariaDB", f"{SERVER}/pf_bench_{uuid.uuid4().hex[:8]}", make_engine, work)
    except Exception as exc:
        print(f"MariaDB                  skipped: {type(exc).__name__}: {exc}"[:200])


if __name__ == "__main__":
    main()
