"""Numbers written in words, English and Korean, found in report prose (pure).

The grounding check forbids the model any number of its own; digits are easy to see, but "about
ten thousand kWh", "3만" or "천 킬로와트시" state a quantity just as well. Number words are also
ordinary words ("one of the sites", 만약, 만들다, 천천히, 일부, 이 사업장), so a word counts as a
number only when it stands next to a digit, another numeral word or a unit:

- English: a run of numeral words ("ten thousand", "a hundred and five", "twenty-one"), one
  numeral word with a digit ("3 million") or with a unit after it ("twelve percent").
- Korean: a numeral glued to a digit ("3만", "1만 2천"), a numeral before a unit ("천 킬로와트시",
  "다섯 톤", "천킬로와트시를"), numerals standing as words side by side ("만 이천"), or one word of
  at least three numeral syllables that reads as one number ("삼천오백"). A Korean word whose
  numeral syllables do not read as one number (천천히, 일이, 사이) is prose.

English number words are parsed with text2num; Korean numerals (Sino-Korean and native) by the
small grammar below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from text_to_num import text2num

__all__ = [
    "EN_UNITS",
    "KO_UNITS",
    "WordNumber",
    "find_word_numbers",
    "parse_english",
    "parse_korean",
]


@dataclass(frozen=True, slots=True)
class WordNumber:
    """A number written (at least partly) in words: where it is, its text and its value.

    ``value`` is None when the words read as a number but not as one value ("one and two").
    """

    start: int
    end: int
    text: str
    value: float | None


# --- English ------------------------------------------------------------------------------------

_EN_ONES = [
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
_EN_DIGITS = _EN_ONES[:10]  # the words of the digits after "point"
_EN_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_SCALES = ["hundred", "thousand", "million", "billion", "trillion"]
EN_NUMERALS = frozenset(_EN_ONES + _EN_TENS + _EN_SCALES)
# "a hundred", "an eighty..." no: an article is a numeral only right before a scale word.
_EN_ARTICLES = frozenset({"a", "an"})
# Inside a run: "a hundred and five", "nine point five".
_EN_JOINERS = frozenset({"and", "point"})
# Units of what a report measures (energy, power, mass, share, area, temperature); words of
# time ("one day") are left out on purpose: they are ordinary prose far more often than not.
EN_UNITS = frozenset(
    {
        "wh",
        "kwh",
        "mwh",
        "gwh",
        "w",
        "kw",
        "mw",
        "gw",
        "watt",
        "watts",
        "watt-hour",
        "watt-hours",
        "kilowatt",
        "kilowatts",
        "kilowatt-hour",
        "kilowatt-hours",
        "megawatt",
        "megawatts",
        "megawatt-hour",
        "megawatt-hours",
        "gigawatt-hours",
        "gj",
        "gigajoule",
        "gigajoules",
        "kg",
        "kilogram",
        "kilograms",
        "kilo",
        "kilos",
        "t",
        "tonne",
        "tonnes",
        "ton",
        "tons",
        "tco2e",
        "kgco2e",
        "%",
        "percent",
        "per-cent",
        "percentage",
        "pct",
        "m²",
        "m2",
        "°c",
        "degrees",
        "lux",
    }
)
_EN_TOKEN = re.compile(
    r"(?P<digits>\d[\d,]*(?:\.\d+)?)|(?P<word>[A-Za-z]+(?:-[A-Za-z]+)*|m²|°[CcFf])|(?P<pct>%)"
)
_SPACES = re.compile(r"[ \t\u00a0]*")


@dataclass(frozen=True, slots=True)
class _Token:
    start: int
    end: int
    text: str
    kind: str  # digits, word or pct


def _en_tokens(text: str) -> list[_Token]:
    return [
        _Token(m.start(), m.end(), m.group(0), m.lastgroup or "word")
        for m in _EN_TOKEN.finditer(text)
    ]


def _adjacent(text: str, left: _Token, right: _Token) -> bool:
    """Only spaces between the two tokens (a comma or a full stop separates them)."""
    return _SPACES.fullmatch(text, left.end, right.start) is not None


def _en_numeral_parts(word: str) -> int:
    """How many numeral words ``word`` is (``twenty-one``: 2), 0 if it is not one."""
    parts = word.lower().split("-")
    return len(parts) if all(p in EN_NUMERALS for p in parts) else 0


def parse_english(words: str) -> float:
    """The value of English number words ("a hundred and five" is 105); ValueError if none."""
    normal = [w for w in words.lower().replace("-", " ").split() if w]
    if normal and normal[0] in _EN_ARTICLES:
        normal[0] = "one"
    whole, decimals = normal, []
    if "point" in normal:  # "nine point five": text2num reads whole numbers only
        at = normal.index("point")
        whole, decimals = normal[:at], normal[at + 1 :]
        if not decimals or not all(d in _EN_DIGITS for d in decimals):
            raise ValueError(f"not one English number: {words!r}")
    try:
        value = float(text2num(" ".join(whole), "en")) if whole else 0.0
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not one English number: {words!r}") from exc
    if decimals:
        value += float("0." + "".join(str(_EN_DIGITS.index(d)) for d in decimals))
    return value


def _is_en_unit(token: _Token, following: _Token | None, text: str) -> bool:
    word = token.text.lower()
    if word in EN_UNITS:
        return True
    # "per cent", two words.
    return (
        word == "per"
        and following is not None
        and following.text.lower() == "cent"
        and _adjacent(text, token, following)
    )


def _english(text: str) -> list[WordNumber]:
    tokens = _en_tokens(text)
    found: list[WordNumber] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        is_article = (
            token.text.lower() in _EN_ARTICLES
            and i + 1 < len(tokens)
            and tokens[i + 1].text.lower() in _EN_SCALES
            and _adjacent(text, token, tokens[i + 1])
        )
        if not (is_article or _en_numeral_parts(token.text)):
            i += 1
            continue
        # The run: numeral words, joined by spaces, "and" or "point" between numeral words.
        first, last, numerals = i, i, 1 if is_article else _en_numeral_parts(token.text)
        j = i + 1
        while j < len(tokens) and _adjacent(text, tokens[j - 1], tokens[j]):
            parts = _en_numeral_parts(tokens[j].text)
            if parts:
                numerals += parts
                last = j
                j += 1
                continue
            joiner = tokens[j].text.lower() in _EN_JOINERS
            if (
                joiner
                and j + 1 < len(tokens)
                and _adjacent(text, tokens[j], tokens[j + 1])
                and _en_numeral_parts(tokens[j + 1].text)
            ):
                j += 1
                continue
            break
        before = tokens[first - 1] if first > 0 else None
        after = tokens[last + 1] if last + 1 < len(tokens) else None
        digit_before = (
            before is not None
            and before.kind == "digits"
            and _adjacent(text, before, tokens[first])
        )
        digit_after = (
            after is not None and after.kind == "digits" and _adjacent(text, tokens[last], after)
        )
        unit_after = (
            after is not None
            and _adjacent(text, tokens[last], after)
            and _is_en_unit(after, tokens[last + 2] if last + 2 < len(tokens) else None, text)
        )
        if numerals >= 2 or digit_before or digit_after or unit_after:
            start = before.start if digit_before and before is not None else tokens[first].start
            end = tokens[last].end
            words = text[tokens[first].start : end]
            value: float | None
            try:
                value = parse_english(words)
                if digit_before and before is not None:
                    value *= float(before.text.replace(",", ""))
            except ValueError:
                value = None
            found.append(WordNumber(start, end, text[start:end], value))
        i = last + 1
    return found


# --- Korean -------------------------------------------------------------------------------------

# Sino-Korean digits; 영 is zero (공, also zero, is left out: 공공, 공사 are everyday words).
KO_DIGITS: dict[str, int] = {
    "영": 0,
    "일": 1,
    "이": 2,
    "삼": 3,
    "사": 4,
    "오": 5,
    "육": 6,
    "륙": 6,
    "칠": 7,
    "팔": 8,
    "구": 9,
}
# Units within a group of four digits, and the units of groups of four (10^4, 10^8, 10^12).
KO_SMALL_UNITS: dict[str, int] = {"십": 10, "백": 100, "천": 1000}
KO_BIG_UNITS: dict[str, int] = {"만": 10**4, "억": 10**8, "조": 10**12}
_KO_NUMERAL_CHARS = frozenset(KO_DIGITS) | frozenset(KO_SMALL_UNITS) | frozenset(KO_BIG_UNITS)
# Native Korean numerals (up to 99), with the short forms used before a counter (한, 두, 세).
KO_NATIVE_ONES: dict[str, int] = {
    "하나": 1,
    "한": 1,
    "둘": 2,
    "두": 2,
    "셋": 3,
    "세": 3,
    "넷": 4,
    "네": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
}
KO_NATIVE_TENS: dict[str, int] = {
    "열": 10,
    "스물": 20,
    "스무": 20,
    "서른": 30,
    "마흔": 40,
    "쉰": 50,
    "예순": 60,
    "일흔": 70,
    "여든": 80,
    "아흔": 90,
}
# Units of what a report measures, in Korean and as written in Korean text (kWh, %).
# 도 (degrees) and 원 (won) are left out: 도 is also a particle, and 일원, 사원 are words.
KO_UNITS: tuple[str, ...] = (
    "킬로와트시",
    "킬로와트",
    "메가와트시",
    "메가와트",
    "기가와트시",
    "와트시",
    "와트",
    "기가줄",
    "킬로그램",
    "킬로",
    "그램",
    "톤",
    "퍼센트",
    "프로",
    "제곱미터",
    "평방미터",
    "럭스",
)
# Particles and endings that may follow a number or a unit in the same word ("천을", "톤의").
KO_PARTICLES = frozenset(
    [
        "이",
        "가",
        "을",
        "를",
        "은",
        "는",
        "의",
        "에",
        "에서",
        "으로",
        "로",
        "와",
        "과",
        "도",
        "만",
        "까지",
        "부터",
        "이며",
        "이고",
        "이나",
        "나",
        "씩",
        "여",
        "가량",
        "정도",
        "쯤",
        "당",
        "이다",
        "입니다",
        "이었다",
        "였다",
        "이었습니다",
        "였습니다",
        "이상",
        "이하",
        "미만",
        "남짓",
    ]
)
# A word of this many numeral syllables that reads as one number is a number on its own.
KO_MIN_SYLLABLES_ALONE = 3
# Longest first, so "tonnes" is read before "t".
_ALL_UNITS = tuple(sorted({*KO_UNITS, *EN_UNITS}, key=len, reverse=True))
_KO_WORD = re.compile(r"\S+")
_KO_EDGE_PUNCT = "\"'“”‘’()[]{}<>«»「」『』.,;:!?…·~"
_ASCII_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def parse_korean(text: str) -> float:
    """The value of a Korean numeral ("만 이천" 12000, "3만" 30000, "스물다섯" 25).

    Sino-Korean: each group of four digits is written [d]천 [d]백 [d]십 [d] (units in falling
    order, a missing digit before a unit is one), followed by 만, 억 or 조 in falling order;
    ASCII digits may stand for a digit or a whole group ("1,200만"). Two digits in a row, or a
    unit not smaller than the one before it (천천, 일이, 사이), is not a number: ValueError.
    """
    compact = "".join(text.split())
    if not compact:
        raise ValueError("empty numeral")
    native = _parse_native(compact)
    if native is not None:
        return float(native)
    tokens = _sino_tokens(compact, text)
    if not tokens:
        raise ValueError(f"no numeral in {text!r}")
    total = 0.0
    group = 0.0
    pending: float | None = None
    last_small = last_big = float("inf")
    for kind, value, char in tokens:
        if kind == "digit":
            if pending is not None:
                raise ValueError(f"two digits in a row in {text!r}")
            pending = value
        elif kind == "small":
            if value >= last_small:
                raise ValueError(f"{char} out of order in {text!r}")
            group += (1.0 if pending is None else pending) * value
            pending, last_small = None, value
        else:
            if value >= last_big:
                raise ValueError(f"{char} out of order in {text!r}")
            group += pending or 0.0
            total += (group or 1.0) * value
            group, pending, last_small, last_big = 0.0, None, float("inf"), value
    return total + group + (pending or 0.0)


def _sino_tokens(compact: str, text: str) -> list[tuple[str, float, str]]:
    """``compact`` as (kind, value, text): a digit (or ASCII number), a small or a big unit."""
    tokens: list[tuple[str, float, str]] = []
    i = 0
    while i < len(compact):
        ascii_number = _ASCII_NUMBER.match(compact, i)
        char = compact[i]
        if ascii_number is not None:
            tokens.append(("digit", float(ascii_number.group(0).replace(",", "")), char))
            i = ascii_number.end()
            continue
        if char in KO_DIGITS:
            tokens.append(("digit", float(KO_DIGITS[char]), char))
        elif char in KO_SMALL_UNITS:
            tokens.append(("small", float(KO_SMALL_UNITS[char]), char))
        elif char in KO_BIG_UNITS:
            tokens.append(("big", float(KO_BIG_UNITS[char]), char))
        else:
            raise ValueError(f"{char!r} is not a numeral in {text!r}")
        i += 1
    return tokens


def _parse_native(compact: str) -> int | None:
    """A native numeral (하나, 스물다섯, 열한), or None when ``compact`` is not one."""
    if compact in KO_NATIVE_ONES:
        return KO_NATIVE_ONES[compact]
    for tens, value in KO_NATIVE_TENS.items():
        if compact == tens:
            return value
        rest = compact.removeprefix(tens)
        if rest != compact and rest in KO_NATIVE_ONES:
            return value + KO_NATIVE_ONES[rest]
    return None


def _native_prefix(core: str) -> str:
    """The longest native numeral at the start of ``core`` ("스물다섯" of "스물다섯째"), or ""."""
    best = ""
    for length in range(min(len(core), 4), 0, -1):
        if _parse_native(core[:length]) is not None:
            best = core[:length]
            break
    return best


def _sino_prefix(core: str) -> str:
    """The numeral characters and ASCII digits at the start of ``core``."""
    i = 0
    while i < len(core):
        ascii_number = _ASCII_NUMBER.match(core, i)
        if ascii_number is not None:
            i = ascii_number.end()
        elif core[i] in _KO_NUMERAL_CHARS:
            i += 1
        else:
            break
    return core[:i]


def _korean_syllables(numeral: str) -> int:
    return sum(1 for c in numeral if "가" <= c <= "힣")


def _unit_word(rest: str) -> bool:
    """``rest`` is a unit, alone or with a particle ("킬로와트시를"), not a longer word (평균)."""
    lowered = rest.lower()
    for unit in _ALL_UNITS:
        if lowered.startswith(unit):
            after = lowered[len(unit) :]
            if after == "" or after in KO_PARTICLES:
                return True
    return False


@dataclass(frozen=True, slots=True)
class _KoGroup:
    start: int  # of the numeral, in the text
    end: int
    numeral: str
    rest: str  # what follows the numeral in its word
    value: float | None  # None: the numeral characters do not read as one number


def _ko_group(text: str, word: re.Match[str]) -> _KoGroup | None:
    raw = word.group(0)
    lead = len(raw) - len(raw.lstrip(_KO_EDGE_PUNCT))
    core = raw.strip(_KO_EDGE_PUNCT)
    if not core:
        return None
    sino, native = _sino_prefix(core), _native_prefix(core)
    numeral = native if len(native) > len(sino) else sino
    if not numeral:
        return None
    start = word.start() + lead
    try:
        value: float | None = parse_korean(numeral)
    except ValueError:
        value = None
    return _KoGroup(start, start + len(numeral), numeral, core[len(numeral) :], value)


def _korean(text: str) -> list[WordNumber]:
    words = list(_KO_WORD.finditer(text))
    groups = [_ko_group(text, w) for w in words]
    found: list[WordNumber] = []
    i = 0
    while i < len(words):
        group = groups[i]
        if group is None or group.value is None:
            i += 1
            continue
        # Numerals standing as words side by side read as one number ("만 이천", "1만 2천").
        last, value, numeral, end_group = i, group.value, group.numeral, group
        while end_group.rest == "" and last + 1 < len(words):
            nxt = groups[last + 1]
            if nxt is None or not (
                nxt.rest == "" or nxt.rest in KO_PARTICLES or _unit_word(nxt.rest)
            ):
                break
            try:
                value = parse_korean(numeral + nxt.numeral)
            except ValueError:
                break
            numeral, end_group, last = numeral + nxt.numeral, nxt, last + 1
        syllables = _korean_syllables(numeral)
        next_is_unit = (
            end_group.rest == ""
            and last + 1 < len(words)
            and _unit_word(words[last + 1].group(0).strip(_KO_EDGE_PUNCT))
        )
        counted = syllables > 0 and (
            last > i  # numerals side by side
            or any(c.isascii() and c.isdigit() for c in numeral)  # glued to a digit: 3만
            or _unit_word(end_group.rest)
            or next_is_unit
            or syllables >= KO_MIN_SYLLABLES_ALONE
        )
        if counted:
            found.append(
                WordNumber(group.start, end_group.end, text[group.start : end_group.end], value)
            )
            i = last + 1
        else:
            i += 1
    return found


def find_word_numbers(text: str) -> list[WordNumber]:
    """Every number in ``text`` written at least partly in words, in order of appearance."""
    spans = sorted([*_english(text), *_korean(text)], key=lambda n: (n.start, -n.end))
    out: list[WordNumber] = []
    for number in spans:
        if out and number.start < out[-1].end:
            continue  # inside one already found
        out.append(number)
    return out
