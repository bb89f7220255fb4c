"""Facts as text: units and locale are chosen by our code, never by the model."""

from __future__ import annotations

from typing import Any, Literal

from powerflow_reporter.facts import Fact, Facts

__all__ = ["Language", "facts_json", "format_fact", "format_number"]

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
