"""One data layer, two engines: the same calls behave the same on SQLite and on MariaDB.

Upserts, GREATEST/LEAST, the hour of a timestamp, the per-bucket exclusive section, the
named lock, and the refused-row path of the writer (a row that does not fit its columns is
refused with the same reason on both, before the database sees it).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from pf_testing import count_rows
from powerflow_common.db.dialect import LockNotAcquired, begin_write, dialect_of
from powerflow_common.db.limits import row_problem
from powerflow_common.db.models import DEVICES, READINGS
from powerflow_common.wire import Reading
from powerflow_writer.store import store_readings

pytestmark = pytest.mark.both_backends

T0 = datetime(2026, 3, 1, 10, 15, 30, 250_000, tzinfo=UTC)
GAP = timedelta(minutes=5)


def _store(engine: Engine, readings: list[Reading]) -> list[tuple[str, str]]:
    result = store_readings(engine, readings, received_at=datetime.now(UTC), max_gap=GAP)
    return [(r.device_code, reason) for r, reason in result.refused]


def test_a_row_that_does_not_fit_is_refused_with_the_same_reason_on_both(engine: Engine) -> None:
    good = [
        Reading(device_code=f"dev-{i}", ts=T0 + timedelta(seconds=i), power_w=1.0) for i in range(3)
    ]
    bad = [
        Reading(device_code="long-fw", ts=T0, power_w=1.0, firmware="x" * 100),
        Reading(device_code="big-seq", ts=T0, power_w=1.0, seq=2**63),
        Reading(device_code="nan", ts=T0, power_w=math.nan),
        Reading(device_code="inf", ts=T0, energy_wh=math.inf),
    ]
    refused = dict(_store(engine, [*good, *bad]))
    assert count_rows(engine) == 3
    assert refused == {
        "long-fw": "readings.firmware: data too long for the column (100 characters, at most 64)",
        "big-seq": (
            "readings.seq: 9223372036854775808 out of range for the column "
            "(-9223372036854775808..9223372036854775807)"
        ),
        "nan": "readings.power_w: nan is not a finite number",
        "inf": "readings.energy_wh: inf is not a finite number",
    }


def test_column_limits_come_from_the_models() -> None:
    row = {"device_id": 1, "ts": T0, "received_at": T0}
    assert row_problem(READINGS, row) is None
    assert row_problem(READINGS, {**row, "device_id": 2**31}) == (
        "readings.device_id: 2147483648 out of range for the column (-2147483648..2147483647)"
    )
    assert row_problem(READINGS, {**row, "received_at": None}) == (
        "readings.received_at: NULL in a NOT NULL column"
    )
    assert row_problem(READINGS, {"device_id": 1, "ts": T0}) == (
        "readings.received_at: missing from the row (NOT NULL)"
    )
    naive = T0.replace(tzinfo=None)
    assert "without a time zone" in str(row_problem(READINGS, {**row, "ts": naive}))
    assert "year 999" in str(row_problem(READINGS, {**row, "ts": T0.replace(year=999)}))


def test_a_second_reading_fills_empty_columns_and_keeps_stored_ones(engine: Engine) -> None:
    _store(engine, [Reading(device_code="d", ts=T0, power_w=10.0)])
    _store(engine, [Reading(device_code="d", ts=T0, power_w=99.0, temperature_c=21.5)])
    with engine.connect() as conn:
        row = conn.execute(select(READINGS.c.power_w, READINGS.c.temperature_c)).one()
        ts = conn.execute(select(READINGS.c.ts)).scalar_one()
    assert tuple(row) == (10.0, 21.5)
    assert ts == T0.replace(microsecond=250_000)


def test_devices_keep_the_earliest_first_and_latest_last_seen(engine: Engine) -> None:
    _store(engine, [Reading(device_code="d", ts=T0, power_w=1.0)])
    _store(engine, [Reading(device_code="d", ts=T0 - timedelta(hours=1), power_w=1.0)])
    _store(engine, [Reading(device_code="d", ts=T0 + timedelta(hours=1), power_w=1.0)])
    with engine.connect() as conn:
        first, last = conn.execute(select(DEVICES.c.first_seen_at, DEVICES.c.last_seen_at)).one()
    assert (first, last) == (T0 - timedelta(hours=1), T0 + timedelta(hours=1))


def test_greatest_least_and_the_hour_of_a_timestamp(engine: Engine) -> None:
    sql = dialect_of(engine)
    _store(engine, [Reading(device_code="d", ts=T0, power_w=1.0)])
    with engine.connect() as conn:
        hour, high, low = conn.execute(
            select(sql.hour_text(READINGS.c.ts), sql.greatest(3, 7), sql.least(3, 7))
        ).one()
        assert conn.execute(select(func.count()).select_from(READINGS)).scalar_one() == 1
    assert (hour, high, low) == ("2026-03-01 10:00:00", 7, 3)


def test_the_exclusive_section_keeps_a_second_connection_out_until_the_timeout(
    engine: Engine,
) -> None:
    sql = dialect_of(engine)
    with engine.connect() as first, engine.connect() as second:
        with sql.exclusive(first, "pf:test:bucket", 5.0):
            first.execute(DEVICES.delete())  # the section writes
            with pytest.raises(LockNotAcquired), sql.exclusive(second, "pf:test:bucket", 0.3):
                pass
        with sql.exclusive(second, "pf:test:bucket", 5.0):
            pass  # free once the first left


def test_the_named_lock_is_held_across_transactions_until_released(engine: Engine) -> None:
    sql = dialect_of(engine)
    with sql.named_lock(engine, "pf-test-lock", 5.0):
        with begin_write(engine) as conn:  # other writes go on meanwhile
            conn.execute(DEVICES.delete())
        with pytest.raises(LockNotAcquired), sql.named_lock(engine, "pf-test-lock", 0.3):
            pass
    with sql.named_lock(engine, "pf-test-lock", 5.0):
        pass


def test_concurrent_read_then_write_transactions_never_fail_with_database_locked(
    engine: Engine,
) -> None:
    """Each thread reads a device's last_seen_at and writes it back later, many times over:
    deferred transactions would fail with SQLITE_BUSY; begin_write makes them wait."""
    _store(engine, [Reading(device_code="d", ts=T0, power_w=1.0)])
    errors: list[BaseException] = []
    rounds = 40

    def bump() -> None:
        try:
            for _ in range(rounds):
                with begin_write(engine) as conn:
                    # FOR UPDATE on MariaDB; SQLite has one writer at a time already.
                    seen = conn.execute(
                        select(DEVICES.c.last_seen_at).with_for_update()
                    ).scalar_one()
                    conn.execute(DEVICES.update().values(last_seen_at=seen + timedelta(seconds=1)))
        except BaseException as exc:  # reported below, from the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    with engine.connect() as conn:
        last = conn.execute(select(DEVICES.c.last_seen_at)).scalar_one()
    assert last == T0 + timedelta(seconds=4 * rounds)  # no lost update either
