"""Tariffs and cost through the API, on real rows: a site's bill, cost series and summary.

The fixture month is the one ``libs/common/tests/test_tariffs.py`` computes by hand (May
2026 in Seoul, Children's Day, the January ratchet, the 30 % floor): here the same figures
come out of hourly_stats and quarter_hour_stats rows through the totals' counted-device rule,
with a sub-meter's rows beside them that must change nothing.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import TestClient
from pf_api_data import add_device, add_hour, add_site, bearer
from sqlalchemy import Engine, delete, insert

from powerflow_common.costs import cost_facts
from powerflow_common.db.models import TARIFF_COMPONENTS, TARIFFS, QuarterHourStat
from powerflow_common.queries import load_scope

pytestmark = pytest.mark.both_backends

Client = TestClient[Any]
SEOUL = ZoneInfo("Asia/Seoul")
OFF, MID, ON = "off_peak", "mid_peak", "on_peak"
SUMMER_HOURS = [OFF] * 9 + [MID] + [ON] * 2 + [MID] + [ON] * 4 + [MID] * 6 + [OFF]
WINTER_HOURS = [OFF] * 9 + [MID] + [ON] * 2 + [MID] * 5 + [ON] * 3 + [MID] * 2 + [ON] + [OFF]


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SEOUL).astimezone(UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@pytest.fixture
def tariff_name(engine: Engine) -> Iterator[str]:
    """A tariff and component set of this test's own, removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    with engine.begin() as conn:
        conn.execute(delete(TARIFFS).where(TARIFFS.c.name == name))
        conn.execute(delete(TARIFF_COMPONENTS).where(TARIFF_COMPONENTS.c.component_set == name))


def definition(component_set: str, lookback: int = 12) -> dict[str, Any]:
    return {
        "currency": "KRW",
        "seasons": [
            {
                "name": "summer",
                "months": [6, 7, 8],
                "hours": SUMMER_HOURS,
                "rates": {OFF: 90, MID: 140, ON: 250},
            },
            {
                "name": "spring_autumn",
                "months": [3, 4, 5, 9, 10],
                "hours": SUMMER_HOURS,
                "rates": {OFF: 80.3, MID: 100.0, ON: 120.5},
            },
            {
                "name": "winter",
                "months": [11, 12, 1, 2],
                "hours": WINTER_HOURS,
                "rates": {OFF: 100, MID: 150, ON: 200},
            },
        ],
        "days": {
            "saturday": {ON: MID},
            "sunday_band": OFF,
            "holiday_band": OFF,
            "holiday_country": "KR",
            "holiday_exclude": ["Alternative holiday", "Election Day", "Labor Day"],
        },
        "demand": {
            "charge_per_kw": 8000,
            "ratchet_months": [12, 1, 2, 7, 8, 9],
            "ratchet_lookback_months": lookback,
            "min_fraction_of_contract": 0.3,
            "excluded_bands": [OFF],
        },
        "component_set": component_set,
        "rounding": "kepco",
    }


def add_quarter(engine: Engine, device_id: int, quarter_start: datetime, kwh: float) -> None:
    hour_start = quarter_start.replace(minute=0)
    with engine.begin() as conn:
        conn.execute(
            insert(QuarterHourStat).values(
                device_id=device_id,
                quarter_start=quarter_start,
                hour_start=hour_start,
                samples=180,
                coverage=1.0,
                energy_kwh=kwh,
                export_kwh=0.0,
                unallocated_kwh=0.0,
                unallocated_export_kwh=0.0,
                co2_kg=0.0,
                computed_at=datetime.now(UTC),
            )
        )


# (local hour, kWh) of May 2026: the hand-computed month.
MAY_HOURS = [
    (local(2026, 5, 4, 10), 10.0),
    (local(2026, 5, 4, 9), 6.0),
    (local(2026, 5, 4, 3), 20.0),
    (local(2026, 5, 5, 10), 8.0),  # Children's Day
    (local(2026, 5, 9, 14), 5.0),  # Saturday
    (local(2026, 5, 10, 14), 3.0),  # Sunday
]
QUARTERS = [
    (local(2026, 5, 4, 10, 15), 30.0),  # 120 kW, May's own peak
    (local(2026, 5, 4, 3, 0), 50.0),  # off-peak
    (local(2026, 5, 5, 10, 0), 45.0),  # holiday
    (local(2026, 4, 15, 9, 30), 50.0),  # April: not a ratchet month
    (local(2026, 1, 14, 11, 0), 40.0),  # January 160 kW: sets the billed demand
    (local(2025, 8, 20, 14, 0), 35.0),  # August 2025 140 kW
    (local(2025, 2, 10, 11, 0), 100.0),  # out of the 12 months
]


def setup_site(
    client: Client, engine: Engine, keys: dict[str, str], name: str, lookback: int = 12
) -> int:
    admin, operator = bearer(keys["admin"]), bearer(keys["operator"])
    created = client.post(
        "/api/v1/tariffs",
        json={
            "name": name,
            "label": "fixture of KEPCO's structure",
            "valid_from": "2020-01-01",
            "source": "test fixture",
            "definition": definition(name, lookback),
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    for cname, kind, rate in [
        ("climate", "per_kwh", 9.0),
        ("fuel", "per_kwh", 5.0),
        ("fund", "percent_of_bill", 3.2),
        ("vat", "vat", 10.0),
    ]:
        made = client.post(
            "/api/v1/tariffs/components",
            json={
                "component_set": name,
                "name": cname,
                "kind": kind,
                "rate": rate,
                "valid_from": "2020-01-01",
                "source": "test fixture",
            },
            headers=admin,
        )
        assert made.status_code == 201, made.text
    site = add_site(engine, "Plant")
    main = add_device(
        engine, "main-1", last_seen=local(2026, 5, 1, 0), site_id=site, meter_role="main"
    )
    sub = add_device(
        engine, "sub-1", last_seen=local(2026, 5, 1, 0), site_id=site, meter_role="sub"
    )
    for hour, kwh in MAY_HOURS:
        add_hour(engine, main, hour, energy_kwh=kwh)
        add_hour(engine, sub, hour, energy_kwh=kwh * 7)  # downstream: counted nowhere
    for quarter, kwh in QUARTERS:
        add_quarter(engine, main, quarter, kwh)
        add_quarter(engine, sub, quarter + timedelta(minutes=15), kwh * 9)
    assigned = client.put(
        f"/api/v1/sites/{site}/tariff",
        json={"tariff_name": name, "contract_power_kw": 400, "valid_from": "2025-01-01"},
        headers=operator,
    )
    assert assigned.status_code == 200, assert_text(assigned)
    return site


def assert_text(response: Any) -> str:
    return str(response.text)


def test_bill_of_the_fixture_month_from_real_rows(
    client: Client, engine: Engine, keys: dict[str, str], tariff_name: str
) -> None:
    site = setup_site(client, engine, keys, tariff_name)
    viewer = bearer(keys["viewer"])
    response = client.get(
        f"/api/v1/cost/sites/{site}/bill",
        params={"month": "2026-05", "at": "2026-06-02T00:00:00Z"},
        headers=viewer,
    )
    assert response.status_code == 200, response.text
    bill = response.json()
    # The hand computation of test_tariffs.py: 160 kW (January) x 8,000 + 4,794 + 468 + 260.
    assert bill["complete"] is True
    assert bill["demand"]["kw"] == 160.0
    assert bill["demand"]["basis"] == "ratchet"
    assert bill["demand"]["evidence_month"] == "2026-01"
    assert bill["demand"]["evidence_quarter_start"] == "2026-01-14T02:00:00Z"
    assert bill["demand"]["current_month_peak_kw"] == 120.0
    assert bill["energy"]["kwh"] == 52.0
    assert bill["energy_charge"] == 4794
    assert bill["electricity_charge"] == 1_285_522
    assert (bill["fund"], bill["vat"], bill["total"]) == (41_130, 128_552, 1_455_200)

    # The 30 % floor: contract power 600 kW from May makes billed demand 180 kW.
    raised = client.put(
        f"/api/v1/sites/{site}/tariff",
        json={"tariff_name": tariff_name, "contract_power_kw": 600, "valid_from": "2026-05-01"},
        headers=bearer(keys["operator"]),
    )
    assert raised.status_code == 200, raised.text
    floor = client.get(
        f"/api/v1/cost/sites/{site}/bill",
        params={"month": "2026-05", "at": "2026-06-02T00:00:00Z"},
        headers=viewer,
    ).json()
    assert (floor["demand"]["kw"], floor["demand"]["basis"]) == (180.0, "contract_floor")
    assert floor["total"] == 1_636_320


def test_ratchet_look_back_over_12_months_reads_the_older_peaks(
    client: Client, engine: Engine, keys: dict[str, str], tariff_name: str
) -> None:
    # 16 months back from May 2026 reach February 2025 (a ratchet month): its 100 kWh
    # quarter is 400 kW, above January 2026's 160 kW. 400 x 8,000 = 3,200,000 demand charge.
    site = setup_site(client, engine, keys, tariff_name, lookback=16)
    bill = client.get(
        f"/api/v1/cost/sites/{site}/bill",
        params={"month": "2026-05", "at": "2026-06-02T00:00:00Z"},
        headers=bearer(keys["viewer"]),
    ).json()
    assert (bill["demand"]["kw"], bill["demand"]["evidence_month"]) == (400.0, "2025-02")
    assert bill["demand_charge"] == 3_200_000


def test_bill_as_of_an_instant_ignores_quarter_peaks_after_it(
    client: Client, engine: Engine, keys: dict[str, str], tariff_name: str
) -> None:
    # As of 10:15 local on 4 May, May's 120 kW quarter (10:15-10:30) has not happened; the
    # other May quarters before it are off-peak (03:00), so May has no peak of its own yet.
    site = setup_site(client, engine, keys, tariff_name)
    viewer = bearer(keys["viewer"])
    for path in ("bill", "forecast"):
        params = {"at": iso(local(2026, 5, 4, 10, 15))}
        if path == "bill":
            params["month"] = "2026-05"
        response = client.get(f"/api/v1/cost/sites/{site}/{path}", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        body = response.json()
        bill = body if path == "bill" else body["bill"]
        assert bill["demand"]["current_month_peak_kw"] is None, path
        assert (bill["demand"]["kw"], bill["demand"]["evidence_month"]) == (160.0, "2026-01")


def test_cost_kwh_are_the_statistics_kwh(
    client: Client, engine: Engine, keys: dict[str, str], tariff_name: str
) -> None:
    site = setup_site(client, engine, keys, tariff_name)
    viewer = bearer(keys["viewer"])
    params = {"period": "day", "start": iso(local(2026, 5, 1, 0)), "end": iso(local(2026, 6, 1, 0))}
    cost = client.get(f"/api/v1/cost/sites/{site}", params=params, headers=viewer)
    stats = client.get(f"/api/v1/stats/sites/{site}", params=params, headers=viewer)
    assert cost.status_code == 200, cost.text
    assert stats.status_code == 200, stats.text
    body, figures = cost.json(), stats.json()
    by_day = {b["start"]: b["energy_kwh"] for b in body["buckets"]}
    for bucket in figures["buckets"]:
        assert by_day[bucket["start"]] == pytest.approx(
            bucket["energy_kwh"] + bucket["unallocated_kwh"]
        )
    assert body["totals"]["kwh"] == pytest.approx(figures["totals"]["energy_kwh"]) == 52.0
    assert body["totals"]["energy"] == pytest.approx(4794.3)
    assert body["totals"]["kwh_by_band"] == {MID: 11.0, OFF: 31.0, ON: 10.0}
    assert body["currency"] == "KRW"

    # The statistics CSV of a site with a tariff carries each bucket's cost.
    exported = client.get(
        "/api/v1/stats/export",
        params={**params, "scope": "site", "ref": str(site)},
        headers=viewer,
    )
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    by_start = {r["start"]: r for r in rows}
    monday = by_start["2026-05-04T00:00:00+09:00"]
    assert monday["cost_currency"] == "KRW"
    # 10 x 120.5 + 6 x 100 + 20 x 80.3 = 3,411; add-ons 36 x 14 = 504; x 1.132 (fund + VAT).
    assert float(monday["cost_energy"]) == pytest.approx(3411.0)
    assert float(monday["cost_total"]) == pytest.approx((3411.0 + 504.0) * 1.132)
    assert sum(float(r["cost_energy"] or 0) for r in rows) == pytest.approx(4794.3)

    summary = client.get(
        f"/api/v1/cost/sites/{site}/summary",
        params={"at": iso(local(2026, 5, 4, 12))},
        headers=viewer,
    )
    assert summary.status_code == 200, summary.text
    s = summary.json()
    # Today (4 May) until noon: 20 off-peak + 6 mid-peak + 10 on-peak kWh.
    assert s["today"]["kwh"] == 36.0
    assert s["month_so_far"]["complete"] is False
    assert s["forecast"]["bill"]["total"] >= s["month_so_far"]["total"]
    forecast = client.get(
        f"/api/v1/cost/sites/{site}/forecast",
        params={"at": iso(local(2026, 5, 4, 12))},
        headers=viewer,
    )
    assert forecast.status_code == 200, forecast.text
    # The month's first three days had no readings, so each remaining hour gets the mean kWh
    # per hour so far: 36 kWh over the 84 hours since 1 May 00:00.
    f = forecast.json()
    remaining_hours = 27 * 24 + 12
    assert f["projected_kwh"] == pytest.approx(36.0 + remaining_hours * 36.0 / 84)
    assert f["bill"] == s["forecast"]["bill"]


def test_bad_cost_requests_are_4xx(
    client: Client, engine: Engine, keys: dict[str, str], tariff_name: str
) -> None:
    site = setup_site(client, engine, keys, tariff_name)
    bare = add_site(engine, "No tariff")
    bill, cost = f"/api/v1/cost/sites/{site}/bill", f"/api/v1/cost/sites/{site}"
    assign = f"/api/v1/sites/{site}/tariff"

    def put(name: str = tariff_name, kw: float = 1.0, valid_from: str = "2026-05-01") -> Any:
        return {"tariff_name": name, "contract_power_kw": kw, "valid_from": valid_from}

    def version(valid_from: str = "2021-01-01", **definition_change: Any) -> Any:
        return {
            "name": tariff_name,
            "label": "x",
            "valid_from": valid_from,
            "source": "s",
            "definition": {**definition(tariff_name), **definition_change},
        }

    long_hours = {"period": "hour", "start": "2026-01-01T00:00:00Z", "end": "2026-05-01T00:00:00Z"}
    cases: list[tuple[str, str, dict[str, Any], str, int]] = [
        ("GET", f"/api/v1/cost/sites/{bare}/bill", {"params": {"month": "2026-05"}}, "viewer", 404),
        ("GET", bill, {"params": {"month": "2026-13"}}, "viewer", 400),
        ("GET", bill, {"params": {"month": "0001-01"}}, "viewer", 400),
        ("GET", "/api/v1/cost/sites/999999/bill", {"params": {"month": "2026-05"}}, "viewer", 404),
        ("GET", cost, {"params": long_hours}, "viewer", 400),
        ("PUT", assign, {"json": put(valid_from="2026-05-02")}, "operator", 422),
        ("PUT", assign, {"json": put(name="no-such")}, "operator", 404),
        ("PUT", assign, {"json": put(kw=-1)}, "operator", 400),
        ("PUT", assign, {"json": put()}, "viewer", 403),
        ("POST", "/api/v1/tariffs", {"json": version(seasons=[])}, "admin", 422),
        ("POST", "/api/v1/tariffs", {"json": version(rounding="cents")}, "admin", 422),
        ("POST", "/api/v1/tariffs", {"json": version(valid_from="2020-01-01")}, "admin", 409),
        ("POST", "/api/v1/tariffs", {"json": version()}, "operator", 403),
        ("POST", "/api/v1/tariffs", {"json": version(currency="USD")}, "admin", 422),
    ]
    for method, path, kwargs, role, status in cases:
        response = client.request(method, path, headers=bearer(keys[role]), **kwargs)
        assert response.status_code == status, (method, path, response.text)
    refused = client.post(
        "/api/v1/tariffs", json=version(seasons=[]), headers=bearer(keys["admin"])
    ).json()
    assert refused["errors"] == [{"key": "bad_seasons", "message": refused["detail"]}]
    listed = client.get("/api/v1/tariffs", headers=bearer(keys["viewer"])).json()
    names = {t["name"] for t in listed}
    assert {"kepco-general-b-high-a-ii", "kepco-industrial-b-high-a-ii", tariff_name} <= names


def test_rates_and_charges_above_a_million_per_unit_are_refused_422(
    client: Client, keys: dict[str, str], tariff_name: str
) -> None:
    # 1e308 won/kWh passed "finite and >= 0"; a bill of it overflowed Decimal: a 500.
    base = definition(tariff_name)
    huge_rate = [{**base["seasons"][0], "rates": {OFF: 1e308, MID: 1, ON: 1}}, *base["seasons"][1:]]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"seasons": huge_rate}, "bad_rate"),
        ({"demand": {**base["demand"], "charge_per_kw": 1e300}}, "bad_demand_charge"),
        ({"fixed_per_day": 2e6}, "bad_fixed_charge"),
        ({"fixed_per_month": 1e300}, "bad_fixed_charge"),
    ]
    for change, reason in cases:
        body = {
            "name": tariff_name,
            "label": "x",
            "valid_from": "2021-01-01",
            "source": "s",
            "definition": {**base, **change},
        }
        response = client.post("/api/v1/tariffs", json=body, headers=bearer(keys["admin"]))
        assert response.status_code == 422, (reason, response.text)
        assert response.json()["errors"][0]["key"] == reason
    # The bound itself is allowed: 1,000,000 won/kWh.
    at_bound = [{**base["seasons"][0], "rates": {OFF: 1e6, MID: 1, ON: 1}}, *base["seasons"][1:]]
    body = {
        "name": tariff_name,
        "label": "x",
        "valid_from": "2021-01-01",
        "source": "s",
        "definition": {**base, "seasons": at_bound},
    }
    assert (
        client.post("/api/v1/tariffs", json=body, headers=bearer(keys["admin"])).status_code == 201
    )


def test_cost_facts_of_a_period_are_plain_numbers_for_the_report(
    client: Client, engine: Engine, keys: dict[str, str], tariff_name: str
) -> None:
    site = setup_site(client, engine, keys, tariff_name)
    with engine.connect() as conn:
        scope = load_scope(conn, "site", default_tz="Asia/Seoul", site_id=site)
        # April and May 2026: two whole months, two bills.
        facts = cost_facts(conn, scope, local(2026, 4, 1, 0), local(2026, 6, 1, 0))
    assert facts["currency"] == "KRW"
    assert facts["energy_kwh"] == 52.0
    assert facts["energy_cost"] == pytest.approx(4794.3)
    assert [b["month"] for b in facts["bills"]] == ["2026-04", "2026-05"]
    may = facts["bills"][1]
    assert (may["billed_demand_kw"], may["total"]) == (160.0, 1_455_200)
    # April: no hourly energy; its own 200 kW quarter (a Wednesday, mid-peak) beats January's
    # 160 kW: 200 x 8,000 = 1,600,000; fund 51,200; VAT 160,000.
    april = facts["bills"][0]
    assert (april["billed_demand_kw"], april["billed_demand_basis"]) == (200.0, "current_month")
    assert april["total"] == 1_600_000 + 51_200 + 160_000
    assert facts["bill_total"] == facts["bills"][0]["total"] + 1_455_200


def test_hours_before_a_tariffs_first_version_are_uncosted_and_said_so(
    client: Client, engine: Engine, keys: dict[str, str]
) -> None:
    # The seed KEPCO 일반용(을) table is valid from 2026-06-01; the site is on it from 2025.
    site = add_site(engine, "Early")
    main = add_device(
        engine, "m-early", last_seen=local(2026, 5, 1, 0), site_id=site, meter_role="main"
    )
    add_hour(engine, main, local(2026, 5, 20, 10), energy_kwh=4.0)  # before the first version
    add_hour(engine, main, local(2026, 6, 3, 10), energy_kwh=2.0)  # Wednesday, summer on-peak
    add_quarter(engine, main, local(2025, 8, 5, 14, 0), 100.0)  # 400 kW, August 2025
    viewer = bearer(keys["viewer"])
    assigned = client.put(
        f"/api/v1/sites/{site}/tariff",
        json={
            "tariff_name": "kepco-general-b-high-a-ii",
            "contract_power_kw": 500,
            "valid_from": "2025-01-01",
        },
        headers=bearer(keys["operator"]),
    )
    assert assigned.status_code == 200, assigned.text
    params = {
        "period": "month",
        "start": iso(local(2026, 5, 1, 0)),
        "end": iso(local(2026, 7, 1, 0)),
    }
    series = client.get(f"/api/v1/cost/sites/{site}", params=params, headers=viewer)
    assert series.status_code == 200, series.text
    body = series.json()
    assert body["uncosted_kwh"] == 4.0
    assert body["totals"]["kwh_by_band"] == {ON: 2.0}
    assert body["totals"]["energy"] == pytest.approx(2 * 222.3)  # 일반용(을) summer on-peak
    may = client.get(f"/api/v1/cost/sites/{site}/bill", params={"month": "2026-05"}, headers=viewer)
    assert may.status_code == 404, may.text
    assert "no version valid on 2026-05-01" in may.json()["detail"]
    # June's bill reads August 2025's peak (before the first version) for the ratchet.
    june = client.get(
        f"/api/v1/cost/sites/{site}/bill",
        params={"month": "2026-06", "at": "2026-07-02T00:00:00Z"},
        headers=viewer,
    )
    assert june.status_code == 200, june.text
    bill = june.json()
    assert (bill["demand"]["kw"], bill["demand"]["evidence_month"]) == (400.0, "2025-08")
    assert bill["demand_charge"] == 400 * 8320
    # Add-ons of June 2026: 9.0 + 5.0 won/kWh; fund 2.7 %; VAT 10 %.
    assert bill["addons"] == {"climate_environment": 18.0, "fuel_cost_adjustment": 10.0}
