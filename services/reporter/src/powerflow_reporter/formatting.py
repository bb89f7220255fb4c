"""Facts as text: units and locale are chosen by our code, never by the model."""

from __future__ import annotations

import re
from typing import Any, Literal

from powerflow_reporter.facts import Fact, Facts

__all__ = ["Language", "facts_json", "format_code", "format_fact", "format_number"]

Language = Literal["en", "ko"]

_NA = {"en": "n/a", "ko": "해당 없음"}

# kind -> (format of the number, unit after it)
_FORMATS: dict[str, tuple[str, str]] = {
    "kwh": ("{:,.2f}", " kWh"),
    "kg": ("{:,.2f}", " kg CO2e"),
    "t": ("{:,.3f}", " t CO2e"),
    "gj": ("{:,.3f}", " GJ"),
    "pct": ("{:,.1f}", "%"),
    "pct_change": ("{:+,.1f}", "%"),
    "w": ("{:,.0f}", " W"),
    "c": ("{:,.1f}", " °C"),
    "r": ("{:+.2f}", ""),
    "count": ("{:,d}", ""),
    "m2": ("{:,.1f}", " m²"),
    "kwh_per_m2": ("{:,.3f}", " kWh/m²"),
    "kwh_per_c": ("{:+,.2f}", " kWh/°C"),
    "kg_per_kwh": ("{:.4f}", " kg CO2e/kWh"),
    # An amount of money: its currency is a fact of its own (cost1_currency), never added.
    "money": ("{:,.2f}", ""),
}


# Words for the codes of our own vocabularies that a report prints (an alert's rule kind and
# its state), by fact id; a value outside the vocabulary prints as it is.
_CODE_FACT = re.compile(r"alert\d+_(kind|status)")
_CODE_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "silence": "device silent",
        "power_above": "power above threshold",
        "power_below": "power below threshold",
        "base_load_jump": "base load jump",
        "daily_kwh_above": "daily kWh above expected",
        "daily_kwh_below": "daily kWh below expected",
        "open": "open",
        "cleared": "cleared",
    },
    "ko": {
        "silence": "기기 무응답",
        "power_above": "전력 상한 초과",
        "power_below": "전력 하한 미달",
        "base_load_jump": "기저 부하 급증",
        "daily_kwh_above": "일 사용량 예상 초과",
        "daily_kwh_below": "일 사용량 예상 미달",
        "open": "진행 중",
        "cleared": "해제됨",
    },
}


def format_code(code: str, language: Language) -> str:
    """An alert rule's kind or an alert's state in words (other text: as it is)."""
    return _CODE_WORDS[language].get(code, code)


def format_number(value: float | int, kind: str) -> str:
    """A number of ``kind`` with its unit, e.g. ``1,234.50 kWh``."""
    number, unit = _FORMATS[kind]
    if kind == "count":
        return number.format(int(value)) + unit
    return number.format(float(value)) + unit


def format_fact(fact: Fact, language: Language) -> str:
    """The fact as the report prints it in ``language``."""
    if fact.value is None:
        return _NA[language]
    if fact.kind == "text" and _CODE_FACT.fullmatch(fact.id):
        return format_code(str(fact.value), language)
    if fact.kind in ("text", "date", "hour"):
        return str(fact.value)
    assert isinstance(fact.value, int | float)
    return format_number(fact.value, fact.kind)


def facts_json(facts: Facts, language: Language) -> dict[str, Any]:
    """The report's facts JSON: each value with its kind and its printed form."""
    return {
        "version": 1,
        "language": language,
        "values": {
            f.id: {"value": f.value, "kind": f.kind, "display": format_fact(f, language)}
            for f in facts.values.values()
        },
        "tables": facts.tables,
        "notes": facts.notes,
    }
