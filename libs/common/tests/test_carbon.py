from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from itertools import pairwise

import pytest

from powerflow_common.carbon import (
    FACTOR_SET_KR_GIR,
    FACTOR_SET_ORIGINAL,
    SEED_FACTORS,
    EmissionFactor,
    FactorNotFound,
    co2_kg,
    market_based_co2_kg,
    select_factor,
)


def factor(
    kg: float,
    valid_from: date | None = None,
    valid_to: date | None = None,
    *,
    id: int = 0,
    factor_set: str = "test",
    region: str = "KR",
) -> EmissionFactor:
    return EmissionFactor(
        id=id,
        factor_set=factor_set,
        region=region,
        valid_from=valid_from,
        valid_to=valid_to,
        kg_co2e_per_kwh=kg,
        source="test",
        method="location",
    )


def kr_gir(at: datetime | date) -> float:
    return select_factor(
        SEED_FACTORS, factor_set=FACTOR_SET_KR_GIR, region="KR", at=at
    ).kg_co2e_per_kwh


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2015, 6, 1, tzinfo=UTC), 0.4781),
        (datetime(2019, 12, 31, 23, 59, tzinfo=UTC), 0.4781),
        (datetime(2020, 1, 1, tzinfo=UTC), 0.4541),
        (datetime(2022, 12, 31, 12, tzinfo=UTC), 0.4541),
        (datetime(2023, 1, 1, tzinfo=UTC), 0.4173),
        (datetime(2026, 3, 1, tzinfo=UTC), 0.4173),
    ],
)
def test_kr_gir_factor_is_chosen_by_consumption_period(at: datetime, expected: float) -> None:
    assert kr_gir(at) == expected


def test_valid_from_is_inclusive_and_valid_to_is_exclusive() -> None:
    factors = [factor(1.0, None, date(2020, 1, 1)), factor(2.0, date(2020, 1, 1), None)]

    def pick(on: date) -> float:
        return select_factor(factors, factor_set="test", region="KR", at=on).kg_co2e_per_kwh

    assert pick(date(2019, 12, 31)) == 1.0
    assert pick(date(2020, 1, 1)) == 2.0


def test_most_specific_factor_wins_when_several_match() -> None:
    factors = [
        factor(9.0, None, None, id=1),
        factor(2.0, date(2024, 1, 1), None, id=2),
        factor(1.0, date(2020, 1, 1), None, id=3),
    ]

    chosen = select_factor(factors, factor_set="test", region="KR", at=date(2024, 6, 1))

    assert chosen.id == 2
    assert select_factor(factors, factor_set="test", region="KR", at=date(2010, 1, 1)).id == 1


def test_selection_does_not_depend_on_input_order() -> None:
    factors = [
        factor(1.0, date(2024, 1, 1), None, id=1),
        factor(2.0, date(2024, 1, 1), date(2025, 1, 1), id=2),
    ]

    for ordering in (factors, factors[::-1]):
        assert select_factor(ordering, factor_set="test", region="KR", at=date(2024, 5, 1)).id == 2


def test_aware_datetime_is_matched_by_its_own_calendar_date() -> None:
    from zoneinfo import ZoneInfo

    factors = [factor(1.0, None, date(2023, 1, 1)), factor(2.0, date(2023, 1, 1), None)]
    # 2022-12-31 16:00 UTC is already 2023-01-01 in Seoul.
    seoul = datetime(2022, 12, 31, 16, tzinfo=UTC).astimezone(ZoneInfo("Asia/Seoul"))

    assert select_factor(factors, factor_set="test", region="KR", at=seoul).kg_co2e_per_kwh == 2.0


def test_missing_factor_raises_factor_not_found_naming_set_region_and_date() -> None:
    with pytest.raises(FactorNotFound, match=r"'kr-gir'.*'JP'.*2024-05-01"):
        select_factor(SEED_FACTORS, factor_set="kr-gir", region="JP", at=date(2024, 5, 1))


def test_factor_outside_every_validity_window_is_not_found() -> None:
    factors = [factor(1.0, date(2024, 1, 1), date(2025, 1, 1))]

    with pytest.raises(FactorNotFound):
        select_factor(factors, factor_set="test", region="KR", at=date(2025, 1, 1))


def test_original_set_is_0_478_at_all_times() -> None:
    for at in (date(1990, 1, 1), date(2024, 5, 1), date(2099, 1, 1)):
        chosen = select_factor(SEED_FACTORS, factor_set=FACTOR_SET_ORIGINAL, region="KR", at=at)
        assert chosen.kg_co2e_per_kwh == 0.478
        assert chosen.source == "powerflow prototype (0.478 kgCO2/kWh)"


def test_uk_2025_factor_is_desnz_0_177() -> None:
    chosen = select_factor(SEED_FACTORS, factor_set="uk-desnz", region="GB", at=date(2025, 7, 1))

    assert chosen.kg_co2e_per_kwh == 0.177
    assert "DESNZ" in chosen.source


def test_seed_factor_windows_of_a_set_and_region_never_overlap() -> None:
    windows: dict[tuple[str, str], list[EmissionFactor]] = defaultdict(list)
    for f in SEED_FACTORS:
        windows[(f.factor_set, f.region)].append(f)
        assert f.source
        assert 0 < f.kg_co2e_per_kwh < 2
        assert f.valid_from is None or f.valid_to is None or f.valid_from < f.valid_to

    for rows in windows.values():
        rows.sort(key=lambda f: f.valid_from or date.min)
        for earlier, later in pairwise(rows):
            assert earlier.valid_to is not None
            assert later.valid_from is not None
            assert earlier.valid_to <= later.valid_from


def test_co2_is_energy_times_factor() -> None:
    assert co2_kg(1000.0, factor(0.4173)) == pytest.approx(417.3)
    assert co2_kg(0.0, factor(0.4173)) == 0.0


def test_negative_energy_is_rejected() -> None:
    with pytest.raises(ValueError):
        co2_kg(-1.0, factor(0.5))
    with pytest.raises(ValueError):
        market_based_co2_kg(-1.0, 0.0, factor(0.5))
    with pytest.raises(ValueError):
        market_based_co2_kg(1.0, -1.0, factor(0.5))


def test_market_based_without_contracts_equals_location_based_and_says_so() -> None:
    f = factor(0.5)

    kg, note = market_based_co2_kg(200.0, 0.0, f)

    assert kg == co2_kg(200.0, f)
    assert "equals location-based" in note


def test_market_based_subtracts_contracted_renewable_energy() -> None:
    kg, note = market_based_co2_kg(200.0, 150.0, factor(0.5))

    assert kg == pytest.approx(25.0)
    assert "150 kWh covered" in note
    assert "remaining 50 kWh" in note


def test_market_based_is_floored_at_zero_when_contracts_exceed_consumption() -> None:
    kg, note = market_based_co2_kg(100.0, 250.0, factor(0.5))

    assert kg == 0.0
    assert "100 kWh covered" in note
