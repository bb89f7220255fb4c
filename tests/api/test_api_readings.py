"""Readings: ranges, resolutions, the cursor rule, latest readings and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import add_device, add_hour, add_readings, add_site, bearer
from sqlalchemy import Engine

# Their SQL differs per engine (db.sqltime): run on SQLite and on MariaDB.
pytestmark = pytest.mark.both_backends

Client = TestClient[Any]


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _pages(client: Client, key: str, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    pages = []
    while True:
        response = client.get(url, params=params, headers=bearer(key))
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if page["next_cursor"] is None:
            return pages
        params = {**params, "cursor": page["next_cursor"]}


def test_paging_never_skips_or_repeats_rows_and_rows_arriving_between_pages_wait_for_a_new_query(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    device = add_device(engine, "1001", last_seen=now)
    start = now - timedelta(minutes=10)
    # Every other 5 s slot now; late rows will fill the gaps, before and after the cursor.
    early = [(start + timedelta(seconds=10 * i), float(i)) for i in range(20)]
    add_readings(engine, device, early, received_at=now - timedelta(minutes=1))
    url = "/api/v1/devices/1001/readings"
    params: dict[str, Any] = {
        "start": _iso(start),
        "end": _iso(now + timedelta(seconds=1)),
        "limit": 6,
    }
    first = client.get(url, params=params, headers=bearer(keys["viewer"])).json()
    assert len(first["items"]) == 6 and first["next_cursor"]

    late = [(start + timedelta(seconds=10 * i + 5), 1000.0 + i) for i in range(20)]
    add_readings(engine, device, late, received_at=datetime.now(UTC))

    rest = _pages(client, keys["viewer"], url, {**params, "cursor": first["next_cursor"]})
    seen = [p["ts"] for page in [first, *rest] for p in page["items"]]
    assert seen == [_iso(ts) for ts, _ in early]
    assert all(p["power_w"] < 1000 for page in rest for p in page["items"])
    fresh = _pages(client, keys["viewer"], url, {**params, "limit": 100})
    assert sum(len(p["items"]) for p in fresh) == 40


def test_raw_readings_over_a_long_range_are_refused_with_a_hint(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    add_device(engine, "1001", last_seen=now)
    response = client.get(
        "/api/v1/devices/1001/readings",
        params={"start": _iso(now - timedelta(days=30)), "end": _iso(now)},
        headers=bearer(keys["viewer"]),
    )
    assert response.status_code == 400
    assert "resolution=1m" in response.json()["detail"]
    assert response.headers["content-type"].startswith("application/problem+json")


def test_bad_query_parameters_are_400_not_500(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    add_device(engine, "1001", last_seen=now)
    url = "/api/v1/devices/1001/readings"
    headers = bearer(keys["viewer"])
    for params in (
        {"resolution": "2m"},
        {"start": "yesterday"},
        {"limit": 0},
        {"limit": 10**9},
        {"cursor": "%%%"},
        {"cursor": "eyJ4IjoxfQ"},
        {"start": _iso(now), "end": _iso(now - timedelta(hours=1))},
    ):
        response = client.get(url, params=params, headers=headers)
        assert response.status_code == 400, (params, response.text)


def test_one_minute_buckets_group_raw_readings(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    device = add_device(engine, "1001", last_seen=base)
    points = [(base + timedelta(seconds=5 * i), 100.0 + i) for i in range(24)]  # 2 minutes
    add_readings(engine, device, points, received_at=base)
    response = client.get(
        "/api/v1/devices/1001/readings",
        params={"start": _iso(base), "end": _iso(base + timedelta(hours=1)), "resolution": "1m"},
        headers=bearer(keys["viewer"]),
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["ts"] for i in items] == ["2026-03-01T12:00:00Z", "2026-03-01T12:01:00Z"]
    assert items[0]["samples"] == 12 and items[0]["power_avg_w"] == 105.5
    assert items[1]["power_max_w"] == 123.0


def test_hourly_and_daily_resolutions_read_hourly_stats_in_the_site_timezone(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    site = add_site(engine, timezone="Asia/Seoul")
    base = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)  # 22:00 in Seoul
    device = add_device(engine, "1001", last_seen=base, site_id=site)
    for h in range(4):  # 22:00, 23:00 on 1 March and 00:00, 01:00 on 2 March, Seoul time
        add_hour(engine, device, base + timedelta(hours=h), energy_kwh=1.0 + h)
    window = {"start": _iso(base - timedelta(days=1)), "end": _iso(base + timedelta(days=1))}
    hourly = client.get(
        "/api/v1/devices/1001/readings",
        params={**window, "resolution": "1h"},
        headers=bearer(keys["viewer"]),
    ).json()["items"]
    assert [i["energy_kwh"] for i in hourly] == [1.0, 2.0, 3.0, 4.0]
    daily = _pages(
        client,
        keys["viewer"],
        "/api/v1/devices/1001/readings",
        {**window, "resolution": "1d", "limit": 1},
    )
    days = [i for page in daily for i in page["items"]]
    assert [d["ts"] for d in days] == ["2026-02-28T15:00:00Z", "2026-03-01T15:00:00Z"]
    assert [d["energy_kwh"] for d in days] == [3.0, 7.0]


def test_latest_readings_per_device_and_for_one_device(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    device = add_device(engine, "1001", last_seen=now)
    add_readings(engine, device, [(now - timedelta(seconds=5), 1.0), (now, 2.0)], now)
    add_device(engine, "1002", last_seen=now)
    one = client.get("/api/v1/devices/1001/readings/latest", headers=bearer(keys["viewer"]))
    assert one.json()["reading"]["power_w"] == 2.0 and one.json()["online"] is True
    every = client.get("/api/v1/readings/latest", headers=bearer(keys["viewer"])).json()
    assert {r["device_code"]: r["reading"] is not None for r in every} == {
        "1001": True,
        "1002": False,
    }


def test_the_csv_export_streams_every_reading_of_the_range(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    device = add_device(engine, "1001", last_seen=now)
    start = now - timedelta(hours=20)
    add_readings(
        engine, device, [(start + timedelta(seconds=5 * i), i) for i in range(12_000)], now
    )
    response = client.get(
        "/api/v1/devices/1001/readings/export",
        params={"start": _iso(start), "end": _iso(now)},
        headers=bearer(keys["viewer"]),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 12_000
    assert rows[-1]["power_w"] == "11999.0" and rows[0]["ts"].startswith(start.date().isoformat())
