"""Hourly rollups against real MariaDB (and, end to end, MQTT -> ingest -> writer -> aggregator)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pf_rollup import rollup_config, store, store_and_roll
from sqlalchemy import Engine, create_engine, select, text

from conftest import SERVER_URL, service_env
from pf_testing import (
    FleetBroker,
    Service,
    admit,
    clean_tables,
    consumer_idle,
    count_rows,
    publish_all,
    wait_for,
)
from powerflow_aggregator.rollup import RollupConfig, recompute_buckets
from powerflow_common.db.engine import drop_database, ensure_database
from powerflow_common.db.models import DEVICES, HOURLY_STATS, READINGS
from powerflow_common.energy import EnergySample, hourly_energy
from powerflow_common.queries import load_scope, period_sums
from powerflow_common.settings import Settings
from powerflow_common.wire import Reading

pytestmark = pytest.mark.both_backends

H = timedelta(hours=1)
T10 = datetime(2024, 6, 3, 10, tzinfo=UTC)
STAT_COLUMNS = (
    "samples",
    "coverage",
    "energy_kwh",
    "export_kwh",
    "unallocated_kwh",
    "power_avg_w",
    "power_min_w",
    "power_max_w",
    "temperature_avg_c",
    "co2_kg",
    "emission_factor_id",
    "factor_set",
    "energy_source",
    "flags",
)


@pytest.fixture
def config() -> RollupConfig:
    return rollup_config()


def power(code: str, start: datetime, count: int, step_s: float, watts: float) -> list[Reading]:
    return [
        Reading(device_code=code, ts=start + timedelta(seconds=step_s * i), power_w=watts)
        for i in range(count)
    ]


def stats(engine: Engine, code: str | None = None) -> dict[tuple[str, datetime], dict[str, Any]]:
    """hourly_stats by (device code, hour), without computed_at."""
    # Core, not text(): SQLite hands back a DATETIME of a text() query as a string.
    query = select(DEVICES.c.code, HOURLY_STATS).join(
        DEVICES, DEVICES.c.id == HOURLY_STATS.c.device_id
    )
    if code:
        query = query.where(DEVICES.c.code == code)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {(r["code"], r["hour_start"]): {c: r[c] for c in STAT_COLUMNS} for r in rows}


def computed_at(engine: Engine) -> dict[datetime, datetime]:
    with engine.connect() as conn:
        return dict(
            tuple(row)
            for row in conn.execute(select(HOURLY_STATS.c.hour_start, HOURLY_STATS.c.computed_at))
        )


def assert_same_stats(a: dict[Any, dict[str, Any]], b: dict[Any, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for column in STAT_COLUMNS:
            x, y = a[key][column], b[key][column]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (key, column, x, y)
            else:
                assert x == y, (key, column, x, y)


# --- the worked example, end to end ------------------------------------------------------


def test_an_hour_at_1150_5_w_through_mqtt_is_1_1505_kwh_and_0_5499_kg_co2(
    services: dict[str, Service],
    broker: FleetBroker,
    engine: Engine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    aggregator = Service("aggregator", service_env(settings), tmp_path)
    try:
        aggregator.start()
        services["writer"].start()
        services["ingest"].start()
        services["ingest"].wait_logged("mqtt_subscribed")
        aggregator.wait_logged("aggregator_starting")
        admit(engine, "ground-truth")
        messages = [
            (
                "power/measurement",
                json.dumps(
                    {
                        "deviceCode": "ground-truth",
                        "timestamp": (T10 + timedelta(seconds=5 * i)).isoformat(),
                        "electric": 1150.5,
                    }
                ),
            )
            for i in range(721)
        ]
        publish_all(broker.fleet_url, messages)

        def settled() -> dict[str, Any] | None:
            row = stats(engine, "ground-truth").get(("ground-truth", T10))
            return row if row and row["samples"] == 720 and row["coverage"] == 1.0 else None

        row = wait_for(settled, 60, what="hour 10 rolled up from all 721 readings")
    finally:
        aggregator.stop()
    assert row["energy_kwh"] == pytest.approx(1.1505, rel=1e-3)
    assert round(row["co2_kg"], 4) == 0.5499
    assert row["factor_set"] == "original"
    assert row["energy_source"] == "power"
    with engine.connect() as conn:
        factor = conn.execute(
            text("SELECT factor_set, kg_co2e_per_kwh FROM emission_factors WHERE id = :id"),
            {"id": row["emission_factor_id"]},
        ).one()
    assert tuple(factor) == ("original", 0.478)


# --- power: gaps, boundaries, order --------------------------------------------------------


def test_a_ten_minute_gap_gives_coverage_50_of_60_and_energy_only_from_covered_time(
    engine: Engine, config: RollupConfig
) -> None:
    readings = [
        r
        for r in power("gap", T10, 721, 5, 1200.0)
        if not T10 + timedelta(minutes=20) < r.ts < T10 + timedelta(minutes=30)
    ]
    store_and_roll(engine, config, readings)
    row = stats(engine)[("gap", T10)]
    assert row["coverage"] == pytest.approx(50 / 60)
    assert row["energy_kwh"] == pytest.approx(1.2 * 50 / 60)


def test_samples_straddling_midnight_are_split_between_the_two_days(
    engine: Engine, config: RollupConfig
) -> None:
    midnight = datetime(2024, 6, 4, tzinfo=UTC)
    store_and_roll(engine, config, power("midnight", midnight - timedelta(seconds=60), 7, 20, 1800))
    rows = stats(engine)
    assert rows[("midnight", midnight - H)]["energy_kwh"] == pytest.approx(1.8 / 60)
    assert rows[("midnight", midnight)]["energy_kwh"] == pytest.approx(1.8 / 60)


def test_a_reading_at_10_00_02_changes_hour_09_as_well_as_hour_10(
    engine: Engine, config: RollupConfig
) -> None:
    store_and_roll(engine, config, power("edge", T10 - timedelta(seconds=60), 30, 2, 3600))
    before = stats(engine)[("edge", T10 - H)]["energy_kwh"]
    assert before == pytest.approx(3.6 * 58 / 3600)

    buckets = store(engine, power("edge", T10 + timedelta(seconds=2), 1, 1, 3600))
    assert [b.hour_start for b in buckets] == [T10 - H, T10]
    recompute_buckets(engine, buckets, config)
    rows = stats(engine)
    assert rows[("edge", T10 - H)]["energy_kwh"] == pytest.approx(3.6 * 60 / 3600)
    assert rows[("edge", T10)]["energy_kwh"] == pytest.approx(3.6 * 2 / 3600)


def test_readings_out_of_order_and_twice_give_the_same_buckets_as_in_order_and_once(
    engine: Engine, config: RollupConfig
) -> None:
    rng = random.Random(42)
    readings: list[Reading] = []
    ts = T10 - timedelta(minutes=50)
    while ts < T10 + timedelta(hours=2):
        readings.append(
            Reading(
                device_code="order",
                ts=ts,
                power_w=rng.uniform(0, 3000),
                temperature_c=rng.uniform(15, 30),
            )
        )
        ts += timedelta(seconds=rng.choice((3, 5, 7, 30, 59, 61, 200)))
    store_and_roll(engine, config, readings)
    in_order = stats(engine)

    clean_tables(engine)
    shuffled = readings * 2
    rng.shuffle(shuffled)
    while shuffled:  # random batches, each rolled up as the aggregator would
        size = rng.randint(1, 40)
        batch, shuffled = shuffled[:size], shuffled[size:]
        store_and_roll(engine, config, batch)
    assert_same_stats(stats(engine), in_order)


def test_a_late_reading_in_an_hour_already_rolled_up_changes_that_hour_and_only_that_hour(
    engine: Engine, config: RollupConfig
) -> None:
    late_ts = T10 + timedelta(minutes=30)
    readings = power("late", T10 - H, 3 * 720 + 1, 5, 1000.0)
    store_and_roll(engine, config, [r for r in readings if r.ts != late_ts])
    before, stamps = stats(engine), computed_at(engine)

    buckets = store(engine, [Reading(device_code="late", ts=late_ts, power_w=4000.0)])
    assert [b.hour_start for b in buckets] == [T10]
    recompute_buckets(engine, buckets, config)
    after, new_stamps = stats(engine), computed_at(engine)

    changed = {key for key in before if before[key] != after[key]}
    assert changed == {("late", T10)}
    assert after[("late", T10)]["samples"] == before[("late", T10)]["samples"] + 1
    # Two 5 s intervals now climb to 4000 W and back: +2 x (3000 W / 2) x 5 s.
    assert after[("late", T10)]["energy_kwh"] == pytest.approx(1.0 + 15_000 / 3_600_000)
    assert {h for h in stamps if stamps[h] != new_stamps[h]} == {T10}


# --- counters --------------------------------------------------------------------------


def counter(code: str, start: datetime, values: Iterable[tuple[float, float]]) -> list[Reading]:
    """Readings of a counter device from (seconds after start, Wh) pairs."""
    return [
        Reading(device_code=code, ts=start + timedelta(seconds=s), energy_wh=wh) for s, wh in values
    ]


def test_a_device_that_reboots_and_restarts_its_counter_at_0_never_yields_negative_energy(
    engine: Engine, config: RollupConfig
) -> None:
    # 1 Wh every 10 s (360 W); at 10:30 the counter restarts from 0.
    values = [(s, 50_000 + s / 10) for s in range(0, 1800, 10)]
    values += [(s, (s - 1800) / 10) for s in range(1800, 3610, 10)]
    store_and_roll(engine, config, counter("reboot", T10, values))
    rows = stats(engine)
    assert all(row["energy_kwh"] >= 0 for row in rows.values())
    assert rows[("reboot", T10)]["energy_kwh"] == pytest.approx(0.36, abs=0.002)
    assert "counter_reset" in rows[("reboot", T10)]["flags"]


def test_a_small_counter_dip_is_not_a_reset_and_adds_no_spike(
    engine: Engine, config: RollupConfig
) -> None:
    values = [(s, 50_000 + s / 10) for s in range(0, 3610, 10)]
    values[180] = (1800, 50_000 + 180 - 3)  # 3 Wh of jitter, below the 10 Wh tolerance
    store_and_roll(engine, config, counter("dip", T10, values))
    row = stats(engine)[("dip", T10)]
    assert row["energy_kwh"] == pytest.approx(0.36, abs=0.001)
    assert "counter_noise" in row["flags"]


def test_the_increase_across_an_outage_is_neither_lost_nor_spread_over_the_outage(
    engine: Engine, config: RollupConfig
) -> None:
    # Readings until 10:20, then nothing until 12:10, while the meter kept counting.
    values = [(s, 1_000 + s / 10) for s in range(0, 1210, 10)]
    values += [(s, 1_000 + s / 10) for s in range(7800, 8410, 10)]
    store_and_roll(engine, config, counter("outage", T10, values))
    rows = stats(engine)
    assert ("outage", T10 + H) not in rows  # the outage hour gets nothing smeared into it
    assert rows[("outage", T10 + 2 * H)]["unallocated_kwh"] == pytest.approx((7800 - 1200) / 1e4)
    assert "unallocated_energy" in rows[("outage", T10 + 2 * H)]["flags"]
    total = sum(r["energy_kwh"] + r["unallocated_kwh"] for r in rows.values())
    assert total == pytest.approx((8400 - 0) / 1e4)


def test_a_late_counter_reading_inside_an_outage_also_corrects_the_hour_after_the_outage(
    engine: Engine, config: RollupConfig
) -> None:
    values = [(s, 1_000 + s / 10) for s in range(0, 1210, 10)]
    values += [(s, 1_000 + s / 10) for s in range(7800, 8410, 10)]
    store_and_roll(engine, config, counter("replay", T10, values))
    # The device replays one reading from 11:00:00, inside the outage.
    store_and_roll(engine, config, counter("replay", T10, [(3600, 1_000 + 360)]))
    rows = stats(engine)
    assert rows[("replay", T10 + H)]["unallocated_kwh"] == pytest.approx((3600 - 1200) / 1e4)
    assert rows[("replay", T10 + 2 * H)]["unallocated_kwh"] == pytest.approx((7800 - 3600) / 1e4)
    total = sum(r["energy_kwh"] + r["unallocated_kwh"] for r in rows.values())
    assert total == pytest.approx(8400 / 1e4)


# --- sites ---------------------------------------------------------------------------------


def test_the_site_total_of_a_main_meter_with_two_sub_meter_plugs_equals_the_main_meter(
    engine: Engine, config: RollupConfig
) -> None:
    start = datetime(2024, 6, 2, 15, tzinfo=UTC)  # midnight in Seoul
    readings = [
        *power("site-main", start, 721, 5, 1500.0),
        *power("plug-a", start, 721, 5, 400.0),
        *power("plug-b", start, 721, 5, 300.0),
    ]
    admit(engine, "site-main", "plug-a", "plug-b", legacy=False)  # counted in totals
    store(engine, readings)
    with engine.begin() as conn:
        site_id = conn.execute(
            text(
                "INSERT INTO sites (name, timezone, region, created_at)"
                " VALUES ('hq', 'Asia/Seoul', 'KR', CURRENT_TIMESTAMP)"
            )
        ).lastrowid
        conn.execute(
            text(
                "UPDATE devices SET site_id = :site, meter_role = CASE code"
                " WHEN 'site-main' THEN 'main' ELSE 'sub' END"
            ),
            {"site": site_id},
        )
    recompute_buckets(
        engine,
        store(engine, readings),  # stored already: the same buckets, recomputed for the site
        config,
    )
    with engine.connect() as conn:
        scope = load_scope(conn, "site", default_tz="UTC", site_id=site_id)
        (day,), _ = period_sums(conn, scope, "day", start, start + H)
    assert {d.code for d in scope.devices if d.id in scope.counted_ids()} == {"site-main"}
    assert day.energy_kwh + day.unallocated_kwh == pytest.approx(1.5)
    assert day.co2_kg == pytest.approx(1.5 * 0.478)
    assert day.start.isoformat() == "2024-06-02T15:00:00+00:00"  # midnight in Seoul


# --- several aggregators, one consumer -----------------------------------------------------


def full_recompute(engine: Engine) -> dict[tuple[str, datetime], dict[str, Any]]:
    """Every device's hours computed in one call from all its raw readings."""
    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    with engine.connect() as conn:
        codes = [c for (c,) in conn.execute(text("SELECT code FROM devices"))]
        for code in codes:
            samples = [
                EnergySample(ts=ts, power_w=p, temperature_c=t)
                for ts, p, t in conn.execute(
                    select(READINGS.c.ts, READINGS.c.power_w, READINGS.c.temperature_c)
                    .join(DEVICES, DEVICES.c.id == READINGS.c.device_id)
                    .where(DEVICES.c.code == code)
                )
            ]
            first = min(s.ts for s in samples).replace(minute=0, second=0, microsecond=0)
            last = max(s.ts for s in samples).replace(minute=0, second=0, microsecond=0)
            for hour in hourly_energy(samples, first, last + H):
                out[(code, hour.hour_start)] = {
                    "samples": hour.samples,
                    "coverage": hour.coverage,
                    "energy_kwh": hour.energy_kwh,
                    "power_avg_w": hour.power_avg_w,
                }
    return out


def test_two_aggregator_processes_on_one_consumer_one_killed_equal_a_full_recompute_from_raw(
    services: dict[str, Service],
    broker: FleetBroker,
    engine: Engine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    env = service_env(settings)
    aggregators = [Service("aggregator", env, tmp_path / str(i)) for i in range(2)]
    for directory in ("0", "1"):
        (tmp_path / directory).mkdir()
    try:
        for aggregator in aggregators:
            aggregator.start()
        services["writer"].start()
        services["ingest"].start()
        services["ingest"].wait_logged("mqtt_subscribed")
        for aggregator in aggregators:
            aggregator.wait_logged("aggregator_starting")
        # 8 devices x 200 readings across an hour boundary, shuffled, a quarter sent twice.
        admit(engine, *(f"multi-{d}" for d in range(8)))
        end = (datetime.now(UTC) - H).replace(minute=8, second=0, microsecond=0)
        rng = random.Random(7)
        messages = []
        for i in range(200):
            ts = end - timedelta(seconds=5 * (200 - i))
            for d in range(8):
                body = {
                    "deviceCode": f"multi-{d}",
                    "timestamp": ts.isoformat(),
                    "electric": round(rng.uniform(50, 2000), 1),
                    "temp": 21.5,
                }
                messages.append(("power/measurement", json.dumps(body)))
        messages += rng.sample(messages, len(messages) // 4)
        rng.shuffle(messages)
        publish_all(broker.fleet_url, messages)
        # One copy crashes mid-stream and comes back: its unacked messages are redelivered.
        wait_for(lambda: count_rows(engine, "hourly_stats") > 0, 60, what="first hours rolled up")
        aggregators[0].kill9()
        aggregators[0].start()
        wait_for(lambda: count_rows(engine) == 1600, 60, what="1,600 readings stored")
        names = settings.names
        wait_for(
            lambda: consumer_idle(settings.nats_url, names.readings_stream, names.writer_consumer),
            30,
            what="writer consumer idle",
        )
        wait_for(
            lambda: consumer_idle(
                settings.nats_url, names.persisted_stream, names.aggregator_consumer
            ),
            60,
            what="aggregator consumer idle",
        )
        logs = [a.log_text() for a in aggregators]
    finally:
        for aggregator in aggregators:
            aggregator.stop()
    expected = full_recompute(engine)
    stored = stats(engine)
    assert stored.keys() == expected.keys()
    for key, want in expected.items():
        for column, value in want.items():
            got = stored[key][column]
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (key, column)
    assert all("aggregator_starting" in text_ for text_ in logs)


# --- factor sets and the command line ------------------------------------------------------


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "powerflow.cli", *args],
        env=service_env(settings, POWERFLOW_LOG_LEVEL="warning", COLUMNS="200", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_changing_the_factor_set_and_running_rollup_recomputes_the_hours_with_the_new_set(
    engine: Engine, config: RollupConfig, settings: Settings
) -> None:
    store_and_roll(engine, config, power("switch", T10, 721, 5, 1000.0))
    assert stats(engine)[("switch", T10)]["factor_set"] == "original"
    own_set = f"t-{settings.namespace[-8:]}"
    try:
        added = cli(
            settings,
            *("factors", "set", "--set", own_set, "--region", "KR", "--kg-per-kwh", "0.5"),
            *("--source", "test factor", "--from", "2024-01-01"),
        )
        assert added.returncode == 0, added.stderr
        listed = cli(settings, "factors", "list", POWERFLOW_FACTOR_SET=own_set)
        assert own_set in listed.stdout and "kr-gir" in listed.stdout

        switched = cli(settings, "rollup", "--changed-set", POWERFLOW_FACTOR_SET=own_set)
        assert switched.returncode == 0, switched.stderr
        row = stats(engine)[("switch", T10)]
        assert row["factor_set"] == own_set
        assert row["co2_kg"] == pytest.approx(1.0 * 0.5)

        back = cli(
            settings,
            *("rollup", "--from", "2024-06-03T10:00", "--to", "2024-06-03T11:00"),
            POWERFLOW_FACTOR_SET="kr-gir",
        )
        assert back.returncode == 0, back.stderr
        assert "device-hours recomputed" in back.stderr
        row = stats(engine)[("switch", T10)]
        assert row["factor_set"] == "kr-gir"
        assert row["co2_kg"] == pytest.approx(1.0 * 0.4173)  # 2023 onwards
        assert stats(engine)[("switch", T10 + H)]["factor_set"] == own_set  # outside --to
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM hourly_stats"))
            conn.execute(text("DELETE FROM quarter_hour_stats"))  # they name the factor too
            conn.execute(text("DELETE FROM emission_factors WHERE factor_set = :s"), {"s": own_set})


def test_the_migration_seeds_the_original_and_kr_gir_factor_sets(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, factor_set, valid_from, kg_co2e_per_kwh FROM emission_factors"
                " WHERE id <= 4 ORDER BY id"
            )
        ).all()
    assert [(r.id, r.factor_set, r.kg_co2e_per_kwh) for r in rows] == [
        (1, "original", 0.478),
        (2, "kr-gir", 0.4781),
        (3, "kr-gir", 0.4541),
        (4, "kr-gir", 0.4173),
    ]


# --- legacy import -------------------------------------------------------------------------

LEGACY_DDL = """
CREATE TABLE power_readings (
    id INT AUTO_INCREMENT PRIMARY KEY,
    timestamp DATETIME NOT NULL,
    device_code VARCHAR(25) NOT NULL,
    temperature FLOAT,
    humidity FLOAT,
    brightness INT,
    electric FLOAT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)
"""


def test_the_legacy_import_stores_valid_rows_reports_bad_ones_and_is_idempotent(
    engine: Engine, settings: Settings
) -> None:
    source_url = f"{SERVER_URL}/pf_legacy_{uuid.uuid4().hex[:10]}"
    ensure_database(source_url)
    source = create_engine(source_url)
    try:
        good = [
            {
                "ts": (T10 + timedelta(seconds=30 * i)).replace(tzinfo=None),
                "code": "A4:CF:12:9B:00:01",
                "t": 24.5,
                "h": 55.0,
                "b": 300,
                "e": 1150.5,
            }
            for i in range(121)
        ]
        bad = [
            {"ts": T10.replace(tzinfo=None), "code": "my plug", "t": 20, "h": 50, "b": 1, "e": 1},
            {"ts": datetime(2019, 12, 31), "code": "old", "t": 20, "h": 50, "b": 1, "e": 1},
            {"ts": datetime(2036, 1, 1), "code": "future", "t": 20, "h": 50, "b": 1, "e": 1},
            {"ts": T10.replace(tzinfo=None), "code": "wet", "t": 20, "h": 140, "b": 1, "e": 1},
            {"ts": T10.replace(tzinfo=None), "code": "neg", "t": 20, "h": 50, "b": 1, "e": -5},
        ]
        with source.begin() as conn:
            conn.execute(text(LEGACY_DDL))
            conn.execute(
                text(
                    "INSERT INTO power_readings"
                    " (timestamp, device_code, temperature, humidity, brightness, electric)"
                    " VALUES (:ts, :code, :t, :h, :b, :e)"
                ),
                good + bad,
            )
        first = cli(settings, "import", "legacy", "--from-url", source_url)
        assert first.returncode == 0, first.stderr
        assert "121 new" in first.stderr and "5 rejected" in first.stderr
        for reason in ("invalid_device_code", "timestamp_too_old", "out_of_range"):
            assert reason in first.stdout + first.stderr
        assert count_rows(engine) == 121
        # The prototype's fleet, imported by an operator: admitted, and kept on its topic.
        with engine.connect() as conn:
            admitted_by, legacy = conn.execute(
                text("SELECT admitted_by, legacy_topic FROM devices WHERE code = :c"),
                {"c": "A4:CF:12:9B:00:01"},
            ).one()
        assert (admitted_by, bool(legacy)) == ("import-legacy", True)
        rolled = stats(engine, "A4:CF:12:9B:00:01")
        assert rolled[("A4:CF:12:9B:00:01", T10)]["energy_kwh"] == pytest.approx(1.1505)

        second = cli(settings, "import", "legacy", "--from-url", source_url)
        assert second.returncode == 0, second.stderr
        assert "0 new, 121 already stored, 5 rejected" in second.stderr
        assert count_rows(engine) == 121
        assert_same_stats(stats(engine), rolled)
    finally:
        source.dispose()
        drop_database(source_url)
