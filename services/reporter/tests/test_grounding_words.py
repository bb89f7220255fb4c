"""Grounding of numbers written in words (English and Korean) and of placeholders by section.

Pure: no database, no model. The word renderers below are the tests' own, so the parser is
checked against an independent writer of numbers.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pf_report_facts import known_inputs

from powerflow_reporter.facts import compute_facts
from powerflow_reporter.grounding import find_offences
from powerflow_reporter.labels import assign_labels
from powerflow_reporter.narrative import narrative_offences, template_narrative
from powerflow_reporter.numberwords import find_word_numbers, parse_english, parse_korean
from powerflow_reporter.sections import allowed_in

FIXTURES = Path(__file__).with_name("fixtures")
YEARS = {2026}
# Facts the prose fixtures cite, and a device label.
FIXTURE_IDS = {
    "period_start_date",
    "period_end_date",
    "scope_label",
    "total_kwh",
    "co2_location_kg",
    "device_top1_name",
    "device_top1_kwh",
    "coverage_pct",
    "corr_temperature_r",
    "peak_hour_w",
    "avg_daily_kwh",
    "device_2",
}


def _words(text: str) -> list[tuple[str, float | None]]:
    return [(n.text, n.value) for n in find_word_numbers(text)]


# --- the cases --------------------------------------------------------------------------


def test_about_ten_thousand_kwh_in_words_fails_grounding() -> None:
    offences = find_offences("We used about ten thousand kWh.", {"total_kwh"}, YEARS)
    assert [(o.reason, o.token) for o in offences] == [("number_words", "ten thousand")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("about ten thousand kWh", [("ten thousand", 10000)]),
        ("a hundred and five kWh", [("a hundred and five", 105)]),
        ("3 million kWh", [("3 million", 3_000_000)]),
        ("2.5 million tonnes", [("2.5 million", 2_500_000)]),
        ("twelve percent", [("twelve", 12)]),
        ("twelve per cent", [("twelve", 12)]),
        ("twenty-one", [("twenty-one", 21)]),
        ("nine point five kWh", [("nine point five", 9.5)]),
        ("Twelve kWh", [("Twelve", 12)]),
        ("one and two", [("one and two", None)]),  # numbers, not one value: still counted
        ("3만", [("3만", 30000)]),
        ("3만 킬로와트시", [("3만", 30000)]),
        ("천 킬로와트시", [("천", 1000)]),
        ("천킬로와트시를", [("천", 1000)]),
        ("만 이천", [("만 이천", 12000)]),
        ("1만 2천 kWh", [("1만 2천", 12000)]),
        ("1,200만", [("1,200만", 12_000_000)]),
        ("삼천오백", [("삼천오백", 3500)]),
        ("일억 오천만 톤", [("일억 오천만", 150_000_000)]),
        ("다섯 톤", [("다섯", 5)]),
        ("스물다섯 퍼센트", [("스물다섯", 25)]),
        ("이천 킬로와트시의", [("이천", 2000)]),
    ],
)
def test_numbers_in_words_are_found_with_their_value(
    text: str, expected: list[tuple[str, float | None]]
) -> None:
    assert _words(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "one of the sites",
        "one or two days",
        "at one point the load rose",
        "a one-off event",
        "the top ten consumers",
        "twelve",
        "만약 부하가 줄면",
        "만들다",
        "천천히 감소했다",
        "일부 기기",
        "이 사업장",
        "이 조명은",
        "구조가 바뀌면",
        "일조량이 많다",
        "사이에",
        "일이 많다",
        "이 평균은",
        "이 프로그램",
        "한 시간 동안",
        "한국",
        "이만큼의",
        "만족스럽다",
    ],
)
def test_ordinary_words_are_not_numbers(text: str) -> None:
    assert _words(text) == []


@pytest.mark.parametrize("name", ["prose_en.txt", "prose_ko.txt"])
def test_ordinary_report_prose_passes_grounding(name: str) -> None:
    prose = (FIXTURES / name).read_text(encoding="utf-8")
    assert find_offences(prose, FIXTURE_IDS, YEARS) == []


def test_a_year_of_the_period_may_be_written_in_words() -> None:
    text = "In two thousand and twenty-six the site used {{total_kwh}}."
    assert find_offences(text, {"total_kwh"}, YEARS) == []
    assert find_offences(text, {"total_kwh"}, {2025})[0].reason == "number_words"


def test_korean_number_words_fail_grounding_once_each() -> None:
    text = (
        "사용량은 약 3만 킬로와트시였습니다. 배출량은 천 킬로그램입니다. 기기는 만 이천 대입니다."
    )
    offences = find_offences(text, set(), YEARS)
    assert [(o.reason, o.token) for o in offences] == [
        ("number_words", "3만"),
        ("number_words", "천"),
        ("number_words", "만 이천"),
    ]


# --- the template ------------------------------------------------------------------------------


def _as_answer(narrative: Any) -> dict[str, Any]:
    return {
        **narrative.sections,
        "recommendations": [asdict(r) for r in narrative.recommendations],
    }


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_template_narrative_passes_every_grounding_rule(language: str) -> None:
    facts = compute_facts(known_inputs(contracted_kwh=10.0))
    known = set(facts.values) | set(assign_labels(facts).names)
    narrative = template_narrative(facts, language)  # type: ignore[arg-type]
    assert len(narrative.recommendations) >= 1
    assert narrative_offences(_as_answer(narrative), known, YEARS) == []


# --- placeholders by section --------------------------------------------------------------------


def _answer(**overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "executive_summary": "The site used {{total_kwh}}.",
        "consumption_analysis": "The largest consumer was {{device_top1_name}}.",
        "emissions": "Emissions were {{co2_location_kg}}.",
        "environmental_correlations": "The coefficient was {{corr_temperature_r}}.",
        "electricity_cost": "The period cost {{cost1_energy_related_total}} {{cost1_currency}}.",
        "baseline_savings": "Savings were {{baseline1_savings_pct}}.",
        "alerts": "There were {{alerts_count}} alerts.",
        "recommendations": [
            {
                "text": "Lower the night base load: {{savings_night_base_kwh}} "
                "({{savings_night_base_pct}}).",
                "cites": ["savings_night_base_kwh"],
            }
        ],
    }
    answer.update(overrides)
    return answer


KNOWN = {
    "total_kwh",
    "device_top1_name",
    "co2_location_kg",
    "corr_temperature_r",
    "savings_night_base_kwh",
    "savings_night_base_pct",
    "savings_bright_lighting_kwh",
    "cost1_energy_related_total",
    "cost1_currency",
    "baseline1_savings_pct",
    "alerts_count",
}


def test_placeholders_in_their_own_sections_pass() -> None:
    assert narrative_offences(_answer(), KNOWN, YEARS) == []


@pytest.mark.parametrize(
    ("overrides", "token"),
    [
        ({"executive_summary": "Up to {{savings_night_base_kwh}} can be saved."}, "savings"),
        ({"consumption_analysis": "The coefficient was {{corr_temperature_r}}."}, "corr"),
        (
            {
                "recommendations": [
                    {"text": "Switch lights off: {{savings_bright_lighting_kwh}}.", "cites": []}
                ]
            },
            "savings_bright",
        ),
        (
            {
                "recommendations": [
                    {
                        "text": "Switch lights off: {{savings_bright_lighting_kwh}}.",
                        "cites": ["savings_night_base_kwh"],
                    }
                ]
            },
            "savings_bright",
        ),
    ],
)
def test_a_placeholder_outside_its_section_is_an_offence(
    overrides: dict[str, Any], token: str
) -> None:
    offences = narrative_offences(_answer(**overrides), KNOWN, YEARS)
    assert [o.reason for o in offences] == ["misplaced_placeholder"]
    assert token in offences[0].token


def test_labels_and_facts_of_no_section_are_allowed_everywhere() -> None:
    known = KNOWN | {"device_3"}
    assert "device_3" in allowed_in("executive_summary", known)
    assert "total_kwh" in allowed_in("recommendations", known)
    assert "savings_night_base_kwh" not in allowed_in("recommendations", known)


# --- properties: any number written in words reads back ---------------------------------------

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _english_below_thousand(n: int, with_and: bool) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        tens, ones = divmod(rest, 10)
        part = _ONES[rest] if rest < 20 else _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
        words.append(f"and {part}" if hundreds and with_and else part)
    return " ".join(words)


def english(n: int, with_and: bool = False) -> str:
    """``n`` in English words (below a trillion), British "and" after hundreds if asked."""
    if n == 0:
        return "zero"
    words = []
    for scale, name in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"), (1, "")):
        count, n = divmod(n, scale)
        if count:
            words.append(f"{_english_below_thousand(count, with_and)} {name}".strip())
    return " ".join(words)


_KO_DIGITS = "영일이삼사오육칠팔구"


def korean(n: int, spaced: bool = True) -> str:
    """``n`` in Sino-Korean (below 10^16): 일 left out before 십, 백, 천 and a lone 만."""
    groups = []
    for unit, name in ((10**12, "조"), (10**8, "억"), (10**4, "만"), (1, "")):
        count, n = divmod(n, unit)
        if not count:
            continue
        part = ""
        for small, small_name in ((1000, "천"), (100, "백"), (10, "십"), (1, "")):
            digit, count = divmod(count, small)
            if digit:
                part += ("" if digit == 1 and small > 1 else _KO_DIGITS[digit]) + small_name
        groups.append("" if part == "일" and name == "만" else part)
        groups[-1] += name
    return (" " if spaced else "").join(groups)


_NATIVE_ONES = ["", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉"]
_NATIVE_TENS = ["", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"]


@given(st.integers(min_value=0, max_value=10**12 - 1), st.booleans())
def test_any_english_number_in_words_parses_back(n: int, with_and: bool) -> None:
    words = english(n, with_and)
    assert parse_english(words) == n
    assert _words(f"about {words} kWh") == [(words, n)]


# Below 2**53, where a float still holds every integer.
@given(st.integers(min_value=1, max_value=10**15 - 1), st.booleans())
def test_any_korean_number_in_words_parses_back(n: int, spaced: bool) -> None:
    words = korean(n, spaced)
    assert parse_korean(words) == n
    assert _words(f"약 {words} 킬로와트시를") == [(words, n)]


@given(st.integers(min_value=1, max_value=99))
def test_any_native_korean_number_parses_back(n: int) -> None:
    words = _NATIVE_TENS[n // 10] + _NATIVE_ONES[n % 10]
    assert parse_korean(words) == n
    assert _words(f"{words} 톤") == [(words, n)]


@given(st.text(alphabet="천만일이사구조약들다히부 ", max_size=12))
def test_korean_scanning_never_fails(text: str) -> None:
    for number in find_word_numbers(text):
        assert text[number.start : number.end] == number.text
