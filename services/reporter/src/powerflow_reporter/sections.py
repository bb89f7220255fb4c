"""The report's sections, each declared once: everything else is rendered from this table (pure).

A section's entry holds its id (the key of the model's JSON answer and of Narrative.sections),
its title in each language, what the prompt tells the model it covers, the facts that belong
to it alone, and its template sentences (the narrative written without AI, and the fallback
for a model's sentence that fails grounding). From ``SECTIONS`` come the prompt's section list
and rule on misplaced facts, the answer's JSON schema, the template narrative, the grounding's
per-section placeholders and the HTML and Markdown (each loops over the table; a section's
charts and tables, if it has any, are an HTML partial named after its id,
``templates/sections/<id>.before.html.j2`` or ``.after.html.j2``, and a Markdown block in
render.py).

Adding a section is one entry here plus its facts (a step in facts.py, its lines in
``facts.FACT_GLOSSARY``); services/reporter/tests/test_sections.py checks that each
appears everywhere.

The recommendations are a list, not prose: ``RECOMMENDATIONS`` declares them, with one
template recommendation per savings potential (``SavingsRule``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from powerflow_reporter.formatting import Language

__all__ = [
    "RECOMMENDATIONS",
    "SECTIONS",
    "Recommendations",
    "SavingsRule",
    "Section",
    "Sentence",
    "Text",
    "allowed_in",
    "fact_patterns",
    "html_order",
    "section_of",
]


@dataclass(frozen=True, slots=True)
class Text:
    """One text in every language of the report (a missing one is a type error)."""

    en: str
    ko: str

    def __getitem__(self, language: Language) -> str:
        text: str = getattr(self, language)
        return text


@dataclass(frozen=True, slots=True)
class Sentence:
    """A template sentence and when it is written.

    Written when every fact of ``needs`` is known (not None) and ``positive``, if given, is
    above zero; else ``otherwise``, if given, else nothing.
    """

    text: Text
    needs: tuple[str, ...] = ()
    positive: str | None = None
    otherwise: Text | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """A prose section of the report.

    ``owns``: facts that belong to this section alone (an id, or a prefix ending in ``_``),
    misplaced anywhere else; every other fact may be cited in any section. ``owns_name`` is
    how the prompt calls them. ``html_title`` and ``html_after`` are for the HTML only: the
    heading it shows instead of ``title``, and the section it follows instead of the table's
    order (the emissions sit with the GRI disclosures, right after the summary).
    """

    id: str
    title: Text
    guidance: str
    template: tuple[Sentence, ...]
    owns: tuple[str, ...] = ()
    owns_name: str = ""
    html_title: Text | None = None
    html_after: str | None = None


@dataclass(frozen=True, slots=True)
class SavingsRule:
    """A savings potential (``<family>_kwh``, ``_kg``, ``_pct``) and its template recommendation."""

    family: str
    text: Text

    @property
    def cites(self) -> list[str]:
        return [f"{self.family}_kwh", f"{self.family}_pct", f"{self.family}_kg"]


@dataclass(frozen=True, slots=True)
class Recommendations:
    """The recommendations: each cites the savings potentials it rests on, and only those."""

    id: str
    title: Text
    owns: tuple[str, ...]
    owns_name: str
    rules: tuple[SavingsRule, ...]
    none: Text  # the template's recommendation when no potential is above zero


SECTIONS: tuple[Section, ...] = (
    Section(
        id="executive_summary",
        title=Text(en="Executive summary", ko="요약"),
        guidance="the period's consumption, emissions and change",
        template=(
            Sentence(
                Text(
                    en="From {{period_start_date}} to {{period_end_date}}, {{scope_label}} "
                    "consumed {{total_kwh}} of electricity, which corresponds to "
                    "{{co2_location_kg}} of location-based and {{co2_market_kg}} of "
                    "market-based Scope 2 emissions.",
                    ko="{{period_start_date}}부터 {{period_end_date}}까지 {{scope_label}}의 전력 "
                    "사용량은 {{total_kwh}}이며, 이는 위치 기반 {{co2_location_kg}}, 시장 기반 "
                    "{{co2_market_kg}}의 Scope 2 배출량에 해당합니다.",
                )
            ),
            Sentence(
                Text(
                    en="Consumption changed by {{change_pct}} ({{change_kwh}}) against the "
                    "previous period of equal length.",
                    ko="같은 길이의 직전 기간 대비 사용량은 {{change_pct}} ({{change_kwh}}) "
                    "변했습니다.",
                ),
                needs=("change_pct",),
            ),
            Sentence(
                Text(
                    en="Data coverage was {{coverage_pct}} of the metered hours.",
                    ko="계측 시간 대비 데이터 수집률은 {{coverage_pct}}입니다.",
                )
            ),
        ),
    ),
    Section(
        id="consumption_analysis",
        title=Text(en="Consumption analysis", ko="사용량 분석"),
        guidance="days, weekday and weekend, profile, peak, base load, largest consumers",
        template=(
            Sentence(
                Text(
                    en="Daily consumption averaged {{avg_daily_kwh}}; the highest day was "
                    "{{max_day_date}} with {{max_day_kwh}} and the lowest {{min_day_date}} with "
                    "{{min_day_kwh}}.",
                    ko="일평균 사용량은 {{avg_daily_kwh}}이며, 가장 많은 날은 {{max_day_date}} "
                    "({{max_day_kwh}}), 가장 적은 날은 {{min_day_date}} ({{min_day_kwh}})입니다.",
                )
            ),
            Sentence(
                Text(
                    en="Weekend days averaged {{weekend_avg_daily_kwh}} against "
                    "{{weekday_avg_daily_kwh}} on weekdays ({{weekend_vs_weekday_pct}} of a "
                    "weekday).",
                    ko="주말 일평균은 {{weekend_avg_daily_kwh}}, 평일 일평균은 "
                    "{{weekday_avg_daily_kwh}}입니다 (평일 대비 {{weekend_vs_weekday_pct}}).",
                ),
                needs=("weekend_avg_daily_kwh", "weekday_avg_daily_kwh", "weekend_vs_weekday_pct"),
            ),
            Sentence(
                Text(
                    en="The highest hourly average power was {{peak_hour_w}} in the hour "
                    "starting {{peak_hour_start}}; the night base load averaged "
                    "{{night_base_load_w}}.",
                    ko="시간 평균 전력이 가장 높았던 때는 {{peak_hour_start}}부터의 한 시간으로 "
                    "{{peak_hour_w}}이며, 야간 기저 부하는 평균 {{night_base_load_w}}입니다.",
                ),
                needs=("night_base_load_w",),
            ),
            Sentence(
                Text(
                    en="The largest consumer was {{device_top1_name}} with {{device_top1_kwh}} "
                    "({{device_top1_share_pct}} of the total).",
                    ko="가장 많이 사용한 기기는 {{device_top1_name}}으로 {{device_top1_kwh}} "
                    "(전체의 {{device_top1_share_pct}})입니다.",
                ),
                needs=("device_top1_name",),
            ),
            Sentence(
                Text(
                    en="{{unallocated_kwh}} was counted across data gaps and could not be "
                    "assigned to hours.",
                    ko="{{unallocated_kwh}}는 데이터 공백 구간에서 집계되어 시간대에 배분하지 "
                    "못했습니다.",
                ),
                positive="unallocated_kwh",
            ),
        ),
    ),
    Section(
        id="emissions",
        title=Text(en="Emissions", ko="배출량"),
        guidance="location- and market-based Scope 2, factor and source, intensity",
        html_title=Text(en="Environmental disclosures", ko="환경 공시"),
        html_after="executive_summary",
        template=(
            Sentence(
                Text(
                    en="Emissions use the grid factor of {{factor_source}}.",
                    ko="배출량은 다음 배출계수를 사용했습니다: {{factor_source}}.",
                ),
                needs=("factor_source",),
            ),
            Sentence(
                Text(
                    en="At an effective {{effective_factor_kg_per_kwh}}, location-based "
                    "emissions were {{co2_location_t}} and market-based emissions "
                    "{{co2_market_t}}, with {{contracted_renewable_kwh}} of contracted renewable "
                    "electricity.",
                    ko="실효 배출계수 {{effective_factor_kg_per_kwh}} 기준 위치 기반 배출량은 "
                    "{{co2_location_t}}, 시장 기반 배출량은 {{co2_market_t}}이며, 재생에너지 "
                    "계약량은 {{contracted_renewable_kwh}}입니다.",
                )
            ),
            Sentence(
                Text(
                    en="Energy intensity was {{intensity_kwh_per_m2}} of floor area.",
                    ko="연면적당 에너지 원단위는 {{intensity_kwh_per_m2}}입니다.",
                ),
                needs=("intensity_kwh_per_m2",),
            ),
        ),
    ),
    Section(
        id="environmental_correlations",
        title=Text(en="Environmental correlations", ko="환경 요인과의 상관관계"),
        guidance="power against temperature, humidity and brightness; a correlation is not a cause",
        # A correlation or the temperature slope belongs where the report says that a
        # correlation is not a cause.
        owns=("corr_", "daily_kwh_per_c_slope", "daily_temperature_n"),
        owns_name="correlation facts",
        template=(
            Sentence(
                Text(
                    en="Hourly power and outdoor or room temperature had a correlation "
                    "coefficient of {{corr_temperature_r}} over {{corr_temperature_n}} hours.",
                    ko="시간별 전력과 온도의 상관계수는 {{corr_temperature_r}} "
                    "(표본 {{corr_temperature_n}}시간)입니다.",
                ),
                needs=("corr_temperature_r",),
                otherwise=Text(
                    en="There were not enough temperature readings to relate power to temperature.",
                    ko="온도 데이터가 부족하여 전력과 온도의 관계를 분석하지 못했습니다.",
                ),
            ),
            Sentence(
                Text(
                    en="Daily consumption changed by {{daily_kwh_per_c_slope}} of mean "
                    "temperature over {{daily_temperature_n}} days.",
                    ko="평균 기온에 대한 일 사용량의 기울기는 {{daily_kwh_per_c_slope}} "
                    "(표본 {{daily_temperature_n}}일)입니다.",
                ),
                needs=("daily_kwh_per_c_slope",),
            ),
            Sentence(
                Text(
                    en="The coefficient for humidity was {{corr_humidity_r}} "
                    "over {{corr_humidity_n}} hours.",
                    ko="습도와의 상관계수는 {{corr_humidity_r}} (표본 {{corr_humidity_n}}시간)"
                    "입니다.",
                ),
                needs=("corr_humidity_r",),
            ),
            Sentence(
                Text(
                    en="The coefficient for brightness was {{corr_brightness_r}} "
                    "over {{corr_brightness_n}} hours.",
                    ko="조도와의 상관계수는 {{corr_brightness_r}} "
                    "(표본 {{corr_brightness_n}}시간)입니다.",
                ),
                needs=("corr_brightness_r",),
            ),
        ),
    ),
    # --- cost, savings against baselines, alerts ---
    Section(
        id="electricity_cost",
        title=Text(en="Cost", ko="전기 요금"),
        guidance="the electricity cost per currency (never added across currencies), its "
        "breakdown and the bills of whole months; sites without a tariff",
        owns=("cost1_", "cost2_", "cost3_", "cost_"),
        owns_name="cost facts",
        template=(
            *(
                Sentence(
                    Text(
                        en=f"In {{{{cost{i}_currency}}}}, the {{{{cost{i}_kwh}}}} costed came to "
                        f"{{{{cost{i}_energy_related_total}}}}: energy charge "
                        f"{{{{cost{i}_energy_charge}}}}, add-ons {{{{cost{i}_addons}}}}, fund "
                        f"{{{{cost{i}_fund}}}} and VAT {{{{cost{i}_vat}}}} (demand and fixed "
                        "charges are on the monthly bills).",
                        ko=f"{{{{cost{i}_currency}}}} 기준 요금 산정 사용량 {{{{cost{i}_kwh}}}}의 "
                        f"전력량 관련 요금은 {{{{cost{i}_energy_related_total}}}}입니다 "
                        "(전력량요금 "
                        f"{{{{cost{i}_energy_charge}}}}, 부가 요금 {{{{cost{i}_addons}}}}, 기금 "
                        f"{{{{cost{i}_fund}}}}, 부가가치세 {{{{cost{i}_vat}}}}; 기본요금과 고정 "
                        "요금은 월별 청구서에 포함).",
                    ),
                    needs=(f"cost{i}_currency",),
                    otherwise=None
                    if i > 1
                    else Text(
                        en="No site of this report has a tariff for the period, so no cost is "
                        "stated.",
                        ko="이 보고서의 사업장에는 해당 기간의 요금제가 없어 요금을 산정하지 "
                        "않았습니다.",
                    ),
                )
                for i in range(1, 4)
            ),
            *(
                Sentence(
                    Text(
                        en=f"The bills of whole months in {{{{cost{i}_currency}}}} "
                        f"({{{{cost{i}_bill_months}}}}) total {{{{cost{i}_bill_total}}}}, of "
                        f"which demand charges {{{{cost{i}_bill_demand_charge}}}}.",
                        ko=f"{{{{cost{i}_currency}}}} 기준 전체 월 청구서 "
                        f"{{{{cost{i}_bill_months}}}}건의 합계는 {{{{cost{i}_bill_total}}}}이며, "
                        f"그중 기본요금은 {{{{cost{i}_bill_demand_charge}}}}입니다.",
                    ),
                    needs=(f"cost{i}_bill_total",),
                )
                for i in range(1, 4)
            ),
            Sentence(
                Text(
                    en="Sites without a tariff: {{cost_untariffed_sites}} "
                    "({{cost_untariffed_kwh}} not costed).",
                    ko="요금제가 없는 사업장: {{cost_untariffed_sites}} "
                    "(요금 미산정 {{cost_untariffed_kwh}}).",
                ),
                needs=("cost_untariffed_sites",),
            ),
        ),
    ),
    Section(
        id="baseline_savings",
        title=Text(en="Savings against baseline", ko="기준선 대비 절감량"),
        guidance="measured savings against each site's weather-normalised baseline (IPMVP "
        "option C), with the model's fit and the savings' uncertainty; sites without one",
        owns=(*(f"baseline{i}_" for i in range(1, 6)), "baseline_"),
        owns_name="baseline facts",
        template=(
            *(
                Sentence(
                    Text(
                        en=f"{{{{baseline{i}_site}}}} saved {{{{baseline{i}_savings_kwh}}}} "
                        f"({{{{baseline{i}_savings_pct}}}} ± {{{{baseline{i}_uncertainty_pct}}}} "
                        f"of its baseline, ± {{{{baseline{i}_uncertainty_kwh}}}} at "
                        f"{{{{baseline{i}_confidence_pct}}}} confidence) over "
                        f"{{{{baseline{i}_days}}}} days against baseline "
                        f"{{{{baseline{i}_id}}}} ({{{{baseline{i}_model}}}}, fitted on "
                        f"{{{{baseline{i}_period_start}}}} to {{{{baseline{i}_period_end}}}}; "
                        f"CV(RMSE) {{{{baseline{i}_cv_rmse_pct}}}}, NMBE "
                        f"{{{{baseline{i}_nmbe_pct}}}}).",
                        ko=f"{{{{baseline{i}_site}}}}의 절감량은 {{{{baseline{i}_days}}}}일 동안 "
                        f"{{{{baseline{i}_savings_kwh}}}} (기준선 대비 "
                        f"{{{{baseline{i}_savings_pct}}}} ± {{{{baseline{i}_uncertainty_pct}}}}, "
                        f"신뢰수준 {{{{baseline{i}_confidence_pct}}}}에서 ± "
                        f"{{{{baseline{i}_uncertainty_kwh}}}})입니다. 기준선 "
                        f"{{{{baseline{i}_id}}}} ({{{{baseline{i}_model}}}}, "
                        f"{{{{baseline{i}_period_start}}}}–{{{{baseline{i}_period_end}}}} 적합; "
                        f"CV(RMSE) {{{{baseline{i}_cv_rmse_pct}}}}, NMBE "
                        f"{{{{baseline{i}_nmbe_pct}}}}).",
                    ),
                    needs=(f"baseline{i}_site",),
                    otherwise=None
                    if i > 1
                    else Text(
                        en="No site of this report has savings against a baseline for the period.",
                        ko="이 보고서의 사업장에는 해당 기간의 기준선 대비 절감량이 없습니다.",
                    ),
                )
                for i in range(1, 6)
            ),
            Sentence(
                Text(
                    en="Without a baseline or usable days: {{baseline_missing_sites}}.",
                    ko="기준선이나 사용 가능한 일자가 없는 사업장: {{baseline_missing_sites}}.",
                ),
                needs=("baseline_missing_sites",),
            ),
        ),
    ),
    Section(
        id="alerts",
        title=Text(en="Alerts", ko="경보"),
        guidance="the alerts of the period: how many of each kind, open or cleared at its end, "
        "the first few with what they were about and when",
        owns=("alerts_", "alert1_", "alert2_", "alert3_"),
        owns_name="alert facts",
        template=(
            Sentence(
                Text(
                    en="{{alerts_count}} alerts were active in the period: "
                    "{{alerts_open_count}} open at its end and {{alerts_cleared_count}} cleared.",
                    ko="이 기간에 활성화된 경보는 {{alerts_count}}건이며, 기간 말 기준 "
                    "{{alerts_open_count}}건은 열려 있고 {{alerts_cleared_count}}건은 "
                    "해제되었습니다.",
                ),
                positive="alerts_count",
                otherwise=Text(
                    en="No alert was active in the period.",
                    ko="이 기간에 활성화된 경보는 없습니다.",
                ),
            ),
            *(
                Sentence(
                    Text(
                        en=f"Alert “{{{{alert{i}_kind}}}}” on {{{{alert{i}_subject}}}}, raised "
                        f"{{{{alert{i}_raised_at}}}} ({{{{alert{i}_status}}}}).",
                        ko=f"{{{{alert{i}_subject}}}}의 {{{{alert{i}_kind}}}} 경보: "
                        f"{{{{alert{i}_raised_at}}}} 발생 ({{{{alert{i}_status}}}}).",
                    ),
                    needs=(f"alert{i}_kind",),
                )
                for i in range(1, 4)
            ),
        ),
    ),
)

RECOMMENDATIONS = Recommendations(
    id="recommendations",
    title=Text(en="Recommendations", ko="권고 사항"),
    # A savings potential is what a recommendation rests on (and cites).
    owns=("savings_",),
    owns_name="Savings facts",
    rules=(
        SavingsRule(
            "savings_night_base",
            Text(
                en="Bring the night base load down to the period's lowest hourly level: up to "
                "{{savings_night_base_kwh}} ({{savings_night_base_pct}} of consumption, "
                "{{savings_night_base_kg}}).",
                ko="야간 기저 부하를 기간 중 최저 시간대 수준으로 낮추면 최대 "
                "{{savings_night_base_kwh}} (사용량의 {{savings_night_base_pct}}, "
                "{{savings_night_base_kg}})를 절감할 수 있습니다.",
            ),
        ),
        SavingsRule(
            "savings_bright_lighting",
            Text(
                en="Switch lighting off while daylight is sufficient: up to "
                "{{savings_bright_lighting_kwh}} ({{savings_bright_lighting_pct}} of "
                "consumption, {{savings_bright_lighting_kg}}).",
                ko="충분히 밝을 때 조명을 끄면 최대 {{savings_bright_lighting_kwh}} "
                "(사용량의 {{savings_bright_lighting_pct}}, {{savings_bright_lighting_kg}})를 "
                "절감할 수 있습니다.",
            ),
        ),
    ),
    none=Text(
        en="No rule-based savings potential was found for this period.",
        ko="이 기간에는 규칙 기반 절감 잠재량이 발견되지 않았습니다.",
    ),
)


def html_order(sections: Sequence[Section]) -> list[Section]:
    """The sections in the HTML's order: the table's, each ``html_after`` moved behind its own."""
    ordered = [s for s in sections if s.html_after is None]
    for section in sections:
        if section.html_after is not None:
            ids = [s.id for s in ordered]
            if section.html_after not in ids:
                raise ValueError(f"{section.id} follows {section.html_after}: no such section")
            ordered.insert(ids.index(section.html_after) + 1, section)
    return ordered


def section_of(fact_id: str, sections: Sequence[Section]) -> str | None:
    """The part of the report ``fact_id`` belongs to alone, or None (any section may cite it)."""
    owners = [(s.id, s.owns) for s in sections] + [(RECOMMENDATIONS.id, RECOMMENDATIONS.owns)]
    for part, owns in owners:
        if owns and fact_id.startswith(owns):
            return part
    return None


def fact_patterns(owns: Sequence[str]) -> str:
    """``owns`` as the prompt writes it: ``corr_*, daily_kwh_per_c_slope``."""
    return ", ".join(f"{p}*" if p.endswith("_") else p for p in owns)


def _family(fact_id: str) -> str:
    """A savings potential's facts share a family: savings_night_base_kwh, _kg, _pct."""
    return fact_id.rsplit("_", 1)[0]


def allowed_in(
    part: str,
    known: Collection[str],
    cites: Collection[str] = (),
    *,
    sections: Sequence[Section] = SECTIONS,
) -> set[str]:
    """The placeholders section (or the recommendations) ``part`` may use.

    Every fact but those of another part. A recommendation uses only the savings potentials
    it cites (any of a potential's kWh, kg and % once it cites one of them), so its ``cites``
    say truly what it rests on.
    """
    cited = {_family(c) for c in cites}
    allowed = set()
    for fact_id in known:
        home = section_of(fact_id, sections)
        if home is None or (
            home == part and (part != RECOMMENDATIONS.id or _family(fact_id) in cited)
        ):
            allowed.add(fact_id)
    return allowed
