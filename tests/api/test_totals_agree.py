"""One truth for every total: summary, statistics, CSV and report facts equal one hand computation.

The fixture, February 2026 (no daylight-saving change in Seoul or London that month):

- Three site-less devices: a main meter U1, a standalone plug U2, a sub-meter U3. Site-less
  devices are one pseudo-site under the site rule, so only U1 counts.
- Seoul (Asia/Seoul, UTC+9): main meter SM and sub-meter SS; only SM counts. A renewable
  contract of 20 kWh for 1-28 February (Seoul days), more than Seoul consumed.
- London (Europe/London, UTC+0 in February): standalone plug LP. A contract of 6.72 kWh for
  1-28 February (London days: 672 hours from 1 February 00:00 UTC).
- M, a standalone plug on London, moved to Seoul from 15 February 00:00 UTC by an operator
  through the API (``effective_from``). Its hours before stay London's (counted there, London
  has no main meter); from then on it is a plug behind Seoul's main meter (not counted).

Every hour's CO2 is its kWh x 0.478 kg/kWh (the ``original`` factor set).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import add_contract, add_device, add_hour, add_site, bearer
from sqlalchemy import Engine, select

from powerflow_common.db.models import DEVICE_SITES, EMISSION_FACTORS
from powerflow_common.settings import load_settings
from powerflow_reporter.facts import ReportScope, compute_facts, load_inputs

# Their SQL differs per engine (db.sqltime): run on SQLite and on MariaDB.
pytestmark = pytest.mark.both_backends

Client = TestClient[Any]
KG_PER_KWH = 0.478
WH = 0.0005  # kWh: half a watt-hour
GRAM = 0.0005  # kg: half a gram

# The statistics range: the Seoul month of February, 31 Jan 15:00 UTC to 28 Feb 15:00 UTC.
START = datetime(2026, 1, 31, 15, tzinfo=UTC)
END = datetime(2026, 2, 28, 15, tzinfo=UTC)
RANGE = {"start": START.isoformat(), "end": END.isoformat(), "period": "month"}
MOVED_AT = datetime(2026, 2, 15, 0, tzinfo=UTC)


def utc(day: int, hour: int) -> datetime:
    return datetime(2026, 2, day, hour, tzinfo=UTC)


# --- the hand computation ----------------------------------------------------------------------
# Unassigned: U1 1.5 + 0.5 (U2 0.7 and U3 0.2 do not count).
UNASSIGNED_KWH = 1.5 + 0.5  # 2.0
# Seoul: SM 5.0 + 3.0 (SS 2.0 does not count, nor M's 0.25 and 9.0 after its move).
SEOUL_KWH = 5.0 + 3.0  # 8.0
# London: LP 4.0 + 2.0, and M's 4.0 and 0.125 before its move.
LONDON_KWH = 4.0 + 2.0 + 4.0 + 0.125  # 10.125
TOTAL_KWH = UNASSIGNED_KWH + SEOUL_KWH + LONDON_KWH  # 20.125
TOTAL_KG = TOTAL_KWH * KG_PER_KWH  # 9.61975

# Contracts over the statistics range:
# Seoul's 20 kWh lie wholly inside it; they cover Seoul's 8 kWh, and the 12 left over cover
# nobody else's consumption.
SEOUL_CONTRACTED = 20.0
# London's contract runs 1 Feb 00:00 UTC to 1 Mar 00:00 UTC (672 h, London days); the range
# ends 28 Feb 15:00 UTC, so 672 - 9 = 663 h of it fall inside: 6.72 x 663 / 672 = 6.63 kWh.
LONDON_CONTRACTED = 6.72 * 663 / 672  # 6.63
LONDON_MARKET_KG = (LONDON_KWH - LONDON_CONTRACTED) * KG_PER_KWH  # 3.495 x 0.478 = 1.67061
UNASSIGNED_MARKET_KG = UNASSIGNED_KWH * KG_PER_KWH  # no contracts: 0.956
MARKET_KG = 0.0 + LONDON_MARKET_KG + UNASSIGNED_MARKET_KG  # 2.62661
CONTRACTED = SEOUL_CONTRACTED + LONDON_CONTRACTED  # 26.63

# The summary as of 28 Feb 23:00 in Seoul (14:00 UTC): this month is 31 Jan 15:00 UTC to
# 28 Feb 14:00 UTC. Seoul's contract: 671 of its 672 hours, 19.97 kWh, still more than 8.
# London's: 1 Feb 00:00 to 28 Feb 14:00 UTC is 662 h: 6.72 x 662 / 672 = 6.62 kWh.
AT = datetime(2026, 2, 28, 14, tzinfo=UTC)
AT_LONDON_MARKET_KG = (LONDON_KWH - 6.72 * 662 / 672) * KG_PER_KWH  # 3.505 x 0.478 = 1.67539
AT_MARKET_KG = AT_LONDON_MARKET_KG + UNASSIGNED_MARKET_KG  # 2.63139

# M asked for by itself counts every hour it has: 4.0 + 0.125 + 0.25 + 9.0.
M_KWH = 13.375


@pytest.fixture
def fixture(engine: Engine, client: Client, keys: dict[str, str]) -> dict[str, Any]:
    with engine.connect() as conn:
        factor = conn.execute(
            select(EMISSION_FACTORS.c.id).where(
                EMISSION_FACTORS.c.factor_set == "original", EMISSION_FACTORS.c.region == "KR"
            )
        ).scalar_one()
    seoul = add_site(engine, "Seoul", "Asia/Seoul")
    london = add_site(engine, "London", "Europe/London")
    seen = utc(1, 0)
    ids = {
        "U1": add_device(engine, "U1", last_seen=seen, meter_role="main"),
        "U2": add_device(engine, "U2", last_seen=seen, meter_role="standalone"),
        "U3": add_device(engine, "U3", last_seen=seen, meter_role="sub"),
        "SM": add_device(engine, "SM", last_seen=seen, site_id=seoul, meter_role="main"),
        "SS": add_device(engine, "SS", last_seen=seen, site_id=seoul, meter_role="sub"),
        "LP": add_device(engine, "LP", last_seen=seen, site_id=london, meter_role="standalone"),
        "M": add_device(engine, "M", last_seen=seen, site_id=london, meter_role="standalone"),
    }
    hours = [
        ("U1", utc(3, 3), 1.5),
        ("U1", utc(20, 3), 0.5),
        ("U2", utc(3, 3), 0.7),
        ("U3", utc(3, 3), 0.2),
        ("SM", utc(5, 3), 5.0),
        ("SM", utc(18, 3), 3.0),
        ("SS", utc(5, 3), 2.0),
        ("LP", utc(6, 12), 4.0),
        ("LP", utc(22, 12), 2.0),
        ("M", utc(10, 12), 4.0),
        ("M", utc(14, 23), 0.125),  # the last hour before the move: London's
        ("M", utc(15, 0), 0.25),  # the hour starting at the move: Seoul's
        ("M", utc(20, 12), 9.0),
    ]
    for code, hour, kwh in hours:
        add_hour(engine, ids[code], hour, energy_kwh=kwh, factor_id=factor, kg_per_kwh=KG_PER_KWH)
    add_contract(engine, seoul, date(2026, 2, 1), date(2026, 2, 28), 20.0)
    add_contract(engine, london, date(2026, 2, 1), date(2026, 2, 28), 6.72)
    moved = client.patch(
        "/api/v1/devices/M",
        json={"site_id": seoul, "effective_from": MOVED_AT.isoformat()},
        headers=bearer(keys["operator"]),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["site_id"] == seoul
    return {"seoul": seoul, "london": london, "ids": ids}


def close(actual: float, expected: float, tolerance: float) -> bool:
    return abs(actual - expected) < tolerance


def test_summary_statistics_csv_and_report_facts_equal_the_hand_computed_totals(
    engine: Engine, client: Client, keys: dict[str, str], fixture: dict[str, Any]
) -> None:
    viewer = bearer(keys["viewer"])
    london = fixture["london"]

    # The move left M's past on London: its history has two rows, the second from the move.
    with engine.connect() as conn:
        history = conn.execute(
            select(DEVICE_SITES.c.site_id, DEVICE_SITES.c.valid_from)
            .where(DEVICE_SITES.c.device_id == fixture["ids"]["M"])
            .order_by(DEVICE_SITES.c.valid_from)
        ).all()
    assert [(r.site_id, r.valid_from) for r in history][-1] == (fixture["seoul"], MOVED_AT)
    assert history[0].site_id == london

    # Which devices count now, as the dashboard's live total reads it from the API.
    listed = client.get("/api/v1/devices", headers=viewer).json()
    assert {d["code"] for d in listed if d["counted"]} == {"LP", "SM", "U1"}

    # Statistics of the organisation, each site and the moved device.
    org = client.get("/api/v1/stats/organisation", params=RANGE, headers=viewer).json()
    assert close(org["totals"]["energy_kwh"], TOTAL_KWH, WH)
    assert close(org["totals"]["co2_location_kg"], TOTAL_KG, GRAM)
    assert close(org["totals"]["co2_market_kg"], MARKET_KG, GRAM)
    assert close(org["totals"]["contracted_renewable_kwh"], CONTRACTED, WH)
    assert org["devices"] == ["LP", "M", "SM", "U1"]
    site = client.get(f"/api/v1/stats/sites/{london}", params=RANGE, headers=viewer).json()
    assert close(site["totals"]["energy_kwh"], LONDON_KWH, WH)
    assert close(site["totals"]["co2_market_kg"], LONDON_MARKET_KG, GRAM)
    seoul = client.get(
        f"/api/v1/stats/sites/{fixture['seoul']}", params=RANGE, headers=viewer
    ).json()
    assert close(seoul["totals"]["energy_kwh"], SEOUL_KWH, WH)
    assert close(seoul["totals"]["co2_location_kg"], SEOUL_KWH * KG_PER_KWH, GRAM)
    assert seoul["totals"]["co2_market_kg"] == 0.0
    device = client.get("/api/v1/stats/devices/M", params=RANGE, headers=viewer).json()
    assert close(device["totals"]["energy_kwh"], M_KWH, WH)
    assert device["totals"]["co2_market_kg"] == device["totals"]["co2_location_kg"]

    # The CSV export: one row for the month.
    for params, kwh, kg in (
        ({"scope": "organisation"}, TOTAL_KWH, MARKET_KG),
        ({"scope": "site", "ref": str(london)}, LONDON_KWH, LONDON_MARKET_KG),
    ):
        exported = client.get("/api/v1/stats/export", params={**RANGE, **params}, headers=viewer)
        assert exported.status_code == 200, exported.text
        (row,) = list(csv.DictReader(io.StringIO(exported.text)))
        assert close(float(row["energy_kwh"]), kwh, WH)
        assert close(float(row["co2_market_kg"]), kg, GRAM)

    # The dashboard summary as of 28 Feb 23:00 in Seoul.
    summary = client.get(
        "/api/v1/stats/summary", params={"at": AT.isoformat()}, headers=viewer
    ).json()
    month = summary["this_month"]["current"]
    assert close(month["energy_kwh"], TOTAL_KWH, WH)
    assert close(month["co2_location_kg"], TOTAL_KG, GRAM)
    assert close(month["co2_market_kg"], AT_MARKET_KG, GRAM)
    site_summary = client.get(
        "/api/v1/stats/summary", params={"at": AT.isoformat(), "site_id": london}, headers=viewer
    ).json()
    # London's month (London time) is 1 Feb 00:00 to 28 Feb 14:00 UTC: the same 662 hours.
    assert close(site_summary["this_month"]["current"]["energy_kwh"], LONDON_KWH, WH)
    assert close(site_summary["this_month"]["current"]["co2_market_kg"], AT_LONDON_MARKET_KG, GRAM)

    # The report facts, organisation and London, over the same range.
    with engine.connect() as conn:
        facts = compute_facts(
            load_inputs(
                conn,
                ReportScope("organisation"),
                START,
                END,
                default_tz="Asia/Seoul",
                settings=load_settings(),
            )
        )
        london_facts = compute_facts(
            load_inputs(
                conn,
                ReportScope("site", site_id=london),
                START,
                END,
                default_tz="Asia/Seoul",
                settings=load_settings(),
            )
        )
    assert close(facts.number("total_kwh") or 0.0, TOTAL_KWH, WH)
    assert close(facts.number("co2_location_kg") or 0.0, TOTAL_KG, GRAM)
    assert close(facts.number("co2_market_kg") or 0.0, MARKET_KG, GRAM)
    assert close(facts.number("contracted_renewable_kwh") or 0.0, CONTRACTED, WH)
    assert close(london_facts.number("total_kwh") or 0.0, LONDON_KWH, WH)
    assert close(london_facts.number("co2_market_kg") or 0.0, LONDON_MARKET_KG, GRAM)
    # London's counted device-hours: LP all 672 hours of the range, M the 345 hours from
    # 31 Jan 15:00 to 15 Feb 00:00 UTC (14 days 9 hours); 4 of those 1,017 hours have rows.
    assert london_facts.value("missing_device_hours") == 672 + 345 - 4
    counted = {row["code"] for row in facts.tables["by_device"] if row["counted"]}
    assert counted == {"LP", "M", "SM", "U1"}


def test_a_site_change_without_effective_from_is_not_retroactive(
    engine: Engine, client: Client, keys: dict[str, str], fixture: dict[str, Any]
) -> None:
    # LP moves to Seoul now: February stays London's.
    moved = client.patch(
        "/api/v1/devices/LP", json={"site_id": fixture["seoul"]}, headers=bearer(keys["operator"])
    )
    assert moved.status_code == 200, moved.text
    site = client.get(
        f"/api/v1/stats/sites/{fixture['london']}", params=RANGE, headers=bearer(keys["viewer"])
    ).json()
    assert close(site["totals"]["energy_kwh"], LONDON_KWH, WH)


def test_effective_from_in_the_future_or_without_a_change_is_refused(
    client: Client, keys: dict[str, str], fixture: dict[str, Any]
) -> None:
    operator = bearer(keys["operator"])
    future = client.patch(
        "/api/v1/devices/LP",
        json={"site_id": fixture["seoul"], "effective_from": "2199-01-01T00:00:00Z"},
        headers=operator,
    )
    assert future.status_code == 422
    assert "future" in future.json()["detail"]
    alone = client.patch(
        "/api/v1/devices/LP", json={"effective_from": "2026-02-01T00:00:00Z"}, headers=operator
    )
    assert alone.status_code == 422
    assert "site_id or meter_role" in alone.json()["detail"]
