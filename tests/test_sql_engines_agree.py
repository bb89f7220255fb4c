"""SQLite and MariaDB answer every read query the same from the same rows.

The statistics cut local days, weeks and months with per-dialect SQL (db.sqltime), the readings
are bucketed per dialect, and SQLite keeps DATETIME as text: any difference in the arithmetic,
in a comparison at a bound, or in how a result comes back shows here as two different answers.
The rows span the daylight-saving changes of America/New_York (8 March and 1 November 2026)
and Europe/London (29 March, 25 October), a zone without any (Asia/Seoul), month and ISO-week
cuts, a device moved between sites, hours without samples or environment values, and readings
on both sides of the bucket epoch (2000-01-01) with fractional seconds.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert

from conftest import SERVER_URL, mariadb_unreachable
from pf_testing import missing_prerequisite
from powerflow_api import readings as api_readings
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import (
    DEVICE_SITES,
    DEVICES,
    EMISSION_FACTORS,
    HOURLY_STATS,
    QUARTER_HOUR_STATS,
    READINGS,
    RENEWABLE_CONTRACTS,
    SITES,
)
from powerflow_common.periods import Period
from powerflow_common.queries import ScopeKind, load_scope, period_sums, range_sums
from powerflow_common.settings import load_settings
from powerflow_reporter.facts import ReportScope, compute_facts, load_inputs

H = timedelta(hours=1)
# Two windows of hours around the spring and autumn changes (and the months' ends).
SPRING = (datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))
AUTUMN = (datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC))
# A few hours around the readings' bucket epoch, for the hourly and daily resolutions.
EPOCH = (datetime(1999, 12, 31, 20, tzinfo=UTC), datetime(2000, 1, 1, 4, tzinfo=UTC))
NEW_YORK, SEOUL, LONDON = 1, 2, 3
MOVED = 7  # the device that moves from New York to Seoul
MOVED_AT = datetime(2026, 3, 8, 12, tzinfo=UTC)
READINGS_DEVICE = 1
# Sums of the same floats in another order differ in the last bits; nothing else may.
REL_TOLERANCE = 1e-9
# Not "hour": it groups by hour_start itself, no dialect arithmetic (and 1,000 buckets a scope).
PERIODS: tuple[Period, ...] = ("day", "week", "month")


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """The same rows in a SQLite file and in a MariaDB database of this module's own."""
    if missing := mariadb_unreachable():
        missing_prerequisite(missing)
    folder: Path = tmp_path_factory.mktemp("engines-agree")
    urls = {
        "sqlite": f"sqlite:///{folder / 'powerflow.db'}",
        "mariadb": f"{SERVER_URL}/pf_test_{uuid.uuid4().hex[:10]}",
    }
    made: dict[str, Engine] = {}
    try:
        for name, url in urls.items():
            migrate(url)
            made[name] = make_engine(url)
            _load(made[name])
        yield made
    finally:
        for engine in made.values():
            engine.dispose()
        drop_database(urls["mariadb"])


def _hours() -> Iterator[datetime]:
    for lo, hi in (EPOCH, SPRING, AUTUMN):
        at = lo
        while at < hi:
            yield at
            at += H


def _load(engine: Engine) -> None:
    """The fixture's rows, drawn from a fixed seed: the same on every engine and every run."""
    rng = random.Random(20261101)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    first = datetime(2026, 1, 1, tzinfo=UTC)
    sites = [
        {"id": i, "name": name, "timezone": tz, "floor_area_m2": m2}
        for i, name, tz, m2 in (
            (NEW_YORK, "New York", "America/New_York", 900.0),
            (SEOUL, "Seoul", "Asia/Seoul", 1200.0),
            (LONDON, "London", "Europe/London", 500.0),
        )
    ]
    # (id, site, role): a main and a sub-meter in New York, a main and a plug in Seoul, a plug
    # in London, an unassigned main meter, and the plug that moves.
    devices = [
        (1, NEW_YORK, "main"),
        (2, NEW_YORK, "sub"),
        (3, SEOUL, "main"),
        (4, SEOUL, "standalone"),
        (5, LONDON, "standalone"),
        (6, None, "main"),
        (MOVED, SEOUL, "standalone"),
    ]
    with engine.begin() as conn:
        conn.execute(insert(SITES), [{**s, "region": "KR", "created_at": first} for s in sites])
        conn.execute(
            insert(DEVICES),
            [
                {
                    "id": d,
                    "code": f"agree-{d}",
                    "site_id": site,
                    "meter_role": role,
                    "payload_format": "original",
                    "bidirectional": False,
                    "first_seen_at": first,
                    "last_seen_at": now,
                    "admitted_at": first,
                    "admitted_by": "test",
                }
                for d, site, role in devices
            ],
        )
        conn.execute(
            insert(DEVICE_SITES),
            [
                {
                    "device_id": MOVED,
                    "site_id": NEW_YORK,
                    "meter_role": "standalone",
                    "valid_from": first,
                    "recorded_at": first,
                },
                {
                    "device_id": MOVED,
                    "site_id": SEOUL,
                    "meter_role": "standalone",
                    "valid_from": MOVED_AT,
                    "recorded_at": MOVED_AT,
                },
            ],
        )
        factors = [901, 902]  # beside the seeded ones
        conn.execute(
            insert(EMISSION_FACTORS),
            [
                {
                    "id": f,
                    "factor_set": f"agree-{f}",
                    "region": "KR",
                    "kg_co2e_per_kwh": 0.4 + (f - 900) / 10,
                    "source": "test",
                    "method": "location",
                }
                for f in factors
            ],
        )
        conn.execute(
            insert(RENEWABLE_CONTRACTS),
            [
                {
                    "site_id": SEOUL,
                    "period_start": datetime(2026, 3, 1).date(),
                    "period_end": datetime(2026, 3, 31).date(),
                    "energy_kwh": 40.0,
                    "instrument": "REC",
                },
                {
                    "site_id": NEW_YORK,
                    "period_start": datetime(2026, 10, 1).date(),
                    "period_end": datetime(2026, 11, 30).date(),
                    "energy_kwh": 15.5,
                    "instrument": "PPA",
                },
            ],
        )
        rows = []
        for hour in _hours():
            for d, _, _ in devices:
                if rng.random() < 0.05:  # a missing hour
                    continue
                kwh = rng.uniform(0.0, 3.0)
                factor = rng.choice(factors)
                env_missing = rng.random() < 0.1
                rows.append(
                    {
                        "device_id": d,
                        "hour_start": hour,
                        # 0 samples (a carried-over hour) still weighs 1 in the averages.
                        "samples": rng.choice([0, 1, 360, 720]),
                        "coverage": rng.uniform(0.5, 1.0),
                        "energy_kwh": kwh,
                        "export_kwh": rng.choice([0.0, rng.uniform(0.0, 0.5)]),
                        "unallocated_kwh": rng.choice([0.0, rng.uniform(0.0, 0.2)]),
                        "unallocated_export_kwh": 0.0,
                        "power_avg_w": kwh * 1000,
                        "power_min_w": kwh * 500,
                        "power_max_w": kwh * 1500 + rng.uniform(0, 100),
                        "temperature_avg_c": None if env_missing else rng.uniform(15, 30),
                        "humidity_avg_pct": None if env_missing else rng.uniform(20, 80),
                        "brightness_avg_lux": None if env_missing else rng.uniform(0, 900),
                        "co2_kg": kwh * (0.4 + (factor - 900) / 10),
                        "emission_factor_id": factor,
                        "factor_set": f"agree-{factor}",
                        "computed_at": now,
                    }
                )
        conn.execute(insert(HOURLY_STATS), rows)
        # The 15-minute resolution reads quarter_hour_stats: the readings device's hours, cut
        # in four (the aggregator's own arithmetic is tests/test_rollup_tables.py's).
        quarters: list[dict[str, Any]] = [
            {
                **r,
                "quarter_start": r["hour_start"] + q * timedelta(minutes=15),
                "energy_kwh": r["energy_kwh"] / 4,
                "co2_kg": r["co2_kg"] / 4,
                "samples": r["samples"] // 4,
            }
            for r in cast(list[dict[str, Any]], rows)
            if r["device_id"] == READINGS_DEVICE
            for q in range(4)
        ]
        conn.execute(insert(QUARTER_HOUR_STATS), quarters)
        conn.execute(insert(READINGS), _readings(rng, now))


def _readings(rng: random.Random, received_at: datetime) -> list[dict[str, Any]]:
    """Readings of one device every 7.3 s (fractions of a second) around bucket edges."""
    rows = []
    for lo in (
        datetime(1999, 12, 31, 23, 40, tzinfo=UTC),  # before the bucket epoch: negative buckets
        datetime(2026, 3, 8, 6, 30, tzinfo=UTC),  # New York's spring change, 07:00 UTC
        datetime(2026, 11, 1, 5, 50, tzinfo=UTC),  # New York's autumn change, 06:00 UTC
    ):
        at = lo
        while at < lo + timedelta(minutes=45):
            rows.append(
                {
                    "device_id": READINGS_DEVICE,
                    "ts": at,
                    "power_w": rng.uniform(0, 2000),
                    "temperature_c": rng.choice([None, rng.uniform(15, 30)]),
                    "humidity_pct": rng.uniform(20, 80),
                    "brightness_lux": None,
                    "received_at": received_at,
                }
            )
            at += timedelta(seconds=7.3)
    # Exactly on a minute and a quarter-hour edge, and a microsecond before and after.
    edge = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    for delta in (-1, 0, 1):
        rows.append(
            {
                "device_id": READINGS_DEVICE,
                "ts": edge + timedelta(minutes=15, microseconds=delta * 1000),
                "power_w": 100.0 + delta,
                "temperature_c": None,
                "humidity_pct": None,
                "brightness_lux": None,
                "received_at": received_at,
            }
        )
    return rows


# --- comparison ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Dataclasses, msgspec structs, sets and tuples as plain dicts and lists, for comparison."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if hasattr(value, "__struct_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__struct_fields__}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def assert_same(sqlite: Any, mariadb: Any, path: str = "") -> None:
    """Equal, floats to REL_TOLERANCE; the path of the first difference in the message."""
    if isinstance(sqlite, float) or isinstance(mariadb, float):
        assert isinstance(sqlite, int | float) and isinstance(mariadb, int | float), path
        assert math.isclose(sqlite, mariadb, rel_tol=REL_TOLERANCE, abs_tol=1e-9), (
            f"{path}: SQLite {sqlite!r}, MariaDB {mariadb!r}"
        )
        return
    assert type(sqlite) is type(mariadb), f"{path}: SQLite {sqlite!r}, MariaDB {mariadb!r}"
    if isinstance(sqlite, dict):
        assert sqlite.keys() == mariadb.keys(), path
        for k in sqlite:
            assert_same(sqlite[k], mariadb[k], f"{path}.{k}")
    elif isinstance(sqlite, list):
        assert len(sqlite) == len(mariadb), f"{path}: {len(sqlite)} vs {len(mariadb)} items"
        for i, (a, b) in enumerate(zip(sqlite, mariadb, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert sqlite == mariadb, f"{path}: SQLite {sqlite!r}, MariaDB {mariadb!r}"


def _on_both(engines: dict[str, Engine], read: Any) -> tuple[Any, Any]:
    answers = []
    for name in ("sqlite", "mariadb"):
        with engines[name].connect() as conn:
            answers.append(_plain(read(conn)))
    return answers[0], answers[1]


SCOPES: list[tuple[ScopeKind, dict[str, Any]]] = [
    ("organisation", {}),
    ("site", {"site_id": NEW_YORK}),
    ("site", {"site_id": SEOUL}),
    ("site", {"site_id": LONDON}),
    ("device", {"device_code": f"agree-{MOVED}"}),
    ("devices", {"device_ids": [1, 2, 4, MOVED]}),
]


@pytest.mark.parametrize("window", [SPRING, AUTUMN], ids=["spring", "autumn"])
@pytest.mark.parametrize(("kind", "ref"), SCOPES, ids=[f"{k}{r}" for k, r in SCOPES])
def test_statistics_agree(
    engines: dict[str, Engine],
    kind: ScopeKind,
    ref: dict[str, Any],
    window: tuple[datetime, datetime],
) -> None:
    start, end = window

    def read(conn: Any) -> Any:
        scope = load_scope(conn, kind, default_tz="America/New_York", **ref)
        out: dict[str, Any] = {"range": range_sums(conn, scope, start, end)}
        for period in PERIODS:
            out[period] = period_sums(conn, scope, period, start, end)
        return out

    sqlite, mariadb = _on_both(engines, read)
    assert sqlite["day"][0], "the fixture must give every scope some days"
    assert_same(sqlite, mariadb)


def test_local_days_and_weeks_follow_the_zone(engines: dict[str, Engine]) -> None:
    """Not only equal: right. New York's days have 23 and 25 hours on its change days, weeks
    start on a local Monday and months on the 1st, on both engines."""
    zone = ZoneInfo("America/New_York")
    for name, engine in engines.items():
        with engine.connect() as conn:
            scope = load_scope(conn, "site", default_tz="UTC", site_id=NEW_YORK)
            days, _ = period_sums(conn, scope, "day", *SPRING)
            weeks, _ = period_sums(conn, scope, "week", *SPRING)
            months, _ = period_sums(conn, scope, "month", *AUTUMN)
        lengths = {d.start.astimezone(zone).date().isoformat(): d.end - d.start for d in days}
        assert lengths["2026-03-08"] == 23 * H, name
        assert lengths["2026-03-09"] == 24 * H, name
        for w in weeks:
            local = w.start.astimezone(zone)
            assert (local.weekday(), local.hour) == (0, 0) or w is weeks[0], (name, local)
        assert [m.start.astimezone(zone).day for m in months] == [1] * len(months), name
        assert [m.start.astimezone(zone).month for m in months] == [10, 11], name


@pytest.mark.parametrize("resolution", ["raw", "1m", "15m", "1h", "1d"])
@pytest.mark.parametrize(
    "span",
    [
        (datetime(1999, 12, 31, 23, tzinfo=UTC), datetime(2000, 1, 1, 1, tzinfo=UTC)),
        (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)),
        (datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)),
    ],
    ids=["epoch", "spring", "autumn"],
)
def test_readings_agree(
    engines: dict[str, Engine], resolution: str, span: tuple[datetime, datetime]
) -> None:
    """Every page of every resolution, followed by cursor (the > and >= bounds at work)."""
    start, end = span
    pages: dict[str, list[Any]] = {}
    for name, engine in engines.items():
        window = api_readings.Window(
            device_id=READINGS_DEVICE,
            device_code=f"agree-{READINGS_DEVICE}",
            timezone="America/New_York",
            start=start,
            end=end,
            resolution=resolution,  # type: ignore[arg-type]
            limit=7,
            after=None,
            as_of=datetime(2027, 1, 1, tzinfo=UTC),
        )
        got: list[Any] = []
        while True:
            points, cursor = api_readings.read_page(engine, window)
            got.append(_plain(points))
            if cursor is None:
                break
            after = api_readings.decode_cursor(cursor).after
            window = api_readings.Window(**{**api_readings._fields(window), "after": after})
        pages[name] = got
    assert any(pages["sqlite"]), "the fixture must give every span some points"
    assert_same(pages["sqlite"], pages["mariadb"])


@pytest.mark.parametrize(
    ("scope", "month"),
    [
        (ReportScope(kind="site", site_id=NEW_YORK), (datetime(2026, 3, 1), datetime(2026, 4, 1))),
        (ReportScope(kind="organisation"), (datetime(2026, 11, 1), datetime(2026, 11, 10))),
        (ReportScope(kind="site", site_id=SEOUL), (datetime(2026, 3, 1), datetime(2026, 4, 1))),
    ],
    ids=["new-york-march", "organisation-november", "seoul-march"],
)
def test_report_facts_agree(
    engines: dict[str, Engine], scope: ReportScope, month: tuple[datetime, datetime]
) -> None:
    zone = ZoneInfo("America/New_York")
    start, end = (m.replace(tzinfo=zone).astimezone(UTC) for m in month)

    def read(conn: Any) -> Any:
        inputs = load_inputs(
            conn, scope, start, end, default_tz="America/New_York", settings=load_settings()
        )
        return {"inputs": inputs, "facts": compute_facts(inputs)}

    sqlite, mariadb = _on_both(engines, read)
    assert sqlite["inputs"]["rows"], "the fixture must give the report some hours"
    assert_same(sqlite, mariadb)
