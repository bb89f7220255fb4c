"""Statistics from hourly_stats: site totals never double-count, calendars follow the timezone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import add_contract, add_device, add_factor, add_hour, add_site, bearer
from sqlalchemy import Engine

# Their SQL differs per engine (db.sqltime): run on SQLite and on MariaDB.
pytestmark = pytest.mark.both_backends

Client = TestClient[Any]
BASE = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)  # 22:00 in Seoul
WINDOW = {"start": "2026-02-28T00:00:00Z", "end": "2026-03-03T00:00:00Z"}


@pytest.fixture
def plant(engine: Engine) -> dict[str, Any]:
    """A Seoul site with a main meter and a sub-meter, a second site with a standalone plug."""
    factor = add_factor(engine, kg_per_kwh=0.5)
    hq = add_site(engine, "HQ", "Asia/Seoul")
    lab = add_site(engine, "Lab", "Asia/Seoul")
    main = add_device(engine, "main", last_seen=BASE, site_id=hq, meter_role="main")
    sub = add_device(engine, "sub", last_seen=BASE, site_id=hq, meter_role="sub")
    plug = add_device(engine, "plug", last_seen=BASE, site_id=lab, meter_role="standalone")
    for h in range(4):  # 22:00 and 23:00 on 1 March, 00:00 and 01:00 on 2 March (Seoul)
        hour = BASE + timedelta(hours=h)
        add_hour(engine, main, hour, energy_kwh=2.0, factor_id=factor, temperature_avg_c=20.0)
        add_hour(engine, sub, hour, energy_kwh=1.5, factor_id=factor, temperature_avg_c=24.0)
        add_hour(engine, plug, hour, energy_kwh=0.25, factor_id=factor)
    return {"hq": hq, "lab": lab, "factor": factor}


def test_site_statistics_per_local_day_count_the_main_meter_and_name_the_factor(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    response = client.get(
        f"/api/v1/stats/sites/{plant['hq']}",
        params={**WINDOW, "period": "day"},
        headers=bearer(keys["viewer"]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["devices"] == ["main"] and body["timezone"] == "Asia/Seoul"
    assert [b["start"] for b in body["buckets"]] == [
        "2026-03-01T00:00:00+09:00",
        "2026-03-02T00:00:00+09:00",
    ]
    assert [b["energy_kwh"] for b in body["buckets"]] == [4.0, 4.0]
    assert body["totals"]["co2_location_kg"] == pytest.approx(4.0)
    assert body["totals"]["co2_market_kg"] == pytest.approx(4.0)
    assert "equals location-based" in body["market_note"]
    assert [f["id"] for f in body["factors"]] == [plant["factor"]]
    assert body["factors"][0]["source"] == "test factor"
    # Environment averages cover every device of the site, sub-meters included.
    assert body["buckets"][0]["temperature_avg_c"] == pytest.approx(22.0)
    assert body["buckets"][0]["power_avg_w"] == pytest.approx(2000.0)


def test_the_organisation_adds_sites_and_a_device_stands_on_its_own(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    org = client.get(
        "/api/v1/stats/organisation",
        params={**WINDOW, "period": "month"},
        headers=bearer(keys["viewer"]),
    ).json()
    assert org["devices"] == ["main", "plug"]
    assert org["totals"]["energy_kwh"] == pytest.approx(9.0)
    sub = client.get(
        "/api/v1/stats/devices/sub",
        params={**WINDOW, "period": "hour"},
        headers=bearer(keys["viewer"]),
    ).json()
    assert [b["energy_kwh"] for b in sub["buckets"]] == [1.5] * 4
    assert sub["buckets"][0]["start"] == "2026-03-01T22:00:00+09:00"


def test_renewable_contracts_lower_market_based_co2(
    client: Client, engine: Engine, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    # 2.4 kWh contracted for 1 March (Seoul) covers 2.4 of that day's 4 kWh.
    add_contract(engine, plant["hq"], date(2026, 3, 1), date(2026, 3, 1), 2.4)
    body = client.get(
        f"/api/v1/stats/sites/{plant['hq']}",
        params={**WINDOW, "period": "day"},
        headers=bearer(keys["viewer"]),
    ).json()
    first, second = body["buckets"]
    assert first["co2_location_kg"] == pytest.approx(2.0)
    assert first["co2_market_kg"] == pytest.approx(0.8)
    assert second["co2_market_kg"] == pytest.approx(2.0)
    assert "contracted renewable" in body["market_note"]


def test_statistics_of_unknown_scopes_or_too_long_ranges_are_client_errors(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    headers = bearer(keys["viewer"])
    assert client.get("/api/v1/stats/sites/999", headers=headers).status_code == 404
    assert client.get("/api/v1/stats/devices/nope", headers=headers).status_code == 404
    too_long = client.get(
        "/api/v1/stats/organisation",
        params={"period": "hour", "start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        headers=headers,
    )
    assert too_long.status_code == 400 and "period" in too_long.json()["detail"]
    assert (
        client.get("/api/v1/stats/organisation?period=fortnight", headers=headers).status_code
        == 400
    )


def test_the_summary_compares_today_and_this_month_with_the_previous_period(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    site = add_site(engine, "HQ", "UTC")
    main = add_device(engine, "main", last_seen=now, site_id=site, meter_role="main")
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    add_hour(engine, main, this_hour, energy_kwh=2.0)
    add_hour(engine, main, this_hour - timedelta(days=1), energy_kwh=1.0)
    response = client.get(
        "/api/v1/stats/summary", params={"site_id": site}, headers=bearer(keys["viewer"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["today"]["current"]["energy_kwh"] == pytest.approx(2.0)
    assert body["today"]["previous"]["energy_kwh"] == pytest.approx(1.0)
    assert body["today"]["change_pct"] == pytest.approx(100.0)
    assert body["devices_total"] == 1 and body["devices_online"] == 1


def test_statistics_export_as_csv(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    response = client.get(
        "/api/v1/stats/export",
        params={**WINDOW, "scope": "site", "ref": plant["hq"], "period": "day"},
        headers=bearer(keys["viewer"]),
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [float(r["energy_kwh"]) for r in rows] == [4.0, 4.0]
    assert "test factor" in rows[0]["factors"]
    missing_ref = client.get(
        "/api/v1/stats/export", params={"scope": "site"}, headers=bearer(keys["viewer"])
    )
    assert missing_ref.status_code == 400


def test_hourly_and_daily_readings_have_a_range_limit_that_the_problem_states(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    add_device(engine, "1001", last_seen=BASE)
    headers = bearer(keys["viewer"])
    for resolution, start, end, limit in (
        ("1d", "1971-01-01T00:00:00Z", "2199-01-01T00:00:00Z", "3700 days"),
        ("1h", "2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "400 days"),
    ):
        response = client.get(
            "/api/v1/devices/1001/readings",
            params={"resolution": resolution, "start": start, "end": end},
            headers=headers,
        )
        assert response.status_code == 400, response.text
        assert limit in response.json()["detail"]
    ten_years = client.get(
        "/api/v1/devices/1001/readings",
        params={"resolution": "1d", "start": "2016-03-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
        headers=headers,
    )
    assert ten_years.status_code == 200, ten_years.text


def test_statistics_instants_and_site_ids_out_of_bounds_are_client_errors(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    headers = bearer(keys["viewer"])
    early = client.get(
        "/api/v1/stats/organisation",
        params={"period": "day", "start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"},
        headers=headers,
    )
    assert early.status_code == 400 and "1970-01-01" in early.json()["detail"]
    at = client.get("/api/v1/stats/summary", params={"at": "9999-12-31T23:00:00Z"}, headers=headers)
    assert at.status_code == 400 and "at: 9999" in at.json()["detail"]
    huge = client.get("/api/v1/stats/sites/2233205945456851156992", headers=headers)
    assert huge.status_code == 404
    exported = client.get(
        "/api/v1/stats/export",
        params={"scope": "site", "ref": "2233205945456851156992"},
        headers=headers,
    )
    assert exported.status_code == 404
