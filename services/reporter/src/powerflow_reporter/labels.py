"""Opaque labels for the free text of a report: what the model sees instead of names (pure).

Device names and codes, locations, the site's name and the emission factors' sources are typed
by people and stored in the database; a name can say anything ("IGNORE ALL PREVIOUS
INSTRUCTIONS"). The model never needs to read them: it sees ``device_1``, ``location_1``,
``site_1``, ``source_1`` instead and writes them as placeholders (``{{device_1}}``); the
renderers put the real text back, escaped for HTML and Markdown. The facts JSON stored with the
report keeps the real names, for people.

Labels are stable within one report and assigned in a deterministic order: devices by their
rank in the consumption table (``device_1`` is the largest consumer, as ``device_top1``),
locations in order of first appearance in that table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from powerflow_reporter.facts import Facts
from powerflow_reporter.formatting import Language, facts_json

__all__ = [
    "CODE_TEXT_FACTS",
    "KEPT_TEXT_FACTS",
    "LABEL",
    "SCOPE_WORDS",
    "Labels",
    "assign_labels",
    "brace_labels",
    "prompt_payload",
]

# Every label looks like this; the model may write one bare, it is read as its placeholder.
LABEL = re.compile(
    r"(?<![A-Za-z0-9_])((?:device|site|location|source|factor_set|text)_[1-9][0-9]*)"
    r"(?![A-Za-z0-9_])"
)
# Text facts that are not free text: a time zone is a valid IANA key (ZoneInfo checked it).
KEPT_TEXT_FACTS = frozenset({"timezone"})
# Text facts from our own vocabularies (an alert rule's kind, an alert's state, a baseline's
# model kind) or an ISO 4217 code (a tariff's currency, validated): sent as they are while
# they look like one, so the model knows what it cites; anything else becomes a label.
CODE_TEXT_FACTS = frozenset(
    {f"alert{i}_kind" for i in range(1, 4)}
    | {f"alert{i}_status" for i in range(1, 4)}
    | {f"baseline{i}_model" for i in range(1, 6)}
    | {f"cost{i}_currency" for i in range(1, 4)}
)
_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,31}|[A-Z]{3}")
# The scope labels our own code writes (powerflow_common.queries.load_scope), not a site name.
SCOPE_WORDS = frozenset({"organisation", "devices"})
# The label family of each free-text fact; any other text fact is ``text_N``.
_TEXT_FAMILIES = {"scope_label": "site", "factor_source": "source", "factor_set": "factor_set"}
_DEVICE_TOP = re.compile(r"device_top(\d+)_name")
# Of the consumption table, what the model gets (no name, no code: the device's label).
_BY_DEVICE_KEYS = ("rank", "meter_role", "counted", "kwh", "co2_kg", "share_pct")
# Tables the prompt carries, and how many device rows (the rest adds tokens, not insight).
PROMPT_DEVICE_ROWS = 20


@dataclass(frozen=True, slots=True)
class Labels:
    """The labels of one report: for each label, the real text the report shows."""

    names: dict[str, str]
    device_by_code: dict[str, str]
    location_labels: dict[str, str]
    text_facts: dict[str, str]  # fact id -> the label sent instead of its value


def assign_labels(facts: Facts) -> Labels:
    """Labels for every free text in ``facts``, in a deterministic order."""
    names: dict[str, str] = {}
    device_by_code: dict[str, str] = {}
    location_labels: dict[str, str] = {}
    rows = facts.tables.get("by_device", [])
    for row in rows:
        label = f"device_{row['rank']}"
        device_by_code[row["code"]] = label
        names[label] = str(row["label"])
        location = row.get("location")
        if location and location not in location_labels:
            location_labels[location] = f"location_{len(location_labels) + 1}"
            names[location_labels[location]] = location
    text_facts: dict[str, str] = {}
    counters: dict[str, int] = {}
    for fact in facts.values.values():
        if fact.kind != "text" or fact.value is None or fact.id in KEPT_TEXT_FACTS:
            continue
        if fact.id in CODE_TEXT_FACTS and _CODE.fullmatch(str(fact.value)):
            continue
        top = _DEVICE_TOP.fullmatch(fact.id)
        if top is not None and int(top.group(1)) <= len(rows):
            text_facts[fact.id] = f"device_{top.group(1)}"
            continue
        if fact.id == "scope_label" and facts.scope != "site" and fact.value in SCOPE_WORDS:
            continue
        family = _TEXT_FAMILIES.get(fact.id, "text")
        counters[family] = counters.get(family, 0) + 1
        label = f"{family}_{counters[family]}"
        text_facts[fact.id] = label
        names[label] = str(fact.value)
    return Labels(names, device_by_code, location_labels, text_facts)


def prompt_payload(facts: Facts, language: Language, labels: Labels) -> dict[str, Any]:
    """The facts as the model sees them: every free text replaced by its label."""
    data = facts_json(facts, language)
    values = {}
    for fact_id, v in data["values"].items():
        label = labels.text_facts.get(fact_id)
        values[fact_id] = (
            {"value": label, "display": label}
            if label is not None
            else {"value": v["value"], "display": v["display"]}
        )
    by_device = [
        {
            "device": labels.device_by_code[row["code"]],
            "location": labels.location_labels.get(row.get("location") or ""),
            **{key: row[key] for key in _BY_DEVICE_KEYS},
        }
        for row in data["tables"].get("by_device", [])[:PROMPT_DEVICE_ROWS]
    ]
    return {
        "values": values,
        "by_device": by_device,
        "by_day": data["tables"].get("by_day", []),
        "hourly_profile": data["tables"].get("hourly_profile", []),
        "notes": data["notes"],
    }


def brace_labels(text: str, labels: Labels) -> str:
    """``text`` with each known label written bare (``device_2``) as its placeholder.

    A placeholder already in braces is matched whole first, so it is left as it is.
    """

    def brace(match: re.Match[str]) -> str:
        if match.group(1) is not None or match.group(2) not in labels.names:
            return match.group(0)
        return "{{" + match.group(2) + "}}"

    return _PLACEHOLDER_OR_LABEL.sub(brace, text)


_PLACEHOLDER_OR_LABEL = re.compile(r"(\{\{\s*[A-Za-z0-9_.-]*\s*\}\})|" + LABEL.pattern)
