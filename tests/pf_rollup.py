"""Shared steps of the aggregator tests: a rollup configuration, store like the writer, roll up."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from powerflow_aggregator.rollup import RollupConfig, recompute_buckets
from powerflow_common.wire import Bucket, Reading
from powerflow_writer.store import store_readings

# The longest gap the energy rules bridge in these tests: readings come every few seconds, so a
# minute makes every outage a test stages a real gap.
GAP = timedelta(seconds=60)


def rollup_config() -> RollupConfig:
    """The aggregator's configuration the tests roll up with (original factors, Seoul time)."""
    return RollupConfig(
        factor_set="original",
        default_region="KR",
        organisation_timezone="Asia/Seoul",
        max_gap=GAP,
        counter_reset_tolerance_wh=10.0,
        lock_timeout_s=5.0,
    )


def store(engine: Engine, readings: Iterable[Reading]) -> list[Bucket]:
    """Store like the writer does and return the buckets it would announce."""
    return store_readings(
        engine, list(readings), received_at=datetime.now(UTC), max_gap=GAP
    ).buckets


def store_and_roll(engine: Engine, config: RollupConfig, readings: Iterable[Reading]) -> None:
    """Store like the writer, then recompute the announced buckets like the aggregator."""
    recompute_buckets(engine, store(engine, readings), config)
