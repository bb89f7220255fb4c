"""The report's cost, savings against baseline and alerts, end to end against the database.

A site ("Plant", pf_baselines: a main meter whose daily kWh is a known function of the outdoor
temperature, 10 % lower from July) on a flat KRW tariff of this test's own, with a fitted
baseline and alerts raised in and around the report's month (July 2025, Seoul).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pf_api_data import add_device, add_site
from pf_baselines import BASELINE, make_plant
from pf_report_testing import GOOD_ANSWER, FakeAnthropic, message, wait_finished
from pypdf import PdfReader
from sqlalchemy import Engine, delete, func, insert, select

from powerflow_common.db.models import (
    ALERT_RULES,
    ALERTS,
    DEVICES,
    HOURLY_STATS,
    SITE_TARIFFS,
    TARIFF_COMPONENTS,
    TARIFFS,
)
from powerflow_common.report_requests import ReportRequest, insert_report, report_file
from powerflow_common.savings import DayRange, fit_site_baseline, mark_outdoor, site_savings
from powerflow_common.settings import Settings
from powerflow_reporter.facts import _site_cost
from powerflow_reporter.job import run_report

SEOUL = ZoneInfo("Asia/Seoul")
JULY = (date(2025, 7, 1), date(2025, 8, 1))  # the report's period (--to exclusive)
RATE_KRW_PER_KWH = 100.0
CLIMATE_KRW_PER_KWH = 9.0
FUND_PCT = 3.7
VAT_PCT = 10.0
DEMAND_KRW_PER_KW = 8000.0
CONTRACT_KW = 100.0  # no quarter-hour data: billed demand is the 30 % floor, 30 kW


@pytest.fixture
def tariff_name(engine: Engine) -> Iterator[str]:
    """A flat KRW tariff and its add-ons under a name of this test's own, removed afterwards."""
    name = f"flat-{uuid.uuid4().hex[:8]}"
    definition = {
        "currency": "KRW",
        "seasons": [
            {
                "name": "all",
                "months": list(range(1, 13)),
                "hours": ["flat"] * 24,
                "rates": {"flat": RATE_KRW_PER_KWH},
            }
        ],
        "demand": {"charge_per_kw": DEMAND_KRW_PER_KW, "min_fraction_of_contract": 0.3},
        "component_set": name,
        "rounding": "none",
    }
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(TARIFFS).values(
                name=name,
                label="Flat test tariff",
                valid_from=date(2020, 1, 1),
                valid_to=None,
                currency="KRW",
                definition=definition,
                source="test",
                created_at=now,
            )
        )
        for component, kind, rate in (
            ("climate", "per_kwh", CLIMATE_KRW_PER_KWH),
            ("fund", "percent_of_bill", FUND_PCT),
            ("vat", "vat", VAT_PCT),
        ):
            conn.execute(
                insert(TARIFF_COMPONENTS).values(
                    component_set=name,
                    name=component,
                    kind=kind,
                    rate=rate,
                    valid_from=date(2020, 1, 1),
                    valid_to=None,
                    source="test",
                )
            )
    yield name
    with engine.begin() as conn:
        conn.execute(delete(TARIFFS).where(TARIFFS.c.name == name))
        conn.execute(delete(TARIFF_COMPONENTS).where(TARIFF_COMPONENTS.c.component_set == name))


def _utc(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SEOUL).astimezone(UTC)


def _add_alert(
    engine: Engine, rule_id: int, subject: str, raised: datetime, cleared: datetime | None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ALERTS).values(
                rule_id=rule_id,
                kind=conn.execute(
                    select(ALERT_RULES.c.kind).where(ALERT_RULES.c.id == rule_id)
                ).scalar_one(),
                subject=subject,
                open_subject=None if cleared is not None else subject,
                raised_at=raised,
                evidence={},
                cleared_at=cleared,
            )
        )


def _add_rule(engine: Engine, name: str, kind: str, **scope: int) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        result = conn.execute(
            insert(ALERT_RULES).values(
                name=name,
                kind=kind,
                scope="device" if "device_id" in scope else "site",
                params={},
                enabled=True,
                created_at=now,
                updated_at=now,
                **scope,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


@pytest.fixture
def plant(engine: Engine, tariff_name: str, report_settings: Callable[..., Settings]) -> Any:
    """The Plant on the tariff, with a baseline fitted on its first 120 days and alerts."""
    settings = report_settings(anthropic_api_key=None)
    made = make_plant(engine)
    site = made["site"]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        mark_outdoor(conn, "yard-1", outdoor=True, by="test")
        conn.execute(
            insert(SITE_TARIFFS).values(
                site_id=site,
                tariff_name=tariff_name,
                contract_power_kw=CONTRACT_KW,
                valid_from=date(2025, 1, 1),
                recorded_at=now,
                recorded_by="test",
            )
        )
    first, days = BASELINE
    baseline = fit_site_baseline(
        engine, settings, site, DayRange(first, first + timedelta(days=days - 1))
    )
    with engine.connect() as conn:
        meter = conn.execute(select(DEVICES.c.id).where(DEVICES.c.code == "meter-1")).scalar_one()
    # Another site with a device of its own: its alert is no alert of the Plant's.
    other_site = add_site(engine, "Elsewhere", "Asia/Seoul")
    other = add_device(
        engine, "other-1", last_seen=datetime(2025, 3, 1, tzinfo=UTC), site_id=other_site
    )
    silent = _add_rule(engine, "Meter silent", "silence", device_id=meter)
    above = _add_rule(engine, "Meter above 20 kW", "power_above", device_id=meter)
    daily = _add_rule(engine, "Plant day above baseline", "daily_kwh_above", site_id=site)
    elsewhere = _add_rule(engine, "Other silent", "silence", device_id=other)
    # In July: silence raised and cleared; power above raised and open at the month's end.
    _add_alert(
        engine, silent, f"device:{meter}", _utc(date(2025, 7, 10), 3), _utc(date(2025, 7, 10), 5)
    )
    _add_alert(engine, above, f"device:{meter}", _utc(date(2025, 7, 20), 14), None)
    # Raised in June, cleared on 2 July: active in the period, cleared by its end.
    _add_alert(engine, daily, f"site:{site}", _utc(date(2025, 6, 30), 1), _utc(date(2025, 7, 2), 1))
    # Raised and cleared in June; and another site's: neither is the July report's.
    _add_alert(engine, daily, f"site:{site}", _utc(date(2025, 6, 1), 1), _utc(date(2025, 6, 2), 1))
    _add_alert(engine, elsewhere, f"device:{other}", _utc(date(2025, 7, 5), 1), None)
    return {
        "site": site,
        "settings": settings,
        "baseline": baseline,
        "meter": meter,
        "elsewhere": other_site,
    }


def _report(engine: Engine, settings: Settings, site: int, language: str) -> dict[str, Any]:
    request = ReportRequest(
        period_start=JULY[0], period_end=JULY[1], scope="site", site_id=site, language=language
    )
    report_id, _ = insert_report(engine, settings, request)
    run_report(engine, settings, report_id)
    view = wait_finished(engine, settings, report_id, timeout_s=1)
    assert view.status == "done", view.error
    out: dict[str, Any] = {"id": report_id, "view": view}
    for kind in ("facts", "html", "markdown"):
        found = report_file(settings, report_id, kind)
        assert found is not None, kind
        out[kind] = found[0].read_text()
    out["values"] = json.loads(out["facts"])["values"]
    pdf = report_file(settings, report_id, "pdf")
    if pdf is not None:
        out["pdf"] = "\n".join(page.extract_text() for page in PdfReader(pdf[0]).pages)
    return out


def _july_kwh(engine: Engine, meter: int) -> float:
    """The meter's kWh in July (Seoul) straight from hourly_stats: the hand computation's input."""
    start, end = _utc(JULY[0]), _utc(JULY[1])
    s = HOURLY_STATS.c
    with engine.connect() as conn:
        total = conn.execute(
            select(func.sum(s.energy_kwh + s.unallocated_kwh)).where(
                s.device_id == meter, s.hour_start >= start, s.hour_start < end
            )
        ).scalar_one()
    return float(total)


@pytest.mark.both_backends  # reads and writes the database: on both engines
def test_a_site_report_states_cost_savings_and_alerts_as_facts_in_english_and_korean(
    engine: Engine, plant: dict[str, Any]
) -> None:
    settings, site = plant["settings"], plant["site"]
    en = _report(engine, settings.model_copy(update={"report_pdf_enabled": True}), site, "en")
    ko = _report(engine, settings, site, "ko")
    v = en["values"]

    # Cost, by hand: July's kWh at 100 KRW plus 9 KRW climate charge, fund 3.7 % and VAT 10 %
    # of that; the bill adds the demand charge of the 30 % floor (30 kW x 8,000 KRW).
    kwh = _july_kwh(engine, plant["meter"])
    subtotal = kwh * (RATE_KRW_PER_KWH + CLIMATE_KRW_PER_KWH)
    assert v["cost1_currency"]["value"] == "KRW"
    assert math.isclose(v["cost1_kwh"]["value"], kwh, rel_tol=1e-9)
    assert math.isclose(v["cost1_energy_charge"]["value"], kwh * RATE_KRW_PER_KWH, rel_tol=1e-9)
    assert math.isclose(v["cost1_addons"]["value"], kwh * CLIMATE_KRW_PER_KWH, rel_tol=1e-9)
    assert math.isclose(v["cost1_fund"]["value"], subtotal * FUND_PCT / 100, rel_tol=1e-9)
    assert math.isclose(v["cost1_vat"]["value"], subtotal * VAT_PCT / 100, rel_tol=1e-9)
    assert math.isclose(
        v["cost1_energy_related_total"]["value"], subtotal * (1 + (FUND_PCT + VAT_PCT) / 100),
        rel_tol=1e-9,
    )  # fmt: skip
    electricity = 30 * DEMAND_KRW_PER_KW + subtotal
    assert v["cost1_bill_months"]["value"] == 1
    assert v["cost1_bill_demand_charge"]["value"] == 30 * DEMAND_KRW_PER_KW
    assert math.isclose(
        v["cost1_bill_total"]["value"], electricity * (1 + (FUND_PCT + VAT_PCT) / 100),
        rel_tol=1e-9,
    )  # fmt: skip
    assert v["cost2_currency"]["value"] is None
    assert v["cost_untariffed_site_count"]["value"] == 0

    # Savings: the facts are powerflow_common.savings' own numbers, and the known 10 % lies
    # within the stated band.
    with engine.connect() as conn:
        expected = site_savings(conn, settings, site, DayRange.from_exclusive(*JULY)).savings
    assert v["baseline1_id"]["value"] == plant["baseline"].id
    assert v["baseline1_days"]["value"] == 31
    assert math.isclose(v["baseline1_savings_kwh"]["value"], expected.savings_kwh, rel_tol=1e-9)
    assert math.isclose(v["baseline1_savings_pct"]["value"], expected.savings_pct, rel_tol=1e-9)
    assert v["baseline1_confidence_pct"]["value"] == pytest.approx(90.0)
    low = v["baseline1_savings_pct"]["value"] - v["baseline1_uncertainty_pct"]["value"]
    high = v["baseline1_savings_pct"]["value"] + v["baseline1_uncertainty_pct"]["value"]
    assert low <= 10.0 <= high
    assert v["baseline1_cv_rmse_pct"]["value"] == pytest.approx(
        plant["baseline"].model.stats.cv_rmse_pct
    )

    # Alerts: three were active in July (one from June cleared on 2 July); the other site's
    # and June's are not the Plant's July.
    assert v["alerts_count"]["value"] == 3
    assert v["alerts_open_count"]["value"] == 1
    assert v["alerts_cleared_count"]["value"] == 2
    assert v["alerts_silence_count"]["value"] == 1
    assert v["alerts_power_above_count"]["value"] == 1
    assert v["alerts_daily_kwh_above_count"]["value"] == 1
    assert v["alert1_kind"]["value"] == "power_above"
    assert v["alert1_status"]["value"] == "open"
    assert v["alert1_raised_at"]["value"] == "2025-07-20 14:00"
    assert v["alert2_subject"]["value"] == "meter-1"  # then the latest raised: silence
    assert v["alert3_subject"]["value"] == "Plant"

    # The sections, with the figures as the facts print them, in both languages.
    for report, heading, words in (
        (en, "Cost", "came to"),
        (ko, "전기 요금", "전력량 관련 요금은"),
    ):
        values = report["values"]
        md = report["markdown"]
        section = md.split(f"## {heading}\n")[1].split("\n## ")[0]
        assert words in section
        assert values["cost1_energy_related_total"]["display"] in section
        assert values["cost1_bill_total"]["display"] in section
        assert values["baseline1_savings_pct"]["display"] in md
        assert values["baseline1_uncertainty_pct"]["display"] in md
        assert values["alerts_count"]["display"] in md
        assert "{{" not in md and "{{" not in report["html"]
        assert values["cost1_bill_total"]["display"] in report["html"]
    # The PDF (from the HTML) states them too.
    pdf = en["pdf"]
    for fact_id in ("cost1_bill_total", "baseline1_savings_kwh", "baseline1_uncertainty_kwh"):
        assert v[fact_id]["display"] in pdf, fact_id
    assert "Bills of whole months" in pdf and "Meter above 20 kW" in pdf
    assert "Savings against baseline" in en["html"] and "기준선 대비 절감량" in ko["html"]
    assert "Alerts" in en["markdown"] and "경보" in ko["markdown"]


@pytest.mark.both_backends  # reads and writes the database: on both engines
def test_a_narrative_citing_a_cost_not_in_the_facts_is_refused(
    engine: Engine,
    plant: dict[str, Any],
    report_settings: Callable[..., Settings],
    fake_claude: FakeAnthropic,
) -> None:
    settings = report_settings()
    made_up = {
        **GOOD_ANSWER,
        "emissions": "Location-based emissions were {{co2_location_t}}.",  # no year of 2026
        "electricity_cost": "The July bill was 1,234,567 KRW, {{cost1_currency}}.",
    }
    fake_claude.queue(message(made_up), message(made_up))

    report = _report(engine, settings, plant["site"], "en")

    grounding = report["view"].grounding
    assert grounding["passed"] is False
    assert grounding["fallback_sections"] == ["electricity_cost"]
    retry_prompt = fake_claude.requests[1]["messages"][-1]["content"]
    assert "1,234,567" in retry_prompt
    assert "1,234,567" not in report["html"] and "1,234,567" not in report["markdown"]
    # The template's sentence stands instead, with the facts' own figure.
    assert report["values"]["cost1_energy_related_total"]["display"] in report["markdown"]


@pytest.fixture
def london(engine: Engine) -> Iterator[dict[str, Any]]:
    """Site London on a flat GBP tariff of this test's own, 24 kWh used on 15 July 2025."""
    name = f"gbp-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    site = add_site(engine, "London", "Europe/London")
    meter = add_device(
        engine, "lon-1", last_seen=datetime(2025, 3, 1, tzinfo=UTC), site_id=site,
        meter_role="main",
    )  # fmt: skip
    definition = {
        "currency": "GBP",
        "seasons": [
            {"name": "all", "months": list(range(1, 13)), "hours": ["flat"] * 24,
             "rates": {"flat": 0.25}},
        ],
    }  # fmt: skip
    start = datetime(2025, 7, 15, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(TARIFFS).values(
                name=name, label="Flat GBP", valid_from=date(2020, 1, 1), valid_to=None,
                currency="GBP", definition=definition, source="test", created_at=now,
            )
        )  # fmt: skip
        conn.execute(
            insert(SITE_TARIFFS).values(
                site_id=site, tariff_name=name, contract_power_kw=10.0,
                valid_from=date(2025, 1, 1), recorded_at=now, recorded_by="test",
            )
        )  # fmt: skip
        conn.execute(
            insert(HOURLY_STATS),
            [
                {"device_id": meter, "hour_start": start + timedelta(hours=h), "samples": 720,
                 "coverage": 1.0, "energy_kwh": 1.0, "computed_at": now}
                for h in range(24)
            ],
        )  # fmt: skip
    yield {"site": site, "tariff": name}
    with engine.begin() as conn:
        conn.execute(delete(TARIFFS).where(TARIFFS.c.name == name))


@pytest.mark.both_backends  # reads and writes the database: on both engines
def test_an_organisation_report_costs_per_currency_and_lists_savings_per_site(
    engine: Engine, plant: dict[str, Any], london: dict[str, Any]
) -> None:
    settings = plant["settings"]
    with engine.begin() as conn:  # Elsewhere goes on the GBP tariff only from September
        conn.execute(
            insert(SITE_TARIFFS).values(
                site_id=plant["elsewhere"], tariff_name=london["tariff"], contract_power_kw=1.0,
                valid_from=date(2025, 9, 1), recorded_at=datetime.now(UTC), recorded_by="test",
            )
        )  # fmt: skip
    request = ReportRequest(
        period_start=JULY[0], period_end=JULY[1], scope="organisation", language="en"
    )
    report_id, _ = insert_report(engine, settings, request)
    run_report(engine, settings, report_id)
    view = wait_finished(engine, settings, report_id, timeout_s=1)
    assert view.status == "done", view.error
    found = report_file(settings, report_id, "facts")
    assert found is not None
    data = json.loads(found[0].read_text())
    v, tables = data["values"], data["tables"]

    # GBP and KRW apart, by code: London's 24 kWh at 0.25 GBP, and the Plant's KRW as above.
    assert v["cost_currency_count"]["value"] == 2
    assert v["cost1_currency"]["value"] == "GBP"
    assert v["cost1_energy_related_total"]["value"] == pytest.approx(6.0)
    # London's July (London time) is not wholly inside Seoul's July: no bill.
    assert v["cost1_bill_months"]["value"] == 0 and v["cost1_bill_total"]["value"] is None
    assert v["cost2_currency"]["value"] == "KRW"
    assert v["cost2_kwh"]["value"] == pytest.approx(_july_kwh(engine, plant["meter"]))
    assert v["cost2_bill_months"]["value"] == 1
    assert v["cost_untariffed_sites"]["value"] == "Elsewhere"
    by_site = {row["site"]: row for row in tables["cost_by_site"]}
    assert by_site["Elsewhere"]["reason"] == "its tariff starts on 2025-09-01, after the period"
    assert by_site["London"]["reason"] is None
    # Savings per site: the Plant's, and the two sites without a baseline named.
    assert v["baseline_site_count"]["value"] == 1
    assert v["baseline1_site"]["value"] == "Plant"
    assert v["baseline_missing_sites"]["value"] == "Elsewhere, London"
    # Every site's alerts: the Plant's three and the other site's device's.
    assert v["alerts_count"]["value"] == 4
    assert v["alerts_open_count"]["value"] == 2


@pytest.mark.both_backends  # reads and writes the database: on both engines
def test_a_tariff_version_ending_mid_month_leaves_that_month_unbilled_not_the_report_failed(
    engine: Engine,
) -> None:
    # The only version ends on 16 July 2025 (Seoul): 1-15 July is costed, 16-31 July is not,
    # like site_cost's hours without a version; July has no whole-month bill.
    name = f"cut-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    site = add_site(engine, "Cut", "Asia/Seoul")
    meter = add_device(
        engine, "cut-1", last_seen=datetime(2025, 3, 1, tzinfo=UTC), site_id=site,
        meter_role="main",
    )  # fmt: skip
    definition = {
        "currency": "KRW",
        "seasons": [
            {"name": "all", "months": list(range(1, 13)), "hours": ["flat"] * 24,
             "rates": {"flat": 100.0}},
        ],
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            insert(TARIFFS).values(
                name=name, label="Ends mid-July", valid_from=date(2020, 1, 1),
                valid_to=date(2025, 7, 16), currency="KRW", definition=definition,
                source="test", created_at=now,
            )
        )  # fmt: skip
        conn.execute(
            insert(SITE_TARIFFS).values(
                site_id=site, tariff_name=name, contract_power_kw=10.0,
                valid_from=date(2025, 1, 1), recorded_at=now, recorded_by="test",
            )
        )  # fmt: skip
        conn.execute(
            insert(HOURLY_STATS),
            [
                {"device_id": meter, "hour_start": _utc(day) + timedelta(hours=h),
                 "samples": 720, "coverage": 1.0, "energy_kwh": 1.0, "computed_at": now}
                for day in (date(2025, 7, 10), date(2025, 7, 20))
                for h in range(24)
            ],
        )  # fmt: skip
    try:
        with engine.connect() as conn:
            cost = _site_cost(conn, site, "Cut", _utc(JULY[0]), _utc(JULY[1]), "Asia/Seoul")
        # 10 July: 24 kWh x 100 KRW = 2,400 KRW; 20 July: 24 kWh uncosted; no July bill.
        assert (cost.currency, cost.kwh, cost.uncosted_kwh) == ("KRW", 24.0, 24.0)
        assert cost.energy_related_total == pytest.approx(2400.0)
        assert cost.bills == ()
    finally:
        with engine.begin() as conn:
            conn.execute(delete(SITE_TARIFFS).where(SITE_TARIFFS.c.site_id == site))
            conn.execute(delete(TARIFFS).where(TARIFFS.c.name == name))


@pytest.mark.both_backends  # reads and writes the database: on both engines
def test_a_site_whose_period_mixes_currencies_keeps_its_kwh_as_uncosted(
    engine: Engine,
) -> None:
    # KRW in July, GBP from August (site_cost refuses the mix): 48 kWh in July-August, none
    # costed; before, the site reported 0 uncosted kWh and its kWh vanished from the report.
    names = [f"mix-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    now = datetime.now(UTC)
    site = add_site(engine, "Mixed", "Asia/Seoul")
    meter = add_device(
        engine, "mix-1", last_seen=datetime(2025, 3, 1, tzinfo=UTC), site_id=site,
        meter_role="main",
    )  # fmt: skip
    with engine.begin() as conn:
        for name, currency, valid_from in zip(
            names, ("KRW", "GBP"), (date(2025, 1, 1), date(2025, 8, 1)), strict=True
        ):
            definition = {
                "currency": currency,
                "seasons": [
                    {"name": "all", "months": list(range(1, 13)), "hours": ["flat"] * 24,
                     "rates": {"flat": 1.0}},
                ],
            }  # fmt: skip
            conn.execute(
                insert(TARIFFS).values(
                    name=name, label=currency, valid_from=date(2020, 1, 1), valid_to=None,
                    currency=currency, definition=definition, source="test", created_at=now,
                )
            )  # fmt: skip
            conn.execute(
                insert(SITE_TARIFFS).values(
                    site_id=site, tariff_name=name, contract_power_kw=10.0,
                    valid_from=valid_from, recorded_at=now, recorded_by="test",
                )
            )  # fmt: skip
        conn.execute(
            insert(HOURLY_STATS),
            [
                {"device_id": meter, "hour_start": _utc(day) + timedelta(hours=h),
                 "samples": 720, "coverage": 1.0, "energy_kwh": 1.0, "computed_at": now}
                for day in (date(2025, 7, 5), date(2025, 8, 20))
                for h in range(24)
            ],
        )  # fmt: skip
    try:
        with engine.connect() as conn:
            cost = _site_cost(
                conn, site, "Mixed", _utc(JULY[0]), _utc(date(2025, 9, 1)), "Asia/Seoul"
            )
        assert cost.currency is None and "mixes currencies" in (cost.reason or "")
        assert cost.uncosted_kwh == 48.0  # 2 days x 24 h x 1 kWh
    finally:
        with engine.begin() as conn:
            conn.execute(delete(SITE_TARIFFS).where(SITE_TARIFFS.c.site_id == site))
            conn.execute(delete(TARIFFS).where(TARIFFS.c.name.in_(names)))
