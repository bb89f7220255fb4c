"""Grounding by construction: the model cites facts as ``{{fact_id}}``; any other number fails.

The check scans the model's own text (before placeholders are filled in) for digits that are
not part of an allowed name, for numbers written in words (numberwords: "ten thousand kWh",
"3만", "천 킬로와트시"), for placeholders that name no fact and for placeholders of facts that
belong to another section.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from powerflow_reporter.numberwords import find_word_numbers

__all__ = [
    "ALLOWED_NAMES",
    "PLACEHOLDER",
    "Offence",
    "fill_placeholders",
    "find_offences",
    "split_sentences",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]*)\s*\}\}")

# Names that contain digits but are not quantities: the explicit allowed list.
ALLOWED_NAMES: tuple[str, ...] = (
    r"CO\s?2e?",
    r"CO₂e?",
    r"(?:Scope|스코프)\s?[123]",
    r"GRI\s?30[1-6]-\d{1,2}",
    r"GRI\s?30[1-6]",
    r"ISO\s?50001",
    r"ISO\s?14001",
    r"ISO\s?14064(?:-[123])?",
    r"24/7",
)
_ALLOWED = re.compile("|".join(f"(?:{p})" for p in ALLOWED_NAMES), re.IGNORECASE)
# Any decimal digit in any script (Python's \d is Unicode-aware), with what sticks to it.
_NUMBER = re.compile(r"[\d][\d.,:/%-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")
# What stands where a placeholder, an allowed name or a year was: not a space, so that the words
# on either side of it are not read as one number ("ten {{x}} thousand"), and no word itself.
_GAP = " \ufffc "


@dataclass(frozen=True, slots=True)
class Offence:
    """A sentence that quotes a number of its own or a placeholder it may not use."""

    sentence: str
    # "number" (digits), "number_words" (a number in words), "unknown_placeholder" (names no
    # fact) or "misplaced_placeholder" (a fact of another section)
    reason: str
    token: str


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, split after . ! ? 。 and at line breaks."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def find_offences(
    text: str,
    fact_ids: Collection[str],
    years: Iterable[int],
    *,
    allowed_here: Collection[str] | None = None,
) -> list[Offence]:
    """Every number and wrong placeholder in ``text``, sentence by sentence.

    ``fact_ids`` are the placeholders that exist; ``allowed_here``, when given, those this
    part of the report may use (a known one outside it is misplaced). A number, in digits or in
    words, is allowed only as a year of the period or inside an allowed name.
    """
    year_set = set(years)
    allowed_years = re.compile(
        "|".join(rf"(?<!\d){y}(?!\d)" for y in sorted(year_set)) or r"(?!x)x"
    )
    offences: list[Offence] = []
    for sentence in split_sentences(text):
        for match in PLACEHOLDER.finditer(sentence):
            if match.group(1) not in fact_ids:
                offences.append(Offence(sentence, "unknown_placeholder", match.group(0)))
            elif allowed_here is not None and match.group(1) not in allowed_here:
                offences.append(Offence(sentence, "misplaced_placeholder", match.group(0)))
        rest = PLACEHOLDER.sub(_GAP, sentence)
        rest = _ALLOWED.sub(_GAP, rest)
        rest = allowed_years.sub(_GAP, rest)
        # Numbers in words first: "3 million" is one number, reported once.
        spans = []
        for number in find_word_numbers(rest):
            spans.append((number.start, number.end))
            if number.value is None or number.value not in year_set:
                offences.append(Offence(sentence, "number_words", number.text))
        for start, end in reversed(spans):
            rest = rest[:start] + _GAP + rest[end:]
        offences.extend(Offence(sentence, "number", m.group(0)) for m in _NUMBER.finditer(rest))
    return offences


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """``text`` with each known ``{{fact_id}}`` replaced by its value (unknown ones stay)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
