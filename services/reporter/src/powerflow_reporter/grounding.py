"""Grounding by construction: the model cites facts as ``{{fact_id}}``; any other number fails.

The check scans the model's own text (before placeholders are filled in) for digits that are
not part of an allowed name, and for placeholders that name no fact.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Offence:
    """A sentence that quotes a number of its own or a placeholder that names no fact."""

    sentence: str
    reason: str  # "number" or "unknown_placeholder"
    token: str


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, split after . ! ? 。 and at line breaks."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def find_offences(text: str, fact_ids: Collection[str], years: Iterable[int]) -> list[Offence]:
    """Every number and unknown placeholder in ``text``, sentence by sentence."""
    allowed_years = re.compile(
        "|".join(rf"(?<!\d){y}(?!\d)" for y in sorted(set(years))) or r"(?!x)x"
    )
    offences: list[Offence] = []
    for sentence in split_sentences(text):
        rest = sentence
        for match in PLACEHOLDER.finditer(sentence):
            if match.group(1) not in fact_ids:
                offences.append(Offence(sentence, "unknown_placeholder", match.group(0)))
        rest = PLACEHOLDER.sub(" ", rest)
        rest = _ALLOWED.sub(" ", rest)
        rest = allowed_years.sub(" ", rest)
        offences.extend(Offence(sentence, "number", m.group(0)) for m in _NUMBER.finditer(rest))
    return offences


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """``text`` with each known ``{{fact_id}}`` replaced by its value (unknown ones stay)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
