"""Each section is declared once (sections.py) and reaches every output; the glossary, every fact.

The outputs: the prompt's section list and JSON schema, the template narrative, the HTML and the
Markdown. A section added to the table must appear in all of them with nothing else to edit.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import get_args

import pytest
from pf_report_facts import known_inputs

from powerflow_reporter import sections as sections_module
from powerflow_reporter.facts import FACT_GLOSSARY, Facts, compute_facts
from powerflow_reporter.formatting import Language
from powerflow_reporter.grounding import PLACEHOLDER
from powerflow_reporter.narrative import (
    OUTPUT_SCHEMA,
    SYSTEM_PROMPT,
    narrative_offences,
    output_schema,
    system_prompt,
    template_narrative,
)
from powerflow_reporter.render import MARKDOWN_AFTER, render_html, render_markdown
from powerflow_reporter.sections import (
    RECOMMENDATIONS,
    SECTIONS,
    Section,
    Sentence,
    Text,
    allowed_in,
    html_order,
)

LANGUAGES: tuple[Language, ...] = get_args(Language)
PARTIALS = Path(sections_module.__file__).with_name("templates") / "sections"
FACTS = compute_facts(known_inputs(contracted_kwh=10.0))

# A section as a later step would add it: one entry, citing facts that exist.
COST = Section(
    id="cost",
    title=Text(en="Cost of electricity", ko="전력 비용"),
    guidance="what the period's electricity cost",
    owns=("total_gj",),
    owns_name="cost facts",
    template=(
        Sentence(
            Text(en="The period used {{total_gj}}.", ko="기간 사용량은 {{total_gj}}입니다."),
            needs=("total_gj",),
        ),
    ),
)
WITH_COST = (*SECTIONS, COST)


def _texts() -> list[Text]:
    out = [RECOMMENDATIONS.title, RECOMMENDATIONS.none]
    out += [rule.text for rule in RECOMMENDATIONS.rules]
    for section in SECTIONS:
        out += [section.title, *(s.text for s in section.template)]
        out += [t for t in (section.html_title, *(s.otherwise for s in section.template)) if t]
    return out


def _render(facts: Facts, language: Language, table: tuple[Section, ...]) -> tuple[str, str]:
    narrative = template_narrative(facts, language, sections=table)
    html = render_html(
        report_id="r-1",
        generated_at="now",
        scope="site",
        facts=facts,
        narrative=narrative,
        language=language,
        sections=table,
    )
    markdown = render_markdown(
        report_id="r-1",
        generated_at="now",
        facts=facts,
        narrative=narrative,
        language=language,
        sections=table,
    )
    return html, markdown


def test_a_text_has_exactly_the_report_languages() -> None:
    assert {f.name for f in fields(Text)} == set(LANGUAGES)


def test_every_title_sentence_and_recommendation_is_written_in_every_language() -> None:
    for text in _texts():
        for language in LANGUAGES:
            assert text[language].strip(), f"{text} has no {language} text"


def test_section_ids_are_unique_and_html_after_names_a_section() -> None:
    ids = [s.id for s in SECTIONS]
    assert len(set(ids)) == len(ids)
    assert RECOMMENDATIONS.id not in ids
    assert all(s.owns_name for s in SECTIONS if s.owns), "the prompt names what a section owns"
    assert sorted(s.id for s in html_order(SECTIONS)) == sorted(ids)
    assert [s.id for s in html_order(SECTIONS)][:2] == ["executive_summary", "emissions"]
    with pytest.raises(ValueError, match="no such section"):
        html_order([Section("a", COST.title, "", (), html_after="nowhere")])


def test_every_fact_a_template_sentence_names_or_tests_exists() -> None:
    for section in SECTIONS:
        for sentence in section.template:
            named = set(sentence.needs) | {sentence.positive} - {None}
            for text in (sentence.text, sentence.otherwise):
                for language in LANGUAGES:
                    if text is not None:
                        named |= {m.group(1) for m in PLACEHOLDER.finditer(text[language])}
            assert named <= set(FACTS.values), f"{section.id}: {named - set(FACTS.values)}"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.id)
def test_every_section_appears_in_the_prompt_schema_template_html_and_markdown(
    section: Section, language: Language
) -> None:
    assert f"{section.id} ({section.guidance})" in SYSTEM_PROMPT
    assert OUTPUT_SCHEMA["properties"][section.id] == {"type": "string"}
    assert section.id in OUTPUT_SCHEMA["required"]
    narrative = template_narrative(FACTS, language)
    assert narrative.sections[section.id].strip()
    html, markdown = _render(FACTS, language, SECTIONS)
    assert f"<h2>{(section.html_title or section.title)[language]}</h2>" in html
    assert f"\n## {section.title[language]}\n" in markdown


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_section_added_to_the_table_reaches_every_output(language: Language) -> None:
    assert "cost (what the period's electricity cost), recommendations." in system_prompt(WITH_COST)
    assert "; cost facts (total_gj) only in cost." in system_prompt(WITH_COST)
    schema = output_schema(WITH_COST)
    assert schema["properties"]["cost"] == {"type": "string"}
    assert schema["required"][-2:] == ["cost", "recommendations"]
    narrative = template_narrative(FACTS, language, sections=WITH_COST)
    assert narrative.sections["cost"] == COST.template[0].text[language]
    html, markdown = _render(FACTS, language, WITH_COST)
    shown = f"{FACTS.value('total_gj'):,.3f} GJ"
    title = COST.title[language]
    assert html.index(f"<h2>{title}</h2>") < html.index(f"<h2>{RECOMMENDATIONS.title[language]}")
    assert shown in html.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]
    assert f"## {title}\n\n{narrative.sections['cost'].replace('{{total_gj}}', shown)}" in markdown


def test_a_fact_a_section_owns_is_misplaced_in_every_other_section() -> None:
    known = set(FACTS.values)
    assert "total_gj" in allowed_in("cost", known, sections=WITH_COST)
    assert "total_gj" not in allowed_in("emissions", known, sections=WITH_COST)
    assert "total_gj" in allowed_in("emissions", known)
    answer = {s.id: "The site used {{total_gj}}." for s in WITH_COST}
    offences = narrative_offences(
        {**answer, "recommendations": []}, known, {2026}, sections=WITH_COST
    )
    assert len(offences) == len(SECTIONS)
    assert {o.reason for o in offences} == {"misplaced_placeholder"}


def test_every_html_partial_and_markdown_block_belongs_to_a_section() -> None:
    ids = {s.id for s in SECTIONS}
    assert set(MARKDOWN_AFTER) <= ids
    names = sorted(p.name for p in PARTIALS.iterdir())
    assert names, "no partials found"
    for name in names:
        section, place, *_ = name.split(".")
        assert section in ids, f"{name}: no section {section}"
        assert place in ("before", "after"), name


# --- the glossary ------------------------------------------------------------------------------

_NOTE = re.compile(r"\([^)]*\)")
_RANGE = re.compile(r"([0-9]+)\.\.([0-9]+)")


def glossary_ids(glossary: str) -> set[str]:
    """Every fact id the glossary names, its shorthand expanded (see facts.FACT_GLOSSARY)."""
    out: set[str] = set()
    for line in glossary.splitlines():
        if line.startswith(" "):  # a description continued
            continue
        head = _NOTE.sub("", line).split(":", 1)[0]
        previous = ""
        for piece in re.split(r"[,;/]", head):
            if not piece.strip():
                continue
            name = piece.split()[0]
            if name.startswith("_"):
                name = previous.rsplit("_", 1)[0] + name
            else:
                previous = name
            found = _RANGE.search(name)
            if found is None:
                out.add(name)
                continue
            lo, hi = int(found.group(1)), int(found.group(2))
            out |= {name[: found.start()] + str(i) + name[found.end() :] for i in range(lo, hi + 1)}
    return out


def test_the_glossary_shorthand_reads_as_written() -> None:
    glossary = "a_b / _c, x_top1..3_name / _kwh (a note: not ids), zone: what a_b is\n  and c\n"
    assert glossary_ids(glossary) == {
        "a_b",
        "a_c",
        "zone",
        "x_top1_name",
        "x_top2_name",
        "x_top3_name",
        "x_top1_kwh",
        "x_top2_kwh",
        "x_top3_kwh",
    }


def test_the_glossary_names_every_fact_and_nothing_else() -> None:
    documented = glossary_ids(FACT_GLOSSARY)
    facts = set(FACTS.values)
    assert facts - documented == set(), "facts the glossary does not explain"
    assert documented - facts == set(), "glossary entries that are no fact"
