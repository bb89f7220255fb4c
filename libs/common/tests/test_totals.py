"""One rule for every total: who counts (with site history), contracts per site, Scope 2."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.totals import (
    BEGINNING,
    END_OF_TIME,
    NO_CONTRACTS_NOTE,
    ContractPeriod,
    Placement,
    SiteEnergy,
    contracted_kwh_in,
    counted_groups,
    market_based_scope2,
    placement_at,
    scope2_by_site,
    spans,
)

T0 = datetime(2026, 3, 15, 0, tzinfo=UTC)
JUNE = ContractPeriod(date(2024, 6, 1), date(2024, 6, 30), 300.0, "REC")


def counted(placements: list[Placement], at: datetime = T0) -> set[int]:
    return {s.device_id for s in spans(placements) if s.counted and s.covers(at)}


def test_per_site_main_meters_count_else_standalone_never_sub_meters_unassigned_alike() -> None:
    devices = [
        Placement(1, 1, "main", BEGINNING),
        Placement(2, 1, "sub", BEGINNING),
        Placement(3, 1, "standalone", BEGINNING),
        Placement(4, 2, "standalone", BEGINNING),
        Placement(5, 2, "sub", BEGINNING),
        # Site-less devices are one pseudo-site under the same rule: the main one counts.
        Placement(6, None, "main", BEGINNING),
        Placement(7, None, "standalone", BEGINNING),
        Placement(8, None, "sub", BEGINNING),
    ]
    assert counted(devices) == {1, 4, 6}
    # Without a site-less main meter, the site-less standalone devices count.
    assert counted([p for p in devices if p.device_id != 6]) == {1, 4, 7}


def test_a_moved_device_keeps_its_past_on_the_old_site() -> None:
    history = [
        Placement(1, 1, "standalone", BEGINNING),
        Placement(1, 2, "standalone", T0),
        Placement(2, 2, "main", BEGINNING),
    ]
    result = spans(history)
    before = placement_at(result, 1, T0 - timedelta(hours=1))
    after = placement_at(result, 1, T0)
    assert before is not None and (before.site_id, before.counted) == (1, True)
    # On site 2 it stands behind site 2's main meter: it no longer counts.
    assert after is not None and (after.site_id, after.counted) == (2, False)


def test_a_devices_earliest_placement_reaches_back_to_the_beginning_of_time() -> None:
    (span,) = spans([Placement(1, 3, "main", T0)])
    assert (span.start, span.end) == (BEGINNING, END_OF_TIME)


def test_a_site_loses_its_main_meter_and_its_standalone_devices_count_from_then_on() -> None:
    history = [
        Placement(1, 1, "main", BEGINNING),
        Placement(1, None, "main", T0),  # the main meter leaves site 1
        Placement(2, 1, "standalone", BEGINNING),
    ]
    assert counted(history, T0 - timedelta(hours=1)) == {1}
    assert counted(history, T0) == {1, 2}
    assert counted_groups(spans(history)) == [
        (BEGINNING, T0, (1,)),  # on site 1
        (T0, END_OF_TIME, (1, 2)),  # 1 unassigned, 2 on site 1
    ]


def test_a_device_asked_for_by_itself_counts_whatever_its_role() -> None:
    (span,) = spans([Placement(1, 1, "sub", BEGINNING)], every_device_counts=True)
    assert span.counted


def test_an_unknown_meter_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown meter role"):
        spans([Placement(1, 1, "primary", BEGINNING)])


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


def test_a_sites_surplus_contract_never_covers_another_sites_consumption() -> None:
    # Site 1 used 10 kWh (4.78 kg) with 25 contracted; site 2 used 20 kWh (9.56 kg), none.
    result = scope2_by_site([SiteEnergy(1, 10.0, 4.78, 25.0), SiteEnergy(2, 20.0, 9.56, 0.0)])
    assert result.covered_kwh == 10.0  # not 25: site 1's surplus stays site 1's
    assert result.market_co2_kg == pytest.approx(9.56)
    assert result.contracted_kwh == 25.0


def test_a_contract_is_spread_over_its_sites_local_days_inclusive() -> None:
    # A Seoul day of June: 15:00 UTC the day before to 15:00 UTC.
    day = contracted_kwh_in(
        [JUNE],
        datetime(2024, 6, 9, 15, tzinfo=UTC),
        datetime(2024, 6, 10, 15, tzinfo=UTC),
        "Asia/Seoul",
    )
    assert day == pytest.approx(10.0)
    # The same contract in London (UTC+1 in June) starts 9 hours later: 9 of 720 hours missing.
    london = contracted_kwh_in(
        [JUNE],
        datetime(2024, 5, 31, 15, tzinfo=UTC),
        datetime(2024, 6, 1, 0, tzinfo=UTC),
        "Europe/London",
    )
    assert london == pytest.approx(300.0 * 1 / 720)


def test_a_contract_outside_the_period_contributes_nothing() -> None:
    outside = contracted_kwh_in(
        [JUNE], datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC), "UTC"
    )
    assert outside == 0.0


roles = st.sampled_from(["main", "sub", "standalone"])
sites = st.sampled_from([None, 1, 2])
moves = st.lists(
    st.tuples(st.integers(1, 4), sites, roles, st.integers(0, 48)), min_size=1, max_size=12
)


@settings(deadline=None)
@given(moves)
def test_every_device_hour_belongs_to_exactly_one_span_and_no_site_counts_two_roles(
    history: list[tuple[int, int | None, str, int]],
) -> None:
    placements = {
        (device, T0 + timedelta(hours=h)): Placement(device, site, role, T0 + timedelta(hours=h))
        for device, site, role, h in history
    }
    result = spans(placements.values())
    for device in {d for d, *_ in history}:
        for h in range(-2, 52):
            hour = T0 + timedelta(hours=h)
            holding = [s for s in result if s.device_id == device and s.covers(hour)]
            assert len(holding) == 1
    for h in range(-2, 52):
        hour = T0 + timedelta(hours=h)
        live = [s for s in result if s.covers(hour)]
        for site in {s.site_id for s in live}:
            counted_roles = {s.meter_role for s in live if s.site_id == site and s.counted}
            assert len(counted_roles) <= 1
            assert "sub" not in counted_roles
            # Something counts on a site whenever it has a main or standalone device.
            has_countable = any(s.meter_role != "sub" for s in live if s.site_id == site)
            assert bool(counted_roles) == has_countable


# --- admission ---------------------------------------------------------------------------------


def test_a_waiting_device_changes_no_total_and_counts_once_admitted() -> None:
    admitted = [Placement(1, 1, "standalone", BEGINNING), Placement(2, None, "standalone", T0)]
    lab = Placement(3, 1, "standalone", BEGINNING, admitted=False)
    assert counted([*admitted, lab]) == {1, 2}
    # Waiting: no span at all, so it is in no scope's devices, reports or charts.
    assert {s.device_id for s in spans([*admitted, lab])} == {1, 2}
    # Admitted: its whole history counts, from the beginning of time.
    now_admitted = Placement(3, 1, "standalone", BEGINNING)
    assert counted([*admitted, now_admitted], BEGINNING) == {1, 2, 3}
    assert counted([*admitted, now_admitted]) == {1, 2, 3}


def test_a_waiting_main_meter_does_not_silence_its_sites_standalone_devices() -> None:
    plugs = [Placement(1, 1, "standalone", BEGINNING), Placement(2, 1, "standalone", BEGINNING)]
    waiting_main = Placement(3, 1, "main", BEGINNING, admitted=False)
    assert counted([*plugs, waiting_main]) == {1, 2}
    assert counted([*plugs, Placement(3, 1, "main", BEGINNING)]) == {3}


def test_a_waiting_device_asked_for_by_itself_shows_its_own_figures() -> None:
    (span,) = spans(
        [Placement(1, None, "sub", BEGINNING, admitted=False)], every_device_counts=True
    )
    assert span.counted
