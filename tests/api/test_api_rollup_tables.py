"""The charts that read the rollup tables: 15-minute points and a site's days.

- ``resolution=15m`` answers from quarter_hour_stats (energy included), not raw readings.
- A site's daily chart is built into daily_site_stats by its first read and then served
  from it; a meter role or the site's timezone changed through the API is followed at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import add_device, add_factor, add_hour, add_readings, add_site, bearer
from sqlalchemy import Engine, select

from powerflow_aggregator.rollup import RollupConfig, recompute_buckets
from powerflow_common.db.models import DAILY_SITE_STATE, DAILY_SITE_STATS, QUARTER_HOUR_STATS
from powerflow_common.wire import Bucket

pytestmark = pytest.mark.both_backends

Client = TestClient[Any]
H = timedelta(hours=1)
BASE = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)  # midnight in Seoul


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def test_15_minute_points_are_the_quarter_hour_table_with_their_energy(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    device = add_device(engine, "1001", last_seen=BASE)
    # 1,200 W for an hour, then 600 W for the next, a reading every 5 s.
    points = [(BASE + timedelta(seconds=5 * i), 1200.0 if i < 720 else 600.0) for i in range(1441)]
    add_readings(engine, device, points, received_at=BASE)
    config = RollupConfig(
        factor_set="original",
        default_region="KR",
        organisation_timezone="Asia/Seoul",
        max_gap=timedelta(seconds=60),
        counter_reset_tolerance_wh=10.0,
        lock_timeout_s=5.0,
    )
    recompute_buckets(engine, [Bucket(device, BASE + i * H) for i in range(3)], config)
    response = client.get(
        "/api/v1/devices/1001/readings",
        params={"start": _iso(BASE), "end": _iso(BASE + 2 * H), "resolution": "15m"},
        headers=bearer(keys["viewer"]),
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["ts"] for i in items] == [_iso(BASE + timedelta(minutes=15 * q)) for q in range(8)]
    # The last 5 s of the hour ramp from 1,200 W to the next hour's first 600 W reading.
    ramp_kwh = 5 * (1200 - 900) / 3600 / 1000
    assert [i["energy_kwh"] for i in items[:4]] == pytest.approx([0.3, 0.3, 0.3, 0.3 - ramp_kwh])
    assert items[3]["power_avg_w"] == pytest.approx(1200.0 - 600 * 5 / 900 / 2)
    assert [i["energy_kwh"] for i in items[4:]] == pytest.approx([0.15] * 4)
    with engine.connect() as conn:
        stored = conn.execute(
            select(QUARTER_HOUR_STATS.c.quarter_start, QUARTER_HOUR_STATS.c.samples).order_by(
                QUARTER_HOUR_STATS.c.quarter_start
            )
        ).all()
    assert [i["samples"] for i in items] == [s for _, s in stored][:8]

    # A month of quarters is one answer now (it was limited to a week of raw readings).
    month = client.get(
        "/api/v1/devices/1001/readings",
        params={"start": _iso(BASE - timedelta(days=30)), "end": _iso(BASE), "resolution": "15m"},
        headers=bearer(keys["viewer"]),
    )
    assert month.status_code == 200, month.text
    too_long = client.get(
        "/api/v1/devices/1001/readings",
        params={"start": _iso(BASE - timedelta(days=101)), "end": _iso(BASE), "resolution": "15m"},
        headers=bearer(keys["viewer"]),
    )
    assert too_long.status_code == 400 and "resolution=15m" in too_long.json()["detail"]


def _days(client: Client, site: int, key: str) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/stats/sites/{site}",
        params={
            "start": _iso(BASE - timedelta(days=1)),
            "end": _iso(BASE + timedelta(days=40)),
            "period": "day",
        },
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _built_at(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(DAILY_SITE_STATE.c.built_at)).scalar_one()


def _state(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(DAILY_SITE_STATE.c.site_id)).scalars())


def test_a_sites_daily_chart_is_served_from_its_days_and_follows_a_role_and_a_timezone(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    factor = add_factor(engine, kg_per_kwh=0.5)
    hq = add_site(engine, "HQ", "Asia/Seoul")
    main = add_device(engine, "main", last_seen=BASE, site_id=hq, meter_role="main")
    plug = add_device(engine, "plug", last_seen=BASE, site_id=hq, meter_role="sub")
    for h in range(0, 30 * 24, 5):  # an hour in five over 30 days
        add_hour(engine, main, BASE + h * H, energy_kwh=2.0, factor_id=factor)
        add_hour(engine, plug, BASE + h * H, energy_kwh=0.5, factor_id=factor)

    assert _state(engine) == []
    first = _days(client, hq, keys["viewer"])  # from hourly_stats; builds the site's days
    assert _state(engine) == [hq]
    with engine.connect() as conn:
        assert len(conn.execute(select(DAILY_SITE_STATS.c.day)).all()) == 30
    second = _days(client, hq, keys["viewer"])  # from daily_site_stats
    assert second == first
    built = _built_at(engine)
    part_day = client.get(  # less than a day: from hourly_stats, and nothing is rebuilt
        f"/api/v1/stats/sites/{hq}",
        params={"start": _iso(BASE + H), "end": _iso(BASE + 7 * H), "period": "day"},
        headers=bearer(keys["viewer"]),
    )
    assert part_day.status_code == 200 and part_day.json()["totals"]["energy_kwh"] == 2.0
    assert _built_at(engine) == built
    assert first["devices"] == ["main"]
    assert first["totals"]["energy_kwh"] == pytest.approx(2.0 * 144)

    # The plug becomes the main meter and the meter a sub-meter, since before the data.
    for code, role in (("main", "sub"), ("plug", "main")):
        patched = client.patch(
            f"/api/v1/devices/{code}",
            json={"meter_role": role, "effective_from": _iso(BASE - timedelta(days=2))},
            headers=bearer(keys["operator"]),
        )
        assert patched.status_code == 200, patched.text
        assert _state(engine) == []  # the write path stopped serving the site's days
    swapped = _days(client, hq, keys["viewer"])
    assert swapped["devices"] == ["plug"]
    assert swapped["totals"]["energy_kwh"] == pytest.approx(0.5 * 144)
    assert _days(client, hq, keys["viewer"]) == swapped  # and now from the rebuilt days

    moved = client.patch(
        f"/api/v1/sites/{hq}", json={"timezone": "Europe/London"}, headers=bearer(keys["operator"])
    )
    assert moved.status_code == 200, moved.text
    london = _days(client, hq, keys["viewer"])
    assert london["timezone"] == "Europe/London"
    assert london["buckets"][0]["start"] == "2026-03-01T00:00:00Z"  # London's midnight
    assert london["totals"]["energy_kwh"] == pytest.approx(0.5 * 144)
    assert _days(client, hq, keys["viewer"]) == london
