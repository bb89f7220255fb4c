"""Pure parts of the rollup tables: quarter hours add up to hours; the daily cache's helpers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.daily_site import _merge, _runs, fingerprint
from powerflow_common.energy import (
    HOUR,
    QUARTER_HOUR,
    QUARTERS_PER_HOUR,
    EnergySample,
    hourly_energy,
    quarter_hour_energy,
)
from powerflow_common.queries import PeriodSums, TotalsScope
from powerflow_common.totals import BEGINNING, END_OF_TIME, SiteEnergy, Span

T10 = datetime(2024, 6, 3, 10, tzinfo=UTC)
HOURS = 3
GAP = timedelta(seconds=60)

# Readings of every kind at uneven steps (some beyond max_gap): power of either sign, an import
# counter with noise, resets and gaps, an export counter; environment values now and then.
readings = st.lists(
    st.tuples(
        st.integers(min_value=1_000_000, max_value=200_000_000),  # step, microseconds
        st.none() | st.floats(-3000, 3000),
        st.none() | st.floats(0, 50),  # counter increase (Wh)
        st.booleans(),  # a counter reset here
        st.none() | st.floats(0, 20),  # export counter increase
        st.none() | st.floats(-10, 40),
    ),
    max_size=200,
)


def _samples(
    raw: list[tuple[int, float | None, float | None, bool, float | None, float | None]],
) -> list[EnergySample]:
    out: list[EnergySample] = []
    t_us, counter, export = -120_000_000, 100.0, 5.0
    for step, power, inc, reset, exp_inc, temp in raw:
        t_us += step
        if inc is not None:
            counter = 0.0 if reset else counter + inc
        if exp_inc is not None:
            export += exp_inc
        out.append(
            EnergySample(
                ts=T10 + timedelta(microseconds=t_us),
                power_w=power,
                energy_wh=None if inc is None else counter,
                energy_export_wh=None if exp_inc is None else export,
                temperature_c=temp,
            )
        )
    return out


@settings(deadline=None)
@given(readings, st.booleans())
def test_the_quarters_of_every_hour_add_up_to_it(raw: list[Any], bidirectional: bool) -> None:
    samples = _samples(raw)
    end = T10 + HOURS * HOUR
    hours = hourly_energy(samples, T10, end, max_gap=GAP, bidirectional=bidirectional)
    quarters = quarter_hour_energy(samples, T10, end, max_gap=GAP, bidirectional=bidirectional)
    assert len(quarters) == QUARTERS_PER_HOUR * len(hours)
    for i, hour in enumerate(hours):
        parts = quarters[QUARTERS_PER_HOUR * i : QUARTERS_PER_HOUR * (i + 1)]
        assert [p.hour_start for p in parts] == [
            hour.hour_start + q * QUARTER_HOUR for q in range(QUARTERS_PER_HOUR)
        ]
        for name in ("energy_kwh", "export_kwh", "unallocated_kwh", "unallocated_export_kwh"):
            total = math.fsum(getattr(p, name) for p in parts)
            assert total == pytest.approx(getattr(hour, name), rel=1e-9, abs=1e-12), name
        assert sum(p.samples for p in parts) == hour.samples
        assert math.fsum(p.coverage for p in parts) / 4 == pytest.approx(hour.coverage, abs=1e-12)
        assert {p.source for p in parts} == {hour.source}  # the hour decides the source
        for p in parts:
            assert p.energy_kwh >= 0 and p.export_kwh >= 0 and 0 <= p.coverage <= 1


def test_a_power_ramp_across_a_quarter_boundary_is_split_in_proportion() -> None:
    # 0 W at 10:14:30 rising to 1,200 W at 10:15:30: 600 W at the boundary, so 30 s at 300 W
    # on average (2.5 Wh) before it and 30 s at 900 W (7.5 Wh) after.
    samples = [
        EnergySample(ts=T10 + timedelta(minutes=14, seconds=30), power_w=0.0),
        EnergySample(ts=T10 + timedelta(minutes=15, seconds=30), power_w=1200.0),
    ]
    q = quarter_hour_energy(samples, T10, T10 + HOUR, max_gap=GAP)
    assert q[0].energy_kwh == pytest.approx(0.0025)
    assert q[1].energy_kwh == pytest.approx(0.0075)
    assert q[0].coverage == pytest.approx(30 / 900)


def test_quarter_hour_energy_refuses_what_hourly_energy_refuses() -> None:
    with pytest.raises(ValueError, match="hour boundary"):
        quarter_hour_energy([], T10 + QUARTER_HOUR, T10 + HOUR)
    assert quarter_hour_energy([], T10, T10) == []


def _scope(tz: str, *spans: Span) -> TotalsScope:
    return TotalsScope(kind="site", timezone=tz, spans=list(spans), devices=[], site_id=1)


def test_the_fingerprint_changes_with_a_role_a_member_admission_and_the_timezone() -> None:
    main = Span(1, 1, "main", True, BEGINNING, END_OF_TIME)
    base = fingerprint(_scope("Asia/Seoul", main))
    assert fingerprint(_scope("Asia/Seoul", main)) == base  # stable
    assert fingerprint(_scope("Europe/London", main)) != base
    assert (
        fingerprint(_scope("Asia/Seoul", Span(1, 1, "sub", False, BEGINNING, END_OF_TIME))) != base
    )
    moved = Span(1, 1, "main", True, BEGINNING, T10)
    assert fingerprint(_scope("Asia/Seoul", moved)) != base
    plug = Span(2, 1, "sub", False, BEGINNING, END_OF_TIME)
    assert fingerprint(_scope("Asia/Seoul", main, plug)) != base
    assert fingerprint(_scope("Asia/Seoul", plug, main)) == fingerprint(
        _scope("Asia/Seoul", main, plug)
    )


def test_consecutive_days_join_into_runs() -> None:
    d = [(T10 + i * timedelta(days=1), T10 + (i + 1) * timedelta(days=1)) for i in range(6)]
    assert _runs([d[0], d[1], d[3], d[5]]) == [(d[0][0], d[1][1]), d[3], d[5]]
    assert _runs([]) == []


def _day(start: datetime, kwh: float, peak: float | None) -> PeriodSums:
    return PeriodSums(
        start=start,
        end=start + timedelta(days=1),
        hours=24,
        device_hours=48,
        energy_kwh=kwh,
        export_kwh=0.0,
        unallocated_kwh=0.5,
        co2_kg=kwh * 0.5,
        coverage_sum=40.0,
        demand_sum_w=1000.0,
        demand_hours=24,
        demand_max_w=peak,
        sample_max_w=peak,
        env={
            "temperature_avg_c": (100.0, 5.0),
            "humidity_avg_pct": (0.0, 0.0),
            "brightness_avg_lux": (1.0, 1.0),
        },
        sites=[SiteEnergy(None, kwh + 0.5, kwh * 0.5)],
    )


def test_days_add_up_into_the_weeks_of_the_sites_calendar() -> None:
    # Seoul: Sunday 2 June 2024 and Monday 3 June start at 15:00 UTC the day before.
    sunday = datetime(2024, 6, 1, 15, tzinfo=UTC)
    monday = sunday + timedelta(days=1)
    weeks = _merge(
        [
            _day(sunday, 1.0, 10.0),
            _day(monday, 2.0, None),
            _day(monday + timedelta(days=1), 3.0, 30.0),
        ],
        "week",
        "Asia/Seoul",
    )
    assert [w.start for w in weeks] == [sunday - timedelta(days=6), monday]
    assert [w.energy_kwh for w in weeks] == [1.0, 5.0]
    assert weeks[1].hours == 48 and weeks[1].demand_max_w == 30.0
    assert weeks[1].env["temperature_avg_c"] == (200.0, 10.0)
    assert [(s.site_id, s.kwh) for s in weeks[1].sites] == [(None, 6.0)]
