"""Characterisation: the facts, the prompt and the rendered reports, byte for byte (pure).

Written from the code before the report's sections were declared in one table
(powerflow_reporter.sections), so that refactoring it changes no output. The golden files
are in ``golden/``; after a deliberate change of the report, regenerate them with
``POWERFLOW_WRITE_GOLDEN=1 uv run pytest services/reporter/tests/test_golden.py`` and read
the diff before committing it. Nothing here is volatile: the report id and the generation
time are given, and the facts are computed from fixed inputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from pf_report_facts import known_inputs

from powerflow_reporter.facts import FactInputs, Facts, compute_facts
from powerflow_reporter.formatting import Language, facts_json
from powerflow_reporter.narrative import (
    OUTPUT_SCHEMA,
    SYSTEM_PROMPT,
    Narrative,
    Recommendation,
    template_narrative,
    user_message,
)
from powerflow_reporter.render import render_html, render_markdown

GOLDEN = Path(__file__).with_name("golden")
WRITE = os.environ.get("POWERFLOW_WRITE_GOLDEN") == "1"
LANGUAGES: tuple[Language, ...] = ("en", "ko")


def _sparse_inputs() -> FactInputs:
    """No previous period, no sensors, no floor area: the template's other branches."""
    inputs = known_inputs()
    return replace(
        inputs,
        scope="organisation",
        scope_label="organisation",
        previous_rows=[],
        floor_area_m2=None,
        rows=[replace(r, temperature_c=None, brightness_lux=None) for r in inputs.rows],
    )


def _claude_narrative(facts: Facts) -> Narrative:
    """A model's answer as the job keeps it: a label, a fallback sentence, Markdown to escape."""
    template = template_narrative(facts, "en")
    return Narrative(
        sections={
            "executive_summary": "The site used {{total_kwh}} in *2026*.\n\nSee [the data].",
            "consumption_analysis": "{{device_1}} used {{device_top1_kwh}} <b>most</b>.",
            "emissions": template.sections["emissions"],
            "environmental_correlations": "Power and temperature: r = {{corr_temperature_r}}.",
            "electricity_cost": template.sections["electricity_cost"],
            "baseline_savings": template.sections["baseline_savings"],
            "alerts": template.sections["alerts"],
        },
        recommendations=[
            Recommendation(
                "Lower the night base load: {{savings_night_base_kwh}}.",
                ["savings_night_base_kwh"],
            )
        ],
        source="claude",
        model="claude-test",
        grounding={"source": "claude", "passed": False, "fallback_sections": ["emissions"]},
    )


CASES = {
    "site": (known_inputs(contracted_kwh=10.0), "site"),
    "sparse": (_sparse_inputs(), "organisation"),
}


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing: POWERFLOW_WRITE_GOLDEN=1 writes it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file"


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_facts_are_those_of_the_golden_file(case: str) -> None:
    inputs, _ = CASES[case]
    data = facts_json(compute_facts(inputs), "en")
    _check(f"{case}.facts.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def _render(
    report_id: str, scope: str, facts: Facts, narrative: Narrative, language: Language
) -> tuple[str, str]:
    html = render_html(
        report_id=report_id,
        generated_at="2026-04-01 09:00 UTC",
        scope=scope,
        facts=facts,
        narrative=narrative,
        language=language,
    )
    markdown = render_markdown(
        report_id=report_id,
        generated_at="2026-04-01 09:00 UTC",
        facts=facts,
        narrative=narrative,
        language=language,
    )
    return html, markdown


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_template_report_renders_as_its_golden_html_and_markdown(
    case: str, language: Language
) -> None:
    inputs, scope = CASES[case]
    facts = compute_facts(inputs)
    narrative = template_narrative(facts, language)
    html, markdown = _render("golden-1", scope, facts, narrative, language)
    _check(f"{case}.template.{language}.html", html)
    _check(f"{case}.template.{language}.md", markdown)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_model_narrative_renders_as_its_golden_html_and_markdown(language: Language) -> None:
    inputs, scope = CASES["site"]
    facts = compute_facts(inputs)
    html, markdown = _render("golden-2", scope, facts, _claude_narrative(facts), language)
    _check(f"site.claude.{language}.html", html)
    _check(f"site.claude.{language}.md", markdown)


def test_the_prompt_and_its_schema_are_those_of_the_golden_files() -> None:
    facts = compute_facts(CASES["site"][0])
    _check("system_prompt.txt", SYSTEM_PROMPT)
    _check("output_schema.json", json.dumps(OUTPUT_SCHEMA, indent=1) + "\n")
    _check("user_message.ko.txt", user_message(facts, "ko") + "\n")
