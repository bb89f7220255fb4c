"""Market-based Scope 2 from renewable contracts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from powerflow_common.scope2 import (
    NO_CONTRACTS_NOTE,
    ContractPeriod,
    contracted_kwh_in,
    market_based_scope2,
)

JUNE = ContractPeriod(
    period_start=date(2024, 6, 1), period_end=date(2024, 6, 30), energy_kwh=300.0, instrument="REC"
)


def test_without_contracts_market_based_equals_location_based_and_says_so() -> None:
    result = market_based_scope2(100.0, 47.8, 0.0)
    assert result.market_co2_kg == result.location_co2_kg == 47.8
    assert result.note == NO_CONTRACTS_NOTE


def test_contracted_kwh_are_subtracted_and_the_rest_keeps_its_grid_factor() -> None:
    result = market_based_scope2(100.0, 47.8, 25.0)
    assert result.covered_kwh == 25.0
    assert result.residual_kwh == 75.0
    assert result.market_co2_kg == pytest.approx(47.8 * 0.75)
    assert "no residual-mix factor" in result.note


def test_contracts_beyond_consumption_floor_market_based_at_zero() -> None:
    result = market_based_scope2(10.0, 4.78, 25.0)
    assert result.market_co2_kg == 0.0
    assert result.covered_kwh == 10.0


def test_a_contract_is_spread_over_its_local_days_inclusive() -> None:
    # A Seoul day of June: 15:00 UTC the day before to 15:00 UTC.
    day = contracted_kwh_in(
        [JUNE],
        datetime(2024, 6, 9, 15, tzinfo=UTC),
        datetime(2024, 6, 10, 15, tzinfo=UTC),
        "Asia/Seoul",
    )
    assert day == pytest.approx(10.0)
    whole = contracted_kwh_in(
        [JUNE],
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 8, 1, tzinfo=UTC),
        "Asia/Seoul",
    )
    assert whole == pytest.approx(300.0)


def test_a_contract_outside_the_period_contributes_nothing() -> None:
    assert (
        contracted_kwh_in(
            [JUNE], datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC), "UTC"
        )
        == 0.0
    )
