"""quarter_hour_stats and daily_site_stats, kept by the aggregator, on SQLite and MariaDB.

- The four quarters of every hour add up to the hour (energy, export, unallocated energy,
  samples, CO2; coverage averages to it), whatever the readings: power, counters with gaps,
  bidirectional meters, late readings; an hour that loses its readings loses its quarters.
- The daily per-site table equals the totals summed from hourly_stats directly, and follows
  a late reading, a meter role changed, a site's timezone changed (even by hand in SQL) and
  another factor set; a stale site is never served.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pf_rollup import rollup_config, store, store_and_roll
from sqlalchemy import Engine, delete, insert, select, update

from pf_testing import admit
from powerflow_aggregator.rollup import RollupConfig, recompute_buckets
from powerflow_common import daily_site
from powerflow_common.db.models import (
    DAILY_SITE_STATE,
    DAILY_SITE_STATS,
    DEVICES,
    HOURLY_STATS,
    QUARTER_HOUR_STATS,
    READINGS,
    SITES,
)
from powerflow_common.queries import PeriodSums, load_scope, period_sums, record_placement
from powerflow_common.wire import Bucket, Reading

pytestmark = pytest.mark.both_backends

H = timedelta(hours=1)
T0 = datetime(2024, 6, 2, 15, tzinfo=UTC)  # midnight in Seoul
# Sums of four float quarters against one float hour: the same terms, added in another
# order (math.fsum per bucket), so they agree to a few units in the last place.
REL = 1e-9
ABS_KWH = 1e-12


@pytest.fixture
def config() -> RollupConfig:
    return rollup_config()


def mixed_fleet(seed: int) -> list[Reading]:
    """A plug on power with gaps, a counter meter read every 7 minutes (gaps beyond max_gap,
    so unallocated energy), a counter at 10 s with a reset, a bidirectional solar meter."""
    rng = random.Random(seed)
    out: list[Reading] = []
    ts = T0 - timedelta(minutes=20)
    while ts < T0 + 3 * H:
        if not T0 + timedelta(minutes=40) < ts < T0 + timedelta(minutes=52):
            out.append(
                Reading(
                    device_code="plug",
                    ts=ts,
                    power_w=rng.uniform(0, 2500),
                    temperature_c=rng.uniform(18, 28),
                )
            )
        ts += timedelta(seconds=rng.choice((3, 5, 5, 5, 7, 30, 59, 75)))
    wh = 1000.0
    for i in range(0, 26):
        wh += rng.uniform(0, 300)
        out.append(Reading(device_code="meter", ts=T0 + timedelta(minutes=7 * i), energy_wh=wh))
    wh = 50.0
    for i in range(0, 3 * 360):
        wh = 3.0 if i == 500 else wh + rng.uniform(0, 5)  # a reboot restarts the counter
        out.append(
            Reading(
                device_code="fast",
                ts=T0 + timedelta(seconds=10 * i + 3),
                energy_wh=wh,
                power_w=rng.uniform(0, 2000),
            )
        )
    for i in range(0, 3 * 720):
        out.append(
            Reading(
                device_code="solar",
                ts=T0 + timedelta(seconds=5 * i + 1),
                power_w=rng.uniform(-3000, 1500),
                bidirectional=True,
            )
        )
    return out


def quarters_by_hour(engine: Engine) -> dict[tuple[int, datetime], list[dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(QUARTER_HOUR_STATS)).mappings().all()
    out: dict[tuple[int, datetime], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        assert r["quarter_start"] - r["hour_start"] in {timedelta(minutes=15 * i) for i in range(4)}
        out[(r["device_id"], r["hour_start"])].append(dict(r))
    return out


def hours(engine: Engine) -> dict[tuple[int, datetime], dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(HOURLY_STATS)).mappings().all()
    return {(r["device_id"], r["hour_start"]): dict(r) for r in rows}


def assert_quarters_add_up(engine: Engine) -> int:
    by_hour, quarters = hours(engine), quarters_by_hour(engine)
    assert set(quarters) <= set(by_hour), "a quarter without its hour"
    for key, hour in by_hour.items():
        parts = quarters.get(key, [])
        if not parts:  # an hour a neighbour's reading only touched: nothing in it
            assert hour["samples"] == 0 and hour["coverage"] == 0, key
            assert hour["energy_kwh"] == hour["unallocated_kwh"] == hour["export_kwh"] == 0
            continue
        for column in ("energy_kwh", "export_kwh", "unallocated_kwh", "co2_kg"):
            total = math.fsum(p[column] for p in parts)
            assert math.isclose(total, hour[column], rel_tol=REL, abs_tol=ABS_KWH), (key, column)
        assert sum(p["samples"] for p in parts) == hour["samples"], key
        coverage = math.fsum(p["coverage"] for p in parts) / 4
        assert math.isclose(coverage, hour["coverage"], rel_tol=REL, abs_tol=1e-12), key
        assert {p["energy_source"] for p in parts} <= {hour["energy_source"], None}
        assert {p["emission_factor_id"] for p in parts} == {hour["emission_factor_id"]}
    return len(by_hour)


def test_the_four_quarters_of_every_hour_add_up_to_the_hour(
    engine: Engine, config: RollupConfig
) -> None:
    admit(engine, "plug", "meter", "fast", "solar", legacy=False)
    readings = mixed_fleet(7)
    random.Random(3).shuffle(readings)  # in batches, out of order, as the aggregator sees them
    for i in range(0, len(readings), 700):
        store_and_roll(engine, config, readings[i : i + 700])
    assert assert_quarters_add_up(engine) >= 4 * 3
    with engine.connect() as conn:
        meter_unallocated = conn.execute(
            select(QUARTER_HOUR_STATS.c.unallocated_kwh)
            .join(DEVICES, DEVICES.c.id == QUARTER_HOUR_STATS.c.device_id)
            .where(DEVICES.c.code == "meter", QUARTER_HOUR_STATS.c.unallocated_kwh > 0)
        ).all()
        solar_export = conn.execute(
            select(QUARTER_HOUR_STATS.c.export_kwh)
            .join(DEVICES, DEVICES.c.id == QUARTER_HOUR_STATS.c.device_id)
            .where(DEVICES.c.code == "solar", QUARTER_HOUR_STATS.c.export_kwh > 0)
        ).all()
    assert meter_unallocated and solar_export  # the cases that could disagree were there


def test_a_quarter_of_an_hour_at_1150_5_w_is_a_quarter_of_1_1505_kwh(
    engine: Engine, config: RollupConfig
) -> None:
    store_and_roll(
        engine,
        config,
        [
            Reading(device_code="q", ts=T0 + timedelta(seconds=5 * i), power_w=1150.5)
            for i in range(721)
        ],
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(QUARTER_HOUR_STATS).order_by(QUARTER_HOUR_STATS.c.quarter_start)
        ).all()
    first_hour = [r for r in rows if r.hour_start == T0]
    assert [r.quarter_start for r in first_hour] == [
        T0 + timedelta(minutes=15 * i) for i in range(4)
    ]
    for r in first_hour:
        assert r.energy_kwh == pytest.approx(1.1505 / 4)
        assert r.coverage == pytest.approx(1.0)
        assert r.power_avg_w == pytest.approx(1150.5)
        assert r.co2_kg == pytest.approx(1.1505 / 4 * 0.478)
    # The sample at 11:00:00 has its own hour (no energy: nothing after it).
    assert [r.samples for r in rows if r.hour_start == T0 + H] == [1]


def test_a_late_reading_changes_its_quarter_and_an_emptied_hour_loses_its_quarters(
    engine: Engine, config: RollupConfig
) -> None:
    late = T0 + timedelta(minutes=37, seconds=30)
    readings = [
        Reading(device_code="late", ts=T0 + timedelta(seconds=5 * i), power_w=1000.0)
        for i in range(721)
    ]
    store_and_roll(engine, config, [r for r in readings if r.ts != late])
    before = {r["quarter_start"]: r for rows in quarters_by_hour(engine).values() for r in rows}
    store_and_roll(engine, config, [Reading(device_code="late", ts=late, power_w=5000.0)])
    after = {r["quarter_start"]: r for rows in quarters_by_hour(engine).values() for r in rows}
    changed = {q for q in before if before[q]["energy_kwh"] != after[q]["energy_kwh"]}
    assert changed == {T0 + timedelta(minutes=30)}
    assert (
        after[T0 + timedelta(minutes=30)]["energy_kwh"]
        > before[T0 + timedelta(minutes=30)]["energy_kwh"]
    )
    assert_quarters_add_up(engine)

    # Every reading of the hour removed (an operator's deletion): the recompute finds it empty.
    with engine.begin() as conn:
        conn.execute(delete(READINGS))
    recompute_buckets(engine, [Bucket(1, T0 - H), Bucket(1, T0), Bucket(1, T0 + H)], config)
    assert quarters_by_hour(engine) == {}
    assert hours(engine) == {}


# --- daily_site_stats ------------------------------------------------------------------------


def site_fleet(days: int) -> list[Reading]:
    """Three devices of a Seoul site, a reading a minute for ``days`` days, some gaps."""
    rng = random.Random(11)
    out: list[Reading] = []
    for code, watts in (("main", 2000.0), ("plug-a", 500.0), ("plug-b", 300.0)):
        for i in range(days * 24 * 60):
            if i % 997 < 30:  # a half-hour outage now and then
                continue
            out.append(
                Reading(
                    device_code=code,
                    ts=T0 - 3 * H + timedelta(seconds=60 * i - 30),
                    power_w=watts * rng.uniform(0.5, 1.5),
                    temperature_c=rng.uniform(18, 26),
                )
            )
    return out


def make_site(engine: Engine, roles: dict[str, str], tz: str = "Asia/Seoul") -> int:
    with engine.begin() as conn:
        key = conn.execute(
            insert(SITES).values(name="hq", timezone=tz, region="KR", created_at=T0)
        ).inserted_primary_key
        assert key is not None
        site_id = key[0]
        for code, role in roles.items():
            conn.execute(
                update(DEVICES)
                .where(DEVICES.c.code == code)
                .values(site_id=site_id, meter_role=role)
            )
    return int(site_id)


def live(engine: Engine, site_id: int, period: str, start: datetime, end: datetime) -> Any:
    with engine.connect() as conn:
        scope = load_scope(conn, "site", default_tz="UTC", site_id=site_id)
        return period_sums(conn, scope, period, start, end)  # type: ignore[arg-type]


def cached(engine: Engine, site_id: int, period: str, start: datetime, end: datetime) -> Any:
    with engine.connect() as conn:
        scope = load_scope(conn, "site", default_tz="UTC", site_id=site_id)
        return daily_site.cached_period_sums(conn, scope, period, start, end)  # type: ignore[arg-type]


FIELDS = (
    "start",
    "end",
    "hours",
    "device_hours",
    "energy_kwh",
    "export_kwh",
    "unallocated_kwh",
    "co2_kg",
    "coverage_sum",
    "demand_sum_w",
    "demand_hours",
    "demand_max_w",
    "sample_max_w",
)


def assert_same_sums(
    got: tuple[list[PeriodSums], set[int]], want: tuple[list[PeriodSums], set[int]]
) -> None:
    assert got[1] == want[1]
    assert [p.start for p in got[0]] == [p.start for p in want[0]]
    for g, w in zip(got[0], want[0], strict=True):
        for name in FIELDS:
            a, b = getattr(g, name), getattr(w, name)
            if isinstance(b, float):
                assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-9), (g.start, name, a, b)
            else:
                assert a == b, (g.start, name, a, b)
        for env in g.env:
            assert g.env[env] == pytest.approx(w.env[env], rel=REL)
        assert sum(s.kwh for s in g.sites) == pytest.approx(sum(s.kwh for s in w.sites), rel=REL)


def build(engine: Engine, site_id: int) -> None:
    daily_site.rebuild_site(engine, site_id, default_tz="UTC", lock_timeout_s=5.0)


def test_the_daily_site_table_equals_the_totals_from_hourly_stats_and_follows_every_input(
    engine: Engine, config: RollupConfig
) -> None:
    admit(engine, "main", "plug-a", "plug-b", legacy=False)
    store(engine, site_fleet(4))
    site_id = make_site(engine, {"main": "main", "plug-a": "sub", "plug-b": "sub"})
    with engine.connect() as conn:
        ids = list(conn.execute(select(DEVICES.c.id)).scalars())
        first, last = (
            conn.execute(select(READINGS.c.ts).order_by(READINGS.c.ts).limit(1)).scalar_one(),
            conn.execute(
                select(READINGS.c.ts).order_by(READINGS.c.ts.desc()).limit(1)
            ).scalar_one(),
        )
    every_hour = [
        Bucket(d, first.replace(minute=0, second=0, microsecond=0) + i * H)
        for d in ids
        for i in range(int((last - first) / H) + 2)
    ]
    recompute_buckets(engine, every_hour, config)
    # Ranges that start and end inside days (the edges come from hourly_stats) and on them.
    ranges = [
        (T0 - 2 * H, T0 + timedelta(days=3, hours=5)),
        (T0, T0 + timedelta(days=3)),
        (T0 + 5 * H, T0 + timedelta(days=2)),
    ]
    assert cached(engine, site_id, "day", *ranges[0]) is None  # never built: not served
    build(engine, site_id)
    for period in ("day", "week", "month"):
        for lo, hi in ranges:
            got = cached(engine, site_id, period, lo, hi)
            assert got is not None, (period, lo, hi)
            assert_same_sums(got, live(engine, site_id, period, lo, hi))
    with engine.connect() as conn:
        n_days = len(conn.execute(select(DAILY_SITE_STATS.c.day)).all())
    assert 4 <= n_days <= 6  # a few rows per site-day, not hours x devices

    # A late reading: the aggregator refreshes its day.
    hour = T0 + timedelta(days=1, hours=3)
    store_and_roll(
        engine,
        config,
        [Reading(device_code="main", ts=hour + timedelta(seconds=1), power_w=9000.0)],
    )
    got = cached(engine, site_id, "day", *ranges[1])
    assert got is not None
    assert_same_sums(got, live(engine, site_id, "day", *ranges[1]))

    # A meter role changes (the API's and the CLI's path): the chart follows at once.
    main_only = live(engine, site_id, "day", *ranges[1])
    with engine.begin() as conn:
        for code, role in (("main", "sub"), ("plug-a", "standalone"), ("plug-b", "standalone")):
            record_placement(conn, code, meter_role=role, effective_from=T0 - timedelta(days=2))
            conn.execute(update(DEVICES).where(DEVICES.c.code == code).values(meter_role=role))
    assert cached(engine, site_id, "day", *ranges[1]) is None  # stale: never served
    build(engine, site_id)
    sub_only = cached(engine, site_id, "day", *ranges[1])
    assert sub_only is not None
    assert_same_sums(sub_only, live(engine, site_id, "day", *ranges[1]))
    # The plugs (800 W) count now, not the main meter (2,000 W).
    plugs, mains = (sum(p.energy_kwh for p in x[0]) for x in (sub_only, main_only))
    assert 0.3 * mains < plugs < 0.5 * mains

    # A timezone changed by hand in SQL, no write path told: the fingerprint catches it.
    with engine.begin() as conn:
        conn.execute(update(SITES).where(SITES.c.id == site_id).values(timezone="Europe/London"))
    assert cached(engine, site_id, "day", *ranges[1]) is None
    # ... and the aggregator, meeting the stale site, drops its state rather than patch it.
    store_and_roll(
        engine, config, [Reading(device_code="plug-a", ts=hour + timedelta(seconds=2), power_w=1)]
    )
    with engine.connect() as conn:
        assert conn.execute(select(DAILY_SITE_STATE)).all() == []
    build(engine, site_id)
    london = cached(engine, site_id, "day", *ranges[1])
    assert london is not None
    assert_same_sums(london, live(engine, site_id, "day", *ranges[1]))
    assert london[0][1].start.hour == 23  # midnight in London (BST) is 23:00 UTC

    # Another factor set: the hours are recomputed and their days follow.
    kr = dataclasses.replace(config, factor_set="kr-gir")
    before = cached(engine, site_id, "day", *ranges[1])
    recompute_buckets(engine, every_hour[:200], kr)  # a few days of some devices
    after = cached(engine, site_id, "day", *ranges[1])
    assert after is not None and before is not None
    assert_same_sums(after, live(engine, site_id, "day", *ranges[1]))
    assert after[1] != before[1]  # the days name the factors their hours used now


def test_a_restatement_of_many_hours_stops_serving_its_sites_until_rebuilt(
    engine: Engine, config: RollupConfig
) -> None:
    admit(engine, "main", legacy=False)
    store(engine, [r for r in site_fleet(1) if r.device_code == "main"])
    site_id = make_site(engine, {"main": "main"})
    with engine.connect() as conn:
        device = conn.execute(select(DEVICES.c.id)).scalar_one()
    build(engine, site_id)
    assert cached(engine, site_id, "day", T0, T0 + timedelta(days=1)) is not None
    # Hours on more days than BULK_REBUILD_DAYS: the site is rebuilt whole, still served.
    days = daily_site.BULK_REBUILD_DAYS + 1
    with engine.connect() as conn:
        built = conn.execute(select(DAILY_SITE_STATE.c.built_at)).scalar_one()
    recompute_buckets(engine, [Bucket(device, T0 + i * 24 * H) for i in range(days)], config)
    with engine.connect() as conn:
        assert conn.execute(select(DAILY_SITE_STATE.c.built_at)).scalar_one() > built
    assert_same_sums(
        cached(engine, site_id, "day", T0, T0 + timedelta(days=1)),
        live(engine, site_id, "day", T0, T0 + timedelta(days=1)),
    )
    # More hours than BULK_REBUILD_HOURS (most of them empty): the state goes first.
    many = [Bucket(device, T0 + i * H) for i in range(daily_site.BULK_REBUILD_HOURS + 1)]
    recompute_buckets(engine, many, config)
    assert cached(engine, site_id, "day", T0, T0 + timedelta(days=1)) is None
    build(engine, site_id)
    assert_same_sums(
        cached(engine, site_id, "day", T0, T0 + timedelta(days=1)),
        live(engine, site_id, "day", T0, T0 + timedelta(days=1)),
    )
