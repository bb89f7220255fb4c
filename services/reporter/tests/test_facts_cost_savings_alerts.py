"""The cost, savings-against-baseline and alert steps alone, on inputs computed by hand (pure)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from pf_report_facts import known_inputs

from powerflow_reporter.facts import (
    AlertRow,
    CostBill,
    SiteBaselineSavings,
    SiteCost,
    alert_facts,
    baseline_facts,
    compute_facts,
    cost_facts,
)
from powerflow_reporter.formatting import facts_json
from powerflow_reporter.grounding import find_offences
from powerflow_reporter.narrative import narrative_offences, template_narrative
from powerflow_reporter.sections import allowed_in

SEOUL = ZoneInfo("Asia/Seoul")


def _bill(month: str, demand: float, total: float) -> CostBill:
    return CostBill(month, "flat", 30.0, demand, 0.0, 0.0, 0.0, 0.0, 0.0, total)


SEOUL_HQ = SiteCost(
    1, "Seoul HQ", "KRW", kwh=1000.0, energy_charge=100_000.0, addons=9_000.0,
    fund=4_033.0, vat=10_900.0, energy_related_total=123_933.0, uncosted_kwh=0.0,
    bills=(_bill("2026-03", 240_000.0, 400_000.0),),
)  # fmt: skip
BUSAN = SiteCost(
    2, "Busan", "KRW", kwh=500.0, energy_charge=50_000.0, addons=4_500.0,
    fund=2_016.5, vat=5_450.0, energy_related_total=61_966.5, uncosted_kwh=20.0,
)  # fmt: skip
LONDON = SiteCost(
    3, "London", "GBP", kwh=200.0, energy_charge=60.0, addons=0.0, fund=0.0, vat=3.0,
    energy_related_total=63.0, bills=(_bill("2026-03", 0.0, 75.5),),
)  # fmt: skip
DEPOT = SiteCost(4, "Depot", None, uncosted_kwh=80.0, reason="no tariff assigned")


def test_cost_is_summed_per_currency_never_across_and_sites_without_a_tariff_are_named() -> None:
    facts = cost_facts([SEOUL_HQ, LONDON, DEPOT, BUSAN])

    # Currencies by code: GBP first, then KRW (Seoul HQ + Busan).
    assert facts.value("cost_currency_count") == 2
    assert facts.value("cost1_currency") == "GBP"
    assert facts.value("cost1_energy_related_total") == 63.0
    assert facts.value("cost1_bill_total") == 75.5
    assert facts.value("cost2_currency") == "KRW"
    assert facts.value("cost2_site_count") == 2
    assert facts.value("cost2_kwh") == 1500.0
    assert facts.value("cost2_energy_charge") == 150_000.0
    assert facts.value("cost2_addons") == 13_500.0
    assert facts.value("cost2_fund") == 6_049.5
    assert facts.value("cost2_vat") == 16_350.0
    assert facts.value("cost2_energy_related_total") == 185_899.5
    # Busan's March is not whole in the period: one bill, Seoul HQ's.
    assert facts.value("cost2_bill_months") == 1
    assert facts.value("cost2_bill_demand_charge") == 240_000.0
    assert facts.value("cost2_bill_total") == 400_000.0
    assert facts.value("cost3_currency") is None and facts.value("cost3_vat") is None
    # The depot adds no number, only its name; its kWh are uncosted, with Busan's 20.
    assert facts.value("cost_untariffed_site_count") == 1
    assert facts.value("cost_untariffed_sites") == "Depot"
    assert facts.value("cost_uncosted_kwh") == 100.0
    # The sentence on sites without a tariff states the depot's own 80 kWh, not Busan's 20.
    assert facts.value("cost_untariffed_kwh") == 80.0
    assert [r["site"] for r in facts.tables["cost_by_site"]] == [
        "Busan", "Depot", "London", "Seoul HQ",
    ]  # fmt: skip
    assert facts.tables["cost_by_site"][1]["energy_related_total"] is None


def test_without_any_site_cost_facts_are_unknown_not_zero() -> None:
    facts = cost_facts([])
    assert facts.value("cost_currency_count") is None
    assert facts.value("cost1_energy_related_total") is None
    assert facts.value("cost_untariffed_sites") is None
    assert facts.value("cost_untariffed_kwh") is None


@given(
    st.lists(
        st.tuples(st.sampled_from(["KRW", "GBP", "USD", None]), st.floats(0, 1e9)),
        max_size=8,
    )
)
def test_each_currencys_total_is_the_sum_of_its_own_sites_only(
    sites: list[tuple[str | None, float]],
) -> None:
    costs = [
        SiteCost(i, f"s{i}", cur, energy_related_total=amount if cur else 0.0)
        for i, (cur, amount) in enumerate(sites)
    ]
    facts = cost_facts(costs)
    for n in range(1, 4):
        currency = facts.value(f"cost{n}_currency")
        if currency is None:
            continue
        mine = [c.energy_related_total for c in costs if c.currency == currency]
        assert facts.value(f"cost{n}_energy_related_total") == math.fsum(mine)


PLANT = SiteBaselineSavings(
    7, "Plant", baseline_id=3, model="5p", baseline_first=date(2025, 3, 1),
    baseline_last=date(2025, 6, 28), cv_rmse_pct=2.1, nmbe_pct=0.0, days=31,
    savings_kwh=1054.0, savings_pct=9.9, uncertainty_kwh=86.6, uncertainty_pct=0.8,
    confidence=0.9,
)  # fmt: skip


def test_savings_are_stated_per_site_with_their_uncertainty_and_missing_sites_named() -> None:
    office = SiteBaselineSavings(2, "Office", reason="Site 2 has no baseline yet: fit one first.")
    facts = baseline_facts([PLANT, office])

    assert facts.value("baseline_site_count") == 1
    assert facts.value("baseline1_site") == "Plant"
    assert facts.value("baseline1_id") == 3
    assert facts.value("baseline1_period_start") == "2025-03-01"
    assert facts.value("baseline1_savings_pct") == 9.9
    assert facts.value("baseline1_uncertainty_pct") == 0.8
    assert facts.value("baseline1_confidence_pct") == 90.0
    assert facts.values["baseline1_savings_pct"].kind == "pct_change"  # a rise is negative
    assert facts.value("baseline2_site") is None
    assert facts.value("baseline_missing_site_count") == 1
    assert facts.value("baseline_missing_sites") == "Office"
    assert facts.tables["baseline_savings"][1]["reason"].startswith("Site 2 has no baseline")


def test_alerts_are_counted_by_kind_and_state_at_the_periods_end_open_ones_first() -> None:
    end = datetime(2026, 4, 1, tzinfo=UTC)
    alerts = [
        AlertRow(1, "silence", "r", "Main", datetime(2026, 3, 2, 1, tzinfo=UTC), None),
        AlertRow(2, "power_above", "r", "Main", datetime(2026, 3, 20, tzinfo=UTC),
                 datetime(2026, 3, 21, tzinfo=UTC)),
        # Cleared only after the period: open at its end.
        AlertRow(3, "daily_kwh_above", "r", "HQ", datetime(2026, 3, 30, tzinfo=UTC),
                 datetime(2026, 4, 2, tzinfo=UTC)),
        AlertRow(4, "power_above", "r", "Plug", datetime(2026, 3, 25, tzinfo=UTC),
                 datetime(2026, 3, 25, 2, tzinfo=UTC)),
    ]  # fmt: skip
    facts = alert_facts(alerts, SEOUL, end)

    assert facts.value("alerts_count") == 4
    assert facts.value("alerts_open_count") == 2
    assert facts.value("alerts_cleared_count") == 2
    assert facts.value("alerts_power_above_count") == 2
    assert facts.value("alerts_base_load_jump_count") == 0
    # Open ones first (latest raised first), then the cleared ones, latest first.
    assert [facts.value(f"alert{i}_subject") for i in (1, 2, 3)] == ["HQ", "Main", "Plug"]
    assert facts.value("alert1_status") == "open"
    assert facts.value("alert3_status") == "cleared"
    # Local time: 2026-03-30 00:00 UTC is 09:00 in Seoul.
    assert facts.value("alert1_raised_at") == "2026-03-30 09:00"
    assert facts.tables["alerts"][0]["cleared_at"] is None
    # Printed in words of the report's language; the value stays the code.
    ko = facts_json(facts, "ko")["values"]
    assert ko["alert1_status"]["display"] == "진행 중"
    assert ko["alert1_kind"]["display"] == "일 사용량 예상 초과"
    assert facts_json(facts, "en")["values"]["alert3_kind"]["display"] == "power above threshold"


def test_the_report_carries_the_new_facts_and_the_template_cites_them() -> None:
    inputs = replace(known_inputs(), costs=[SEOUL_HQ, DEPOT], baselines=[PLANT])
    facts = compute_facts(inputs)
    narrative = template_narrative(facts, "en")
    assert "{{cost1_energy_related_total}}" in narrative.sections["electricity_cost"]
    assert "{{cost_untariffed_sites}}" in narrative.sections["electricity_cost"]
    assert "{{cost_untariffed_kwh}}" in narrative.sections["electricity_cost"]
    assert "{{cost_uncosted_kwh}}" not in narrative.sections["electricity_cost"]
    assert "{{baseline1_uncertainty_pct}}" in narrative.sections["baseline_savings"]
    assert narrative.sections["alerts"] == "No alert was active in the period."


def test_grounding_refuses_a_cost_figure_that_is_not_a_fact() -> None:
    facts = compute_facts(replace(known_inputs(), costs=[SEOUL_HQ]))
    known = set(facts.values)
    here = allowed_in("electricity_cost", known)
    offences = find_offences("The bill came to 400,000 KRW.", known, {2026}, allowed_here=here)
    assert [(o.reason, o.token) for o in offences] == [("number", "400,000")]
    assert find_offences(
        "The bills total {{cost1_bill_total}} {{cost1_currency}}.", known, {2026},
        allowed_here=here,
    ) == []  # fmt: skip
    # A cost fact belongs to the cost section: cited in the summary it is misplaced.
    answer = {**template_narrative(facts, "en").sections, "recommendations": []}
    answer["executive_summary"] = "The bills total {{cost1_bill_total}}."
    (offence,) = narrative_offences(answer, known, {2026})
    assert offence.reason == "misplaced_placeholder"
