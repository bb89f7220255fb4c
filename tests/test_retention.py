"""Years of data: monthly partitions, raw retention and frozen hours, on SQLite and MariaDB.

Each scenario test has a database of its own (the partition layout is part of what it checks),
migrated to 0007, given readings of 2025 as an existing installation would have, then migrated
to head, so that MariaDB's partitions start in January 2025 as they would after the upgrade.
The job runs with a fixed ``now`` (2026-03-15 10:30 UTC) and 400 days of raw retention: its
target horizon is 2025-02-08 00:00, and raw readings go before 2025-02-07 00:00 (one day of
neighbours kept).

One device (``ret-1``, 1,000 W every 30 s from 10:00 to 10:10, 1/6 kWh an hour) reports on
2025-01-05, 2025-01-20, 2025-02-10 and 2026-03-10.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from nats.aio.msg import Msg
from prometheus_client import REGISTRY
from sqlalchemy import Engine, delete, event, func, insert, inspect, select, text, update
from typer import Typer
from typer.testing import CliRunner

from conftest import MARIADB, SERVER_URL, SQLITE, service_env
from pf_testing import count_rows, read_rejections
from powerflow.retention_cli import retention_command
from powerflow_aggregator import quarter_hour, retention_job
from powerflow_aggregator.retention_job import not_rolled_up, readings_partitions, run_retention
from powerflow_aggregator.rollup import (
    LockTimeout,
    RollupConfig,
    buckets_in_range,
    recompute_buckets,
)
from powerflow_aggregator.service import run_aggregator
from powerflow_common import daily_site
from powerflow_common.corrections import CorrectionRequest, apply_correction
from powerflow_common.db.dialect import LockNotAcquired, begin_write
from powerflow_common.db.engine import alembic_config, drop_database, make_engine, migrate
from powerflow_common.db.horizon import BEYOND_RETENTION, frozen_before, set_horizon
from powerflow_common.db.models import (
    DEVICES,
    EMISSION_FACTORS,
    HOURLY_STATS,
    QUARTER_HOUR_STATS,
    READINGS,
    SITES,
)
from powerflow_common.errors import CorrectionRefused
from powerflow_common.jetstream import connect_nats, ensure_streams
from powerflow_common.queries import load_scope, period_sums
from powerflow_common.retention import CATCH_ALL_PARTITION, months_after
from powerflow_common.settings import Settings, load_settings
from powerflow_common.validation import Limits
from powerflow_common.wire import Bucket, Reading, ReadingBatch, batch_decoder, json_encoder
from powerflow_writer.consumer import Writer, ensure_writer_consumer
from powerflow_writer.store import StoreResult, store_readings

pytestmark = pytest.mark.both_backends

GAP = timedelta(seconds=60)
H = timedelta(hours=1)
NOW = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)
RETENTION_DAYS = 400
TARGET = datetime(2025, 2, 8, tzinfo=UTC)
DELETE_BEFORE = datetime(2025, 2, 7, tzinfo=UTC)
CODE = "ret-1"
JAN05 = datetime(2025, 1, 5, 10, tzinfo=UTC)
JAN20 = datetime(2025, 1, 20, 10, tzinfo=UTC)
FEB10 = datetime(2025, 2, 10, 10, tzinfo=UTC)
MAR10 = datetime(2026, 3, 10, 10, tzinfo=UTC)
HOURS = (JAN05, JAN20, FEB10, MAR10)
SAMPLES_PER_HOUR = 21  # 10:00:00 to 10:10:00 every 30 s
KWH_PER_HOUR = 1000 * 600 / 3600 / 1000  # 1,000 W for 600 s
ORIGINAL_KG_PER_KWH = 0.478
KR_GIR_2023_ON_KG_PER_KWH = 0.4173  # the kr-gir factor for consumption from 2023


def config(factor_set: str = "original") -> RollupConfig:
    return RollupConfig(
        factor_set=factor_set,
        default_region="KR",
        organisation_timezone="Asia/Seoul",
        max_gap=GAP,
        counter_reset_tolerance_wh=10.0,
        lock_timeout_s=5.0,
    )


def store(engine: Engine, readings: list[Reading]) -> StoreResult:
    """Readings stored as the writer stores them, received now."""
    return store_readings(engine, readings, received_at=datetime.now(UTC), max_gap=GAP)


def hour_a_month_ago() -> datetime:
    """An hour older than a 7-day retention, still within the run's shared database."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=30)


def hour_rows(start: datetime, received_at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "device_id": 1,
            "ts": start + timedelta(seconds=30 * i),
            "power_w": 1000.0,
            "received_at": received_at,
        }
        for i in range(SAMPLES_PER_HOUR)
    ]


@pytest.fixture
def fresh_url(database_backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own."""
    if database_backend == SQLITE:
        url = f"sqlite:///{tmp_path / 'retention' / 'powerflow.db'}"
    else:
        assert database_backend == MARIADB
        url = f"{SERVER_URL}/pf_test_ret_{uuid.uuid4().hex[:10]}"
    yield url
    drop_database(url)


@pytest.fixture
def upgraded(fresh_url: str) -> Iterator[Engine]:
    """An installation of 2025 upgraded to head, its hours rolled up by the aggregator."""
    migrate(fresh_url, "0007")
    engine = make_engine(fresh_url)
    received = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(DEVICES).values(
                id=1,
                code=CODE,
                payload_format="original",
                meter_role="standalone",
                bidirectional=False,
                first_seen_at=JAN05,
                last_seen_at=MAR10,
                admitted_at=JAN05,
                admitted_by="test",
                legacy_topic=False,
            )
        )
        for hour in HOURS:
            conn.execute(insert(READINGS), hour_rows(hour, received))
    migrate(fresh_url)
    engine.dispose()
    engine = make_engine(fresh_url)
    rolled = recompute_buckets(engine, [Bucket(1, h) for h in HOURS], config())
    assert rolled.recomputed == len(HOURS) and not rolled.failed
    try:
        yield engine
    finally:
        engine.dispose()


def job_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "raw_retention_days": RETENTION_DAYS,
        "max_gap_s": GAP.total_seconds(),
    }
    values.update(overrides)
    return load_settings(**values)


def stats_by_hour(engine: Engine) -> dict[datetime, dict[str, Any]]:
    with engine.connect() as conn:
        return {
            r.hour_start: dict(r._mapping)
            for r in conn.execute(select(HOURLY_STATS).order_by(HOURLY_STATS.c.hour_start))
        }


def without_computed_at(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "computed_at"}


def raw_count(engine: Engine, start: datetime, end: datetime) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(READINGS)
                .where(READINGS.c.ts >= start, READINGS.c.ts < end)
            ).scalar_one()
        )


def partition_names(engine: Engine) -> list[str] | None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return None
        found = readings_partitions(conn)
    return None if found is None else [p.name for p in found]


def test_the_upgrade_partitions_existing_rows_by_month_with_a_catch_all(upgraded: Engine) -> None:
    names = partition_names(upgraded)
    if upgraded.dialect.name == "sqlite":
        assert names is None  # SQLite has no partitions; retention deletes in batches
    else:
        assert names is not None
        assert names[0] == "p202501" and names[-1] == CATCH_ALL_PARTITION
        # Every month from the oldest row to three months after this one, each once.
        this_month = months_after(datetime.now(UTC), 0)
        assert f"p{months_after(this_month, 3):%Y%m}" in names
        assert len(names) == len(set(names))
        with upgraded.connect() as conn:
            january = conn.execute(text("SELECT COUNT(*) FROM readings PARTITION (p202501)"))
            assert january.scalar_one() == 2 * SAMPLES_PER_HOUR
    assert count_rows(upgraded) == len(HOURS) * SAMPLES_PER_HOUR


def test_months_are_created_ahead_and_a_far_future_reading_lands_in_the_catch_all(
    upgraded: Engine, fresh_url: str
) -> None:
    far = datetime(2099, 6, 1, 12, tzinfo=UTC)
    stored = store(upgraded, [Reading(device_code=CODE, ts=far, power_w=5.0)])
    assert stored.inserted == 1 and not stored.refused  # no insert ever fails
    later = datetime.now(UTC) + timedelta(days=240)
    outcome = run_retention(upgraded, job_settings(fresh_url, raw_retention_days=None), now=later)
    if upgraded.dialect.name == "sqlite":
        assert outcome.partitioned is None and outcome.partitions_added == []
        return
    names = partition_names(upgraded)
    assert names is not None
    wanted = [f"p{months_after(later, i):%Y%m}" for i in range(4)]  # this month + 3 ahead
    assert set(wanted) <= set(names)
    assert outcome.partitions_added and set(outcome.partitions_added) <= set(names)
    assert names[-1] == CATCH_ALL_PARTITION
    with upgraded.connect() as conn:
        in_catch_all = conn.execute(text("SELECT COUNT(*) FROM readings PARTITION (pmax)"))
        assert in_catch_all.scalar_one() == 1  # reorganising the catch-all kept it there
    again = run_retention(upgraded, job_settings(fresh_url, raw_retention_days=None), now=later)
    assert again.partitions_added == []


def test_a_month_goes_only_once_every_hour_in_it_is_rolled_up_and_frozen_stats_stay(
    upgraded: Engine, fresh_url: str
) -> None:
    before = stats_by_hour(upgraded)
    # A late reading for 20 January is stored; the aggregator has not recomputed it yet.
    late = store(
        upgraded, [Reading(device_code=CODE, ts=JAN20 + timedelta(minutes=30), power_w=1000.0)]
    )
    assert late.inserted == 1
    assert not_rolled_up(upgraded, None, TARGET) == [Bucket(1, JAN20)]
    settings = job_settings(fresh_url, retention_delete_batch_rows=7)

    deletes: list[str] = []

    def count_deletes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM READINGS"):
            deletes.append(statement)

    event.listen(upgraded, "before_cursor_execute", count_deletes)
    try:
        held = run_retention(upgraded, settings, now=NOW)
    finally:
        event.remove(upgraded, "before_cursor_execute", count_deletes)
    # The horizon stops at that day: 20 January is neither frozen nor deleted.
    assert held.not_rolled_up == [Bucket(1, JAN20)]
    assert held.horizon == datetime(2025, 1, 20, tzinfo=UTC)
    assert raw_count(upgraded, JAN20, JAN20 + H) == SAMPLES_PER_HOUR + 1
    if upgraded.dialect.name == "sqlite":
        # Before the guard day (19 January) the 5 January readings went, 7 rows a transaction.
        assert held.rows_deleted == SAMPLES_PER_HOUR
        # 21 rows at most 7 a transaction: three batches and the empty one that ends it.
        assert len(deletes) == SAMPLES_PER_HOUR // 7 + 1
        assert raw_count(upgraded, JAN05, JAN05 + H) == 0
    else:
        assert held.partitions_dropped == []  # January still holds an hour not rolled up
        assert deletes == []  # MariaDB drops whole months, never row by row
        assert "p202501" in (partition_names(upgraded) or [])
        assert raw_count(upgraded, JAN05, JAN05 + H) == SAMPLES_PER_HOUR

    # The aggregator catches up; the next run freezes up to the target and drops January.
    recompute_buckets(upgraded, late.buckets, config())
    done = run_retention(upgraded, settings, now=NOW)
    assert done.not_rolled_up == [] and done.horizon == TARGET
    with upgraded.connect() as conn:
        assert frozen_before(conn) == TARGET
    assert raw_count(upgraded, datetime(2024, 1, 1, tzinfo=UTC), DELETE_BEFORE) == 0
    if upgraded.dialect.name == "sqlite":
        assert done.rows_deleted == SAMPLES_PER_HOUR + 1
    else:
        assert done.partitions_dropped == ["p202501"]
        assert "p202501" not in (partition_names(upgraded) or [])
    # February's and March 2026's raw readings are kept.
    assert raw_count(upgraded, FEB10, FEB10 + H) == SAMPLES_PER_HOUR
    assert raw_count(upgraded, MAR10, MAR10 + H) == SAMPLES_PER_HOUR
    after = stats_by_hour(upgraded)
    assert after[JAN05] == before[JAN05]  # frozen, raw gone, stats as they were
    assert after[JAN20]["samples"] == SAMPLES_PER_HOUR + 1
    assert after[JAN20]["energy_kwh"] == pytest.approx(KWH_PER_HOUR)
    assert after[FEB10] == before[FEB10]


def test_a_frozen_hour_keeps_its_stats_through_a_neighbour_recompute_and_powerflow_rollup(
    upgraded: Engine, fresh_url: str
) -> None:
    settings = job_settings(fresh_url)
    run_retention(upgraded, settings, now=NOW)
    assert raw_count(upgraded, JAN05, JAN20 + H) == 0  # January's raw readings are gone
    before = stats_by_hour(upgraded)
    assert JAN05 in before and JAN20 in before
    # A reading 10 s after the horizon is stored; the writer announces the hour before it too
    # (within max_gap), a frozen hour. Recomputing what it announced, and frozen hours
    # recomputed again (a redelivery), never recomputes them from raw nor deletes them.
    neighbour = store(
        upgraded, [Reading(device_code=CODE, ts=TARGET + timedelta(seconds=10), power_w=9.0)]
    )
    assert neighbour.inserted == 1
    assert neighbour.buckets == [Bucket(1, TARGET - H), Bucket(1, TARGET)]
    result = recompute_buckets(
        upgraded, [*neighbour.buckets, Bucket(1, JAN20), Bucket(1, JAN05)], config()
    )
    assert result.frozen == 3 and result.removed == 0 and not result.failed
    after = stats_by_hour(upgraded)
    assert TARGET in after  # the hour after the horizon is computed as usual
    for hour, row in before.items():
        assert without_computed_at(after[hour]) == without_computed_at(row)
    # `powerflow rollup` over the whole of 2025: frozen hours keep their kWh and rows.
    runner = CliRunner()
    from powerflow.energy_cli import rollup

    app = Typer()
    app.command()(rollup)
    env = {"POWERFLOW_DATABASE_URL": fresh_url, "POWERFLOW_LOG_FORMAT": "json"}
    out = runner.invoke(app, ["--from", "2025-01-01", "--to", "2026-01-01"], env=env)
    assert out.exit_code == 0, out.output
    after = stats_by_hour(upgraded)
    assert set(before) <= set(after)
    for hour, row in before.items():
        assert after[hour]["energy_kwh"] == row["energy_kwh"]
        assert after[hour]["samples"] == row["samples"]
        assert after[hour]["co2_kg"] == pytest.approx(row["co2_kg"])


def test_a_factor_set_change_recomputes_frozen_co2_from_the_stored_kwh(
    upgraded: Engine, fresh_url: str
) -> None:
    run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert raw_count(upgraded, JAN05, JAN05 + H) == 0  # nothing to recompute from
    before = stats_by_hour(upgraded)
    assert before[JAN05]["co2_kg"] == pytest.approx(KWH_PER_HOUR * ORIGINAL_KG_PER_KWH)
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)
    changed = buckets_in_range(upgraded, start, end, other_factor_set_than="kr-gir")
    assert changed == [Bucket(1, JAN05), Bucket(1, JAN20), Bucket(1, FEB10)]
    result = recompute_buckets(upgraded, changed, config("kr-gir"))
    assert result.frozen == 2 and result.recomputed == 3
    after = stats_by_hour(upgraded)
    with upgraded.connect() as conn:
        factors = dict(
            conn.execute(select(EMISSION_FACTORS.c.id, EMISSION_FACTORS.c.kg_co2e_per_kwh)).all()
        )
    for hour in (JAN05, JAN20, FEB10):
        row = after[hour]
        assert row["factor_set"] == "kr-gir"
        assert factors[row["emission_factor_id"]] == KR_GIR_2023_ON_KG_PER_KWH
        assert row["energy_kwh"] == before[hour]["energy_kwh"]
        assert row["co2_kg"] == pytest.approx(KWH_PER_HOUR * KR_GIR_2023_ON_KG_PER_KWH)


def test_migration_0008_goes_down_and_up_again_keeping_every_reading(
    upgraded: Engine, fresh_url: str
) -> None:
    rows = count_rows(upgraded)
    upgraded.dispose()
    command.downgrade(alembic_config(fresh_url), "0007")
    assert "retention_state" not in inspect(upgraded).get_table_names()
    if upgraded.dialect.name != "sqlite":
        assert partition_names(upgraded) is None
    assert count_rows(upgraded) == rows
    migrate(fresh_url)
    upgraded.dispose()
    assert "retention_state" in inspect(upgraded).get_table_names()
    if upgraded.dialect.name != "sqlite":
        assert (partition_names(upgraded) or [])[0] == "p202501"
    assert count_rows(upgraded) == rows


def test_the_retention_command_drops_what_is_older_than_the_setting(
    engine: Engine, settings: Settings
) -> None:
    # The run's shared database: its partitions start this month, so an old row sits in the
    # lowest partition; the SQLite file deletes it, MariaDB keeps it until that month passes.
    old = hour_a_month_ago()
    stored = store(engine, [Reading(device_code="ret-cli", ts=old, power_w=1.0)])
    env = {**service_env(settings), "POWERFLOW_RAW_RETENTION_DAYS": "7"}
    app = Typer()
    app.command()(retention_command)
    held = CliRunner().invoke(app, [], env=env)
    assert held.exit_code == 0, held.output
    assert "held back" in held.output  # its hour is not rolled up yet: kept
    assert count_rows(engine) == 1
    recompute_buckets(engine, stored.buckets, config())
    hours = count_rows(engine, "hourly_stats")
    done = CliRunner().invoke(app, [], env=env)
    assert done.exit_code == 0, done.output
    assert "raw horizon" in done.output and "held back" not in done.output
    with engine.connect() as conn:
        horizon = frozen_before(conn)
    assert horizon is not None and horizon > old
    if engine.dialect.name == "sqlite":
        assert count_rows(engine) == 0 and "raw readings deleted: 1" in done.output
    assert count_rows(engine, "hourly_stats") == hours >= 1


def test_a_late_reading_for_a_frozen_hour_is_dead_lettered_and_the_rest_of_its_batch_stored(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    horizon = (now - timedelta(days=10)).replace(hour=0, minute=0, second=0)
    with begin_write(engine) as conn:
        set_horizon(conn, horizon)
    frozen_ts = horizon - timedelta(hours=5)
    batch = [
        Reading(device_code="ret-w", ts=now - timedelta(minutes=2), power_w=1.0),
        Reading(device_code="ret-w", ts=frozen_ts, power_w=2.0),
        Reading(device_code="ret-w", ts=now - timedelta(minutes=1), power_w=3.0),
    ]
    body = json_encoder.encode(ReadingBatch(readings=batch, ingested_at=now, source="test"))

    async def one_pass() -> None:
        nc = await connect_nats(settings, name="pf-test-retention")
        js = nc.jetstream()
        await ensure_streams(js, settings)
        await js.publish(settings.names.readings_subject("test"), body)
        await ensure_writer_consumer(js, settings)
        names = settings.names
        sub = await js.pull_subscribe_bind(names.writer_consumer, stream=names.readings_stream)
        [msg] = await sub.fetch(1, timeout=5)
        fetched: list[tuple[Msg, list[Reading] | None]] = [
            (msg, batch_decoder.decode(msg.data).readings)
        ]
        await Writer(nc=nc, js=js, engine=engine, settings=settings)._process(fetched)
        await nc.close()

    asyncio.run(one_pass())
    assert count_rows(engine) == 2
    with engine.connect() as conn:
        kept = conn.execute(select(READINGS.c.power_w).order_by(READINGS.c.ts)).scalars().all()
    assert kept == [1.0, 3.0]
    [record] = read_rejections(settings.nats_url, settings.names.rejected_stream, 1, 10)
    assert record.reason == BEYOND_RETENTION
    assert record.reading is not None and record.reading.ts == frozen_ts
    assert record.reading.power_w == 2.0
    assert "frozen" in record.detail


def commit_after_the_check(monkeypatch: pytest.MonkeyPatch, commit: Callable[[], None]) -> None:
    """Run ``commit`` right after the job's first rolled-up check, before it moves the horizon:
    a writer committing in that moment."""
    real = retention_job.not_rolled_up
    calls: list[bool] = []

    def racing(*args: Any, **kwargs: Any) -> list[Bucket]:
        found = real(*args, **kwargs)
        if not calls:
            commit()
        calls.append(True)
        return found

    monkeypatch.setattr(retention_job, "not_rolled_up", racing)


def test_the_job_recomputes_an_hour_dirtied_while_the_horizon_moved_before_deleting(
    upgraded: Engine, fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer commits a reading for 20 January right after the job found every hour rolled
    # up and before it moved the horizon: the aggregator will leave that hour alone (frozen),
    # so the job recomputes it from its raw readings, still there, before January goes.
    real = retention_job.not_rolled_up

    def commit() -> None:
        store(
            upgraded,
            [Reading(device_code=CODE, ts=JAN20 + timedelta(minutes=30), power_w=1000.0)],
        )

    commit_after_the_check(monkeypatch, commit)
    outcome = run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert outcome.not_rolled_up == []  # the check saw nothing to wait for
    assert outcome.horizon == TARGET
    assert outcome.recomputed_frozen == 1
    assert stats_by_hour(upgraded)[JAN20]["samples"] == SAMPLES_PER_HOUR + 1
    assert raw_count(upgraded, JAN20, JAN20 + H) == 0
    assert real(upgraded, None, TARGET) == []


def insert_stamped_early(engine: Engine, at: datetime) -> None:
    """A reading stamped before the aggregator's recompute of its hour, committed after it:
    what a writer waiting on a lock, or a writer clock behind the aggregator's, leaves."""
    with engine.begin() as conn:
        conn.execute(
            insert(READINGS),
            [
                {
                    "device_id": 1,
                    "ts": at,
                    "power_w": 1000.0,
                    "received_at": datetime(2025, 1, 1, tzinfo=UTC),  # before computed_at
                }
            ],
        )


def test_a_reading_committed_after_the_recompute_that_missed_it_holds_its_hour_back(
    upgraded: Engine, fresh_url: str
) -> None:
    # By the clocks 20 January looks rolled up (its row was computed after every
    # received_at in it); it counts one reading fewer than the hour has, so it is not.
    insert_stamped_early(upgraded, JAN20 + timedelta(minutes=30))
    held = run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert held.not_rolled_up == [Bucket(1, JAN20)]
    assert held.horizon == datetime(2025, 1, 20, tzinfo=UTC)
    assert raw_count(upgraded, JAN20, JAN20 + H) == SAMPLES_PER_HOUR + 1  # kept

    # The aggregator does it (the writer's announcement), and the next run freezes it whole.
    assert not recompute_buckets(upgraded, [Bucket(1, JAN20)], config()).failed
    done = run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert done.not_rolled_up == [] and done.horizon == TARGET
    assert stats_by_hour(upgraded)[JAN20]["samples"] == SAMPLES_PER_HOUR + 1
    assert raw_count(upgraded, JAN20, JAN20 + H) == 0


def test_a_reading_stamped_early_and_committed_while_the_horizon_moves_is_recomputed(
    upgraded: Engine, fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As above, but it commits after the job's check and before the move: the job's check
    # after the move counts it and recomputes the hour from raw before anything goes.

    def commit() -> None:
        insert_stamped_early(upgraded, JAN20 + timedelta(minutes=30))

    commit_after_the_check(monkeypatch, commit)
    outcome = run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert outcome.not_rolled_up == [] and outcome.horizon == TARGET
    assert outcome.recomputed_frozen == 1
    assert stats_by_hour(upgraded)[JAN20]["samples"] == SAMPLES_PER_HOUR + 1
    assert quarters_by_hour(upgraded)[JAN20]  # recomputed with it
    assert raw_count(upgraded, JAN20, JAN20 + H) == 0


def test_the_aggregator_runs_the_job_at_start_and_counts_it(
    engine: Engine, settings: Settings
) -> None:
    old = hour_a_month_ago()
    stored = store(
        engine,
        [
            Reading(device_code="ret-agg", ts=old + timedelta(minutes=m), power_w=5.0)
            for m in (1, 2)
        ],
    )
    recompute_buckets(engine, stored.buckets, config())
    ours = settings.model_copy(update={"raw_retention_days": 7, "retention_interval_s": 3600.0})

    async def run_until_frozen() -> datetime | None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_aggregator(ours, stop))
        deadline = asyncio.get_running_loop().time() + 30
        horizon = None
        while horizon is None and asyncio.get_running_loop().time() < deadline:
            with engine.connect() as conn:
                horizon = frozen_before(conn)
            if horizon is None:
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        return horizon

    runs_before = REGISTRY.get_sample_value("powerflow_retention_runs_total", {"outcome": "ok"})
    horizon = asyncio.run(run_until_frozen())
    assert horizon is not None and horizon > old
    runs = REGISTRY.get_sample_value("powerflow_retention_runs_total", {"outcome": "ok"})
    assert (runs or 0) - (runs_before or 0) == 1  # at start, and not again within the hour
    assert REGISTRY.get_sample_value("powerflow_retention_raw_horizon_seconds") == (
        horizon.timestamp()
    )
    assert count_rows(engine, "hourly_stats") >= 1
    if engine.dialect.name == "sqlite":
        assert count_rows(engine) == 0


def test_a_correction_of_a_reading_in_a_frozen_hour_is_refused(
    upgraded: Engine, fresh_url: str
) -> None:
    with begin_write(upgraded) as conn:
        set_horizon(conn, TARGET)  # January frozen, its raw readings not yet deleted
    request = CorrectionRequest(
        device_code=CODE,
        ts=JAN20,
        values={"power_w": 10.0},
        reason="meter swapped",
        corrected_by="ops",
    )
    with pytest.raises(CorrectionRefused) as refused:
        apply_correction(upgraded, request, limits=Limits(), max_gap=GAP)
    assert refused.value.reason == BEYOND_RETENTION
    with upgraded.connect() as conn:
        power = conn.execute(select(READINGS.c.power_w).where(READINGS.c.ts == JAN20)).scalar_one()
    assert power == 1000.0
    later = CorrectionRequest(
        device_code=CODE, ts=FEB10, values={"power_w": 10.0}, reason="r", corrected_by="ops"
    )
    assert apply_correction(upgraded, later, limits=Limits(), max_gap=GAP) is not None


# --- frozen hours and the rollup tables (quarters, the daily site cache) ----------------------

JANUARY = (datetime(2024, 12, 31, 15, tzinfo=UTC), datetime(2025, 1, 31, 15, tzinfo=UTC))  # Seoul


def quarters_by_hour(engine: Engine) -> dict[datetime, list[dict[str, Any]]]:
    found: dict[datetime, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(
            select(QUARTER_HOUR_STATS).order_by(QUARTER_HOUR_STATS.c.quarter_start)
        ):
            found.setdefault(r.hour_start, []).append(dict(r._mapping))
    return found


def assert_quarters_add_up(hour: dict[str, Any], quarters: list[dict[str, Any]]) -> None:
    assert quarters, hour["hour_start"]
    for name in ("energy_kwh", "unallocated_kwh", "co2_kg"):
        assert math.fsum(q[name] for q in quarters) == pytest.approx(hour[name], rel=1e-9)
    assert sum(q["samples"] for q in quarters) == hour["samples"]
    for q in quarters:
        assert (q["factor_set"], q["emission_factor_id"]) == (
            hour["factor_set"],
            hour["emission_factor_id"],
        )


def on_a_site(engine: Engine) -> int:
    """Puts ret-1 on a site in Seoul (its main meter); the site's id."""
    with engine.begin() as conn:
        key = conn.execute(
            insert(SITES).values(name="plant", timezone="Asia/Seoul", region="KR", created_at=JAN05)
        ).inserted_primary_key
        assert key is not None
        conn.execute(
            update(DEVICES).where(DEVICES.c.id == 1).values(site_id=key[0], meter_role="main")
        )
    return int(key[0])


def site_days(engine: Engine, site_id: int, *, cache: bool) -> Any:
    with engine.connect() as conn:
        scope = load_scope(conn, "site", default_tz="UTC", site_id=site_id)
        if cache:
            return daily_site.cached_period_sums(conn, scope, "day", *JANUARY)
        return period_sums(conn, scope, "day", *JANUARY)


def test_a_frozen_hours_quarters_are_kept_and_restated_with_it_and_its_site_days_follow(
    upgraded: Engine, fresh_url: str
) -> None:
    site_id = on_a_site(upgraded)
    run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert raw_count(upgraded, JAN05, JAN20 + H) == 0  # January's hours are frozen, raw gone
    quarters = quarters_by_hour(upgraded)
    assert JAN05 in quarters and JAN20 in quarters
    # Frozen hours recomputed again (a redelivery, a neighbour): their quarters stay as they are.
    again = recompute_buckets(upgraded, [Bucket(1, JAN05), Bucket(1, JAN20)], config())
    assert again.frozen == 2 and again.removed == 0 and not again.failed
    kept = quarters_by_hour(upgraded)
    for hour in (JAN05, JAN20):
        assert [without_computed_at(q) for q in kept[hour]] == [
            without_computed_at(q) for q in quarters[hour]
        ]

    # The site's January is served from its cached days.
    daily_site.rebuild_site(upgraded, site_id, default_tz="UTC", lock_timeout_s=5.0)
    before = site_days(upgraded, site_id, cache=True)
    assert before is not None
    assert sum(d.co2_kg for d in before[0]) == pytest.approx(2 * KWH_PER_HOUR * ORIGINAL_KG_PER_KWH)

    # Another factor set over the frozen hours (what `powerflow rollup` does after a change).
    changed = buckets_in_range(upgraded, *JANUARY, other_factor_set_than="kr-gir")
    assert changed == [Bucket(1, JAN05), Bucket(1, JAN20)]
    result = recompute_buckets(upgraded, changed, config("kr-gir"))
    assert result.frozen == 2 and not result.failed
    hours, restated = stats_by_hour(upgraded), quarters_by_hour(upgraded)
    for hour in (JAN05, JAN20):
        assert hours[hour]["co2_kg"] == pytest.approx(KWH_PER_HOUR * KR_GIR_2023_ON_KG_PER_KWH)
        assert_quarters_add_up(hours[hour], restated[hour])
        # Each quarter's kWh are the ones it had; only its CO2 follows the factor.
        assert [q["energy_kwh"] for q in restated[hour]] == [
            q["energy_kwh"] for q in quarters[hour]
        ]
        for q in restated[hour]:
            assert q["co2_kg"] == pytest.approx(q["energy_kwh"] * KR_GIR_2023_ON_KG_PER_KWH)
            assert q["computed_at"] == hours[hour]["computed_at"]  # one transaction, one time

    # The site's daily chart follows: its days stopped being served when the hours changed
    # (in their transaction), and the rebuild a read makes (the API's path) has the new CO2.
    assert site_days(upgraded, site_id, cache=True) is None, "stale days would be served"
    live = site_days(upgraded, site_id, cache=False)
    daily_site.rebuild_site(upgraded, site_id, default_tz="UTC", lock_timeout_s=5.0)
    after = site_days(upgraded, site_id, cache=True)
    assert after is not None
    assert [(d.start, d.energy_kwh) for d in after[0]] == [(d.start, d.energy_kwh) for d in live[0]]
    assert [d.co2_kg for d in after[0]] == pytest.approx([d.co2_kg for d in live[0]])
    assert after[1] == live[1] and after[1] != before[1]  # the kr-gir factor now
    assert sum(d.co2_kg for d in after[0]) == pytest.approx(
        2 * KWH_PER_HOUR * KR_GIR_2023_ON_KG_PER_KWH
    )
    # A redelivery of restated hours changes nothing, and the days stay served.
    assert recompute_buckets(upgraded, changed, config("kr-gir")).frozen == 2
    assert site_days(upgraded, site_id, cache=True) is not None


def test_an_upgraded_install_gets_its_quarters_before_its_raw_readings_go(
    upgraded: Engine, fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As after migration 0009: every hour has its stats, none its quarters (5 January), or a
    # quarter older than the hour's newest reading (20 January).
    site_id = on_a_site(upgraded)
    daily_site.rebuild_site(upgraded, site_id, default_tz="UTC", lock_timeout_s=5.0)
    hours_before = stats_by_hour(upgraded)
    with begin_write(upgraded) as conn:
        conn.execute(delete(QUARTER_HOUR_STATS).where(QUARTER_HOUR_STATS.c.hour_start != JAN20))
        conn.execute(
            update(QUARTER_HOUR_STATS).values(computed_at=datetime(2024, 12, 31, tzinfo=UTC))
        )
    assert not_rolled_up(upgraded, None, TARGET) == [Bucket(1, JAN05), Bucket(1, JAN20)]

    chunks: list[list[Bucket]] = []

    def recorded(engine: Engine, buckets: list[Bucket], *args: Any, **kwargs: Any) -> Any:
        chunks.append(list(buckets))
        return recompute_buckets(engine, buckets, *args, **kwargs)

    monkeypatch.setattr(retention_job, "recompute_buckets", recorded)
    monkeypatch.setattr(retention_job, "QUARTER_BACKFILL_CHUNK_HOURS", 1)
    outcome = run_retention(upgraded, job_settings(fresh_url), now=NOW)

    # The job recomputed those hours from their raw readings, one chunk at a time, then froze
    # them and deleted their raw readings: the horizon was not held back.
    assert chunks == [[Bucket(1, JAN05)], [Bucket(1, JAN20)]]
    assert outcome.quarters_backfilled == 2
    assert outcome.not_rolled_up == [] and outcome.horizon == TARGET
    assert raw_count(upgraded, datetime(2024, 1, 1, tzinfo=UTC), DELETE_BEFORE) == 0
    hours, quarters = stats_by_hour(upgraded), quarters_by_hour(upgraded)
    for hour in (JAN05, JAN20):
        assert without_computed_at(hours[hour]) == without_computed_at(hours_before[hour])
        assert_quarters_add_up(hours[hour], quarters[hour])
    assert FEB10 not in quarters  # beyond the window frozen now: the next runs' (or rollup's)
    assert not_rolled_up(upgraded, None, TARGET) == []
    # The recomputed hours' site is rebuilt when next read, never served from days before them.
    assert site_days(upgraded, site_id, cache=True) is None


def test_an_hour_whose_quarters_could_not_be_computed_holds_the_horizon_back(
    upgraded: Engine, fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with begin_write(upgraded) as conn:
        conn.execute(delete(QUARTER_HOUR_STATS).where(QUARTER_HOUR_STATS.c.hour_start == JAN20))

    def failing(conn: Any, **kwargs: Any) -> int:
        raise ValueError("quarters refused")

    monkeypatch.setattr(quarter_hour, "store_quarters", failing)
    outcome = run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert outcome.quarters_backfilled == 0
    assert outcome.not_rolled_up == [Bucket(1, JAN20)]
    assert outcome.horizon == datetime(2025, 1, 20, tzinfo=UTC)
    assert raw_count(upgraded, JAN20, JAN20 + H) == SAMPLES_PER_HOUR  # kept
    assert JAN20 not in quarters_by_hour(upgraded)


def test_a_recompute_that_fails_after_committing_hours_stops_serving_their_sites_days(
    upgraded: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_id = on_a_site(upgraded)
    daily_site.rebuild_site(upgraded, site_id, default_tz="UTC", lock_timeout_s=5.0)
    assert site_days(upgraded, site_id, cache=True) is not None
    late = store_readings(
        upgraded,
        [Reading(device_code=CODE, ts=JAN20 + timedelta(minutes=30), power_w=1000.0)],
        received_at=datetime.now(UTC),
        max_gap=GAP,
    )

    def busy(*args: Any, **kwargs: Any) -> int:
        raise LockNotAcquired("another copy holds the site")

    # The hour is committed, then its days cannot be refreshed (another copy held the site).
    monkeypatch.setattr(daily_site, "refresh_days", busy)
    with pytest.raises(LockTimeout):
        recompute_buckets(upgraded, late.buckets, config())
    assert stats_by_hour(upgraded)[JAN20]["samples"] == SAMPLES_PER_HOUR + 1
    assert site_days(upgraded, site_id, cache=True) is None  # never the day before it


def test_hours_the_job_recomputes_while_freezing_them_leave_no_stale_day(
    upgraded: Engine, fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_id = on_a_site(upgraded)
    daily_site.rebuild_site(upgraded, site_id, default_tz="UTC", lock_timeout_s=5.0)

    # A reading for 20 January lands just before the horizon moves.
    def commit() -> None:
        store_readings(
            upgraded,
            [Reading(device_code=CODE, ts=JAN20 + timedelta(minutes=30), power_w=1000.0)],
            received_at=datetime.now(UTC),
            max_gap=GAP,
        )

    commit_after_the_check(monkeypatch, commit)
    outcome = run_retention(upgraded, job_settings(fresh_url), now=NOW)
    assert outcome.recomputed_frozen == 1 and outcome.horizon == TARGET
    # Frozen and rolled up, 20 January is never recomputed again: its day was not left behind.
    assert site_days(upgraded, site_id, cache=True) is None
    daily_site.rebuild_site(upgraded, site_id, default_tz="UTC", lock_timeout_s=5.0)
    days = site_days(upgraded, site_id, cache=True)
    assert days is not None
    assert sum(d.energy_kwh for d in days[0]) == pytest.approx(
        sum(d.energy_kwh for d in site_days(upgraded, site_id, cache=False)[0])
    )
    assert stats_by_hour(upgraded)[JAN20]["samples"] == SAMPLES_PER_HOUR + 1
