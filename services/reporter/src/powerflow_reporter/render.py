"""HTML (Jinja2, autoescaped) and Markdown of a report (its PDF: pdf.py).

Model text is sanitised with nh3 before it reaches HTML; placeholders are filled afterwards with
escaped values, so neither the model nor a device name can add markup. The model names devices,
locations and sites only by their labels (``{{device_1}}``, labels.py): here they become the
real names again, escaped like every other value.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import nh3
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from powerflow_reporter.charts import bar_chart, scatter_chart
from powerflow_reporter.facts import Facts
from powerflow_reporter.formatting import Language, format_code, format_fact, format_number
from powerflow_reporter.grounding import fill_placeholders
from powerflow_reporter.labels import assign_labels
from powerflow_reporter.narrative import Narrative
from powerflow_reporter.sections import RECOMMENDATIONS, SECTIONS, Section, html_order

__all__ = ["MARKDOWN_AFTER", "render_html", "render_markdown"]

_TEMPLATES = Path(__file__).with_name("templates")
_env = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

UI: dict[str, dict[str, str]] = {
    "en": {
        "title": "Environmental report: electricity and Scope 2 emissions",
        "report_id": "Report",
        "generated": "generated",
        "without_ai": "Written without AI: template narrative",
        "with_ai": "Narrative written with AI; every figure is filled in from the data",
        "fallback": "Some sentences of the AI narrative quoted figures not taken from the data "
        "and were replaced by template text.",
        "key_figures": "Key figures",
        "total_energy": "Electricity consumed",
        "co2_location": "Scope 2 emissions, location-based",
        "co2_market": "Scope 2 emissions, market-based",
        "change": "Change vs previous period",
        "coverage": "Data coverage",
        "peak": "Peak hourly average power",
        "night_base": "Night base load",
        "gri_302_1": "Energy consumption within the organisation",
        "gri_302_3": "Energy intensity",
        "gri_305_2": "Energy indirect (Scope 2) GHG emissions",
        "source_col": "Source",
        "electricity_purchased": "Electricity (metered)",
        "renewable_contracted": "of which covered by renewable contracts",
        "floor_area": "Floor area",
        "intensity": "Electricity per floor area",
        "method": "Method",
        "location_based": "Location-based",
        "market_based": "Market-based",
        "daily_chart": "Daily consumption (kWh)",
        "profile_chart": "Average hourly profile (W, local time)",
        "by_device": "Consumption by device",
        "device": "Device",
        "code": "Code",
        "role": "Meter role",
        "scatter_chart": "Temperature (°C) against hourly power (W)",
        "methodology": "Methodology",
        "boundary": "Boundary",
        "meters": "Meters counted / in scope",
        "factor": "Emission factor",
        "effective": "effective",
        "factor_source": "Factor source",
        "gaps": "device-hours with gaps",
        "unallocated": "unallocated",
        "methodology_text": "Energy is metered per device (cumulative counter, else the integral "
        "of power); gaps longer than the configured maximum add nothing and lower coverage, and "
        "counter energy across a gap is reported as unallocated. Site totals come from main "
        "meters where a site has them, else from standalone meters, so sub-meters are never "
        "counted twice. Location-based Scope 2 applies the grid factor valid for each hour; "
        "market-based Scope 2 subtracts contracted renewable electricity (GHG Protocol Scope 2 "
        "Guidance). Days are cut in the scope's local time zone.",
        "grounding_text": "Every figure in this report is computed from the metering database "
        "by software; the narrative cites figures only through placeholders that the software "
        "fills in, and is checked for figures of its own.",
        "boundary_site": "Site",
        "boundary_organisation": "Organisation (all sites and devices)",
        "boundary_devices": "Selected devices",
        # cost, savings against baselines, alerts
        "site": "Site",
        "currency": "Currency",
        "energy_related": "Energy-related cost",
        "uncosted": "kWh without tariff",
        "note": "Note",
        "cost_by_site": "Cost by site",
        "bills": "Bills of whole months",
        "month": "Month",
        "billed_demand": "Billed demand (kW)",
        "demand_charge": "Demand charge",
        "energy_charge": "Energy charge",
        "addons": "Add-ons",
        "fund_vat": "Fund + VAT",
        "bill_total": "Total",
        "baseline": "Baseline",
        "savings_col": "Savings (kWh)",
        "alert_kind": "Kind",
        "alert_rule": "Rule",
        "alert_subject": "Device or site",
        "raised": "Raised",
        "cleared": "Cleared",
        "open": "open",
    },
    "ko": {
        "title": "환경 보고서: 전력 사용량 및 Scope 2 배출량",
        "report_id": "보고서",
        "generated": "생성",
        "without_ai": "AI 없이 작성됨: 템플릿 서술",
        "with_ai": "AI로 작성된 서술이며, 모든 수치는 데이터에서 채워졌습니다",
        "fallback": "AI 서술 중 데이터에 없는 수치를 인용한 문장은 템플릿 문장으로 대체되었습니다.",
        "key_figures": "주요 수치",
        "total_energy": "전력 사용량",
        "co2_location": "Scope 2 배출량 (위치 기반)",
        "co2_market": "Scope 2 배출량 (시장 기반)",
        "change": "직전 기간 대비 변화",
        "coverage": "데이터 수집률",
        "peak": "최대 시간 평균 전력",
        "night_base": "야간 기저 부하",
        "gri_302_1": "조직 내 에너지 소비",
        "gri_302_3": "에너지 원단위",
        "gri_305_2": "간접 온실가스 배출 (Scope 2)",
        "source_col": "구분",
        "electricity_purchased": "전력 (계측)",
        "renewable_contracted": "그중 재생에너지 계약분",
        "floor_area": "연면적",
        "intensity": "면적당 전력 사용량",
        "method": "산정 방식",
        "location_based": "위치 기반",
        "market_based": "시장 기반",
        "daily_chart": "일별 사용량 (kWh)",
        "profile_chart": "시간대별 평균 전력 (W, 현지 시각)",
        "by_device": "기기별 사용량",
        "device": "기기",
        "code": "코드",
        "role": "계량 구분",
        "scatter_chart": "온도 (°C)와 시간별 전력 (W)",
        "methodology": "산정 방법",
        "boundary": "경계",
        "meters": "집계 계량기 / 범위 내 기기",
        "factor": "배출계수",
        "effective": "실효",
        "factor_source": "배출계수 출처",
        "gaps": "공백이 있는 기기-시간",
        "unallocated": "미배분",
        "methodology_text": "에너지는 기기별로 계측합니다(누적 계량값, 없으면 전력의 적분). 설정된 "
        "최대 간격보다 긴 공백은 더하지 않고 수집률을 낮추며, 공백을 가로지른 누적 계량값의 증가는 "
        "미배분으로 보고합니다. 사업장 합계는 주 계량기가 있으면 주 계량기에서, 없으면 독립 "
        "계량기에서 구하므로 하위 계량기는 두 번 집계되지 않습니다. 위치 기반 Scope 2는 각 시간에 "
        "유효한 전력망 배출계수를 적용하고, 시장 기반 Scope 2는 재생에너지 계약량을 차감합니다"
        "(GHG Protocol Scope 2 지침). 날짜는 해당 범위의 현지 시간대로 나눕니다.",
        "grounding_text": "이 보고서의 모든 수치는 소프트웨어가 계측 데이터베이스에서 "
        "계산했습니다. "
        "서술은 소프트웨어가 채우는 자리표시자로만 수치를 인용하며, 자체 수치가 없는지 검사됩니다.",
        "boundary_site": "사업장",
        "boundary_organisation": "조직 전체 (모든 사업장과 기기)",
        "boundary_devices": "선택한 기기",
        # cost, savings against baselines, alerts
        "site": "사업장",
        "currency": "통화",
        "energy_related": "전력량 관련 요금",
        "uncosted": "요금제 없는 kWh",
        "note": "비고",
        "cost_by_site": "사업장별 요금",
        "bills": "전체 월 청구서",
        "month": "월",
        "billed_demand": "요금적용전력 (kW)",
        "demand_charge": "기본요금",
        "energy_charge": "전력량요금",
        "addons": "부가 요금",
        "fund_vat": "기금 + 부가가치세",
        "bill_total": "합계",
        "baseline": "기준선",
        "savings_col": "절감량 (kWh)",
        "alert_kind": "종류",
        "alert_rule": "규칙",
        "alert_subject": "기기 또는 사업장",
        "raised": "발생",
        "cleared": "해제",
        "open": "진행 중",
    },
}


def _num(value: float | None, kind: str) -> str:
    return "" if value is None else format_number(value, kind)


def _extra_tables(
    facts: Facts, t: dict[str, str], language: Language
) -> dict[str, list[dict[str, str]]]:
    """The cost, savings and alerts tables, formatted (names are untrusted: escaped later)."""
    tables = facts.tables
    return {
        "cost_by_site": [
            {
                "site": c["site"],
                "currency": c["currency"] or "",
                "kwh": _num(c["kwh"], "kwh") if c["currency"] else "",
                "total": _num(c["energy_related_total"], "money"),
                "uncosted": _num(c["uncosted_kwh"], "kwh"),
                "reason": c["reason"] or "",
            }
            for c in tables.get("cost_by_site", [])
        ],
        "cost_bills": [
            {
                "site": b["site"],
                "month": b["month"],
                "currency": b["currency"] or "",
                "demand_kw": ""
                if b["billed_demand_kw"] is None
                else f"{b['billed_demand_kw']:,.1f}",
                "demand_charge": _num(b["demand_charge"], "money"),
                "energy_charge": _num(b["energy_charge"], "money"),
                "addons": _num(b["addons"], "money"),
                "fund_vat": _num(b["fund"] + b["vat"], "money"),
                "total": _num(b["total"], "money"),
            }
            for b in tables.get("cost_bills", [])
        ],
        "baseline_savings": [
            {
                "site": b["site"],
                "baseline": "" if b["baseline_id"] is None else f"#{b['baseline_id']} {b['model']}",
                "cv": _num(b["cv_rmse_pct"], "pct"),
                "nmbe": _num(b["nmbe_pct"], "pct_change"),
                "kwh": _num(b["savings_kwh"], "kwh"),
                "pct": _num(b["savings_pct"], "pct_change"),
                "uncertainty": _num(b["uncertainty_pct"], "pct"),
                "reason": b["reason"] or "",
            }
            for b in tables.get("baseline_savings", [])
        ],
        "alerts": [
            {
                "kind": format_code(a["kind"], language),
                "rule": a["rule"],
                "subject": a["subject"],
                "raised_at": a["raised_at"],
                "cleared_at": a["cleared_at"] or t["open"],
            }
            for a in tables.get("alerts", [])
        ],
    }


def _displays(facts: Facts, language: Language) -> dict[str, str]:
    """What each placeholder prints: a fact's formatted value, or a label's real name."""
    names = assign_labels(facts).names
    return {**names, **{fid: format_fact(f, language) for fid, f in facts.values.items()}}


def _html_text(text: str, displays_html: dict[str, str]) -> Markup:
    """Model or template text as safe HTML paragraphs with placeholders filled in."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for p in paragraphs:
        # No tags at all: the model writes prose; nh3 also drops script and style contents.
        clean = nh3.clean(p, tags=set(), clean_content_tags={"script", "style"})
        out.append(f"<p>{fill_placeholders(clean, displays_html)}</p>")
    return Markup("\n".join(out))


def _inline_html(text: str, displays_html: dict[str, str]) -> Markup:
    clean = nh3.clean(text, tags=set(), clean_content_tags={"script", "style"})
    return Markup(fill_placeholders(clean, displays_html))


def render_html(
    *,
    report_id: str,
    generated_at: str,
    scope: str,
    facts: Facts,
    narrative: Narrative,
    language: Language,
    sections: Sequence[Section] = SECTIONS,
) -> str:
    """The report as one self-contained HTML page (inline SVG charts, no external assets).

    Each section is its title and text, with the charts and tables of its partials
    (templates/sections/<id>.before.html.j2 and .after.html.j2) if it has any.
    """
    t = UI[language]
    displays = _displays(facts, language)
    displays_html = {k: html.escape(v) for k, v in displays.items()}
    by_day = facts.tables.get("by_day", [])
    profile = facts.tables.get("hourly_profile", [])
    scatter = facts.tables.get("temperature_power", [])
    charts = {
        "daily": Markup(
            bar_chart(
                t["daily_chart"], [d["date"][5:] for d in by_day], [d["kwh"] for d in by_day], "kWh"
            )
        ),
        "profile": Markup(
            bar_chart(
                t["profile_chart"],
                [f"{p['hour']:02d}" for p in profile],
                [p["avg_w"] for p in profile],
                "W",
            )
        ),
        "scatter": Markup(
            scatter_chart(
                t["scatter_chart"],
                [(p["temperature_c"], p["power_w"]) for p in scatter],
                "°C",
                "W",
            )
        ),
    }
    devices = [
        {
            "rank": d["rank"],
            "label": d["label"],  # untrusted: autoescaped by Jinja2
            "code": d["code"],
            "role": d["meter_role"] + ("" if d["counted"] else " (breakdown)"),
            "kwh": format_number(d["kwh"], "kwh"),
            "co2": format_number(d["co2_kg"], "kg"),
            "share": "" if d["share_pct"] is None else format_number(d["share_pct"], "pct"),
        }
        for d in facts.tables.get("by_device", [])
    ]
    fallback = bool(narrative.grounding.get("fallback_sections"))
    template = _env.get_template("report.html.j2")
    return template.render(
        lang=language,
        t=t,
        v=displays,
        report_id=report_id,
        generated_at=generated_at,
        source=narrative.source,
        model=narrative.model,
        fallback_note=t["fallback"] if fallback else "",
        sections=[
            {
                "id": s.id,
                "title": (s.html_title or s.title)[language],
                "text": _html_text(narrative.sections[s.id], displays_html),
            }
            for s in html_order(sections)
        ],
        recommendations_title=RECOMMENDATIONS.title[language],
        recommendations=[_inline_html(r.text, displays_html) for r in narrative.recommendations],
        charts=charts,
        devices=devices,
        scope2_note=facts.notes.get("scope2", ""),
        boundary=t[f"boundary_{scope}"] + f": {displays['scope_label']}",
        extra=_extra_tables(facts, t, language),
    )


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>])")
# A placeholder (filled in) or a character the model's text must not use as Markdown.
_MD_TEXT = re.compile(r"(\{\{\s*([A-Za-z0-9_.-]*)\s*\}\})|([\\`*_{}\[\]()#+!|<>])")


def _md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_scope2(
    t: dict[str, str], displays: dict[str, str], facts: Facts, language: Language
) -> list[str]:
    """The emissions' tables: GHG Protocol Scope 2 both ways, and the GRI figures."""
    return [
        "| GHG Protocol Scope 2 | kWh | kg CO2e | t CO2e |",
        "|---|---:|---:|---:|",
        f"| {t['location_based']} | {displays['total_kwh']} | "
        f"{displays['co2_location_kg']} | {displays['co2_location_t']} |",
        f"| {t['market_based']} | {displays['total_kwh']} | "
        f"{displays['co2_market_kg']} | {displays['co2_market_t']} |",
        "",
        f"GRI 302-1: {displays['total_kwh']} = {displays['total_gj']}; GRI 302-3: "
        f"{displays['intensity_kwh_per_m2']}",
        "",
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table of untrusted cells (escaped), or nothing without rows."""
    if not rows:
        return []
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _md_cost(
    t: dict[str, str], displays: dict[str, str], facts: Facts, language: Language
) -> list[str]:
    extra = _extra_tables(facts, t, language)
    cols = ["site", "currency", "kwh", "total", "uncosted", "reason"]
    bill_cols = ["site", "month", "currency", "demand_kw", "demand_charge", "energy_charge"]
    bill_cols += ["addons", "fund_vat", "total"]
    return _md_table(
        [t["site"], t["currency"], "kWh", t["energy_related"], t["uncosted"], t["note"]],
        [[c[k] for k in cols] for c in extra["cost_by_site"]],
    ) + _md_table(
        [t["site"], t["month"], t["currency"], t["billed_demand"], t["demand_charge"],
         t["energy_charge"], t["addons"], t["fund_vat"], t["bill_total"]],
        [[b[k] for k in bill_cols] for b in extra["cost_bills"]],
    )  # fmt: skip


def _md_baseline_savings(
    t: dict[str, str], displays: dict[str, str], facts: Facts, language: Language
) -> list[str]:
    cols = ["site", "baseline", "cv", "nmbe", "kwh", "pct", "uncertainty", "reason"]
    return _md_table(
        [t["site"], t["baseline"], "CV(RMSE)", "NMBE", t["savings_col"], "%", "±", t["note"]],
        [[b[k] for k in cols] for b in _extra_tables(facts, t, language)["baseline_savings"]],
    )


def _md_alerts(
    t: dict[str, str], displays: dict[str, str], facts: Facts, language: Language
) -> list[str]:
    cols = ["kind", "rule", "subject", "raised_at", "cleared_at"]
    return _md_table(
        [t["alert_kind"], t["alert_rule"], t["alert_subject"], t["raised"], t["cleared"]],
        [[a[k] for k in cols] for a in _extra_tables(facts, t, language)["alerts"]],
    )


# What the Markdown adds after a section's text, by section id (most sections: nothing).
MarkdownBlock = Callable[[dict[str, str], dict[str, str], Facts, Language], list[str]]
MARKDOWN_AFTER: dict[str, MarkdownBlock] = {
    "emissions": _md_scope2,
    "electricity_cost": _md_cost,
    "baseline_savings": _md_baseline_savings,
    "alerts": _md_alerts,
}


def render_markdown(
    *,
    report_id: str,
    generated_at: str,
    facts: Facts,
    narrative: Narrative,
    language: Language,
    sections: Sequence[Section] = SECTIONS,
) -> str:
    """The report as Markdown: the same narrative and figures, tables instead of charts."""
    t = UI[language]
    displays = _displays(facts, language)
    md_values = {k: _md_escape(v) for k, v in displays.items()}

    def text(raw: str) -> str:
        plain = html.unescape(nh3.clean(raw, tags=set(), clean_content_tags={"script", "style"}))
        # Escape the model's own Markdown, not our placeholders' braces.
        return _MD_TEXT.sub(
            lambda m: md_values.get(m.group(2), m.group(1)) if m.group(1) else "\\" + m.group(3),
            plain,
        )

    lines = [
        f"# {t['title']}",
        "",
        f"{md_values['scope_label']} · {displays['period_start_date']} – "
        f"{displays['period_end_date']} ({displays['timezone']}) · {t['report_id']} {report_id} · "
        f"{t['generated']} {generated_at}",
        "",
        f"**{t['without_ai'] if narrative.source == 'template' else t['with_ai']}**",
        "",
    ]
    if narrative.grounding.get("fallback_sections"):
        lines += [f"> {t['fallback']}", ""]
    lines += [
        f"## {t['key_figures']}",
        "",
        "| | |",
        "|---|---:|",
        f"| {t['total_energy']} | {displays['total_kwh']} |",
        f"| {t['co2_location']} | {displays['co2_location_kg']} |",
        f"| {t['co2_market']} | {displays['co2_market_kg']} |",
        f"| {t['change']} | {displays['change_pct']} ({displays['change_kwh']}) |",
        f"| {t['coverage']} | {displays['coverage_pct']} |",
        "",
    ]
    for section in sections:
        lines += [f"## {section.title[language]}", "", text(narrative.sections[section.id]), ""]
        after = MARKDOWN_AFTER.get(section.id)
        if after is not None:
            lines += after(t, displays, facts, language)
    lines += [f"## {RECOMMENDATIONS.title[language]}", ""]
    lines += [f"- {text(r.text)}" for r in narrative.recommendations]
    lines += ["", f"## {t['by_device']}", "", "| # | | kWh | % |", "|---:|---|---:|---:|"]
    for d in facts.tables.get("by_device", []):
        share = "" if d["share_pct"] is None else format_number(d["share_pct"], "pct")
        lines.append(
            f"| {d['rank']} | {_md_escape(d['label'])} | "
            f"{format_number(d['kwh'], 'kwh')} | {share} |"
        )
    lines += ["", f"## {t['methodology']}", "", t["methodology_text"], "", t["grounding_text"], ""]
    lines += [f"{t['factor_source']}: {md_values['factor_source']}", ""]
    return "\n".join(lines)
