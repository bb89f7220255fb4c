"""Site totals: meter roles, local days, DST days, mixed factor sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from powerflow_common.sitetotals import DeviceHour, SiteDevice, site_basis, site_totals

H = timedelta(hours=1)
MAIN = SiteDevice(id=1, code="main", meter_role="main")
PLUG_A = SiteDevice(id=2, code="plug-a", meter_role="sub")
PLUG_B = SiteDevice(id=3, code="plug-b", meter_role="sub")


def hours(device_id: int, start: datetime, n: int, kwh: float, **extra: object) -> list[DeviceHour]:
    return [
        DeviceHour(device_id=device_id, hour_start=start + i * H, energy_kwh=kwh, **extra)  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_a_main_meter_with_two_sub_meter_plugs_gives_the_main_meters_total() -> None:
    start = datetime(2024, 6, 2, 15, tzinfo=UTC)  # local midnight in Seoul
    rows = [*hours(1, start, 24, 1.5), *hours(2, start, 24, 0.4), *hours(3, start, 24, 0.3)]
    (day,) = site_totals(
        [MAIN, PLUG_A, PLUG_B], rows, tz="Asia/Seoul", period="day", start=start, end=start + 24 * H
    )
    assert day.basis == "main"
    assert day.total_kwh == pytest.approx(24 * 1.5)
    assert day.sub_metered_kwh == pytest.approx(24 * 0.7)
    assert day.unmetered_kwh == pytest.approx(24 * 0.8)
    assert [(d.code, d.counted) for d in day.devices] == [
        ("main", True),
        ("plug-a", False),
        ("plug-b", False),
    ]


def test_a_site_without_a_main_meter_adds_its_standalone_devices_but_never_sub_meters() -> None:
    devices = [
        SiteDevice(id=1, code="a", meter_role="standalone"),
        SiteDevice(id=2, code="b", meter_role="standalone"),
        SiteDevice(id=3, code="c", meter_role="sub"),
    ]
    start = datetime(2024, 6, 2, 15, tzinfo=UTC)
    rows = [*hours(1, start, 2, 1.0), *hours(2, start, 2, 2.0), *hours(3, start, 2, 5.0)]
    (day,) = site_totals(devices, rows, tz="Asia/Seoul", period="day", start=start, end=start + H)
    assert site_basis(devices) == "standalone"
    assert day.total_kwh == pytest.approx(6.0)


def test_a_seoul_sites_day_runs_from_15_00_utc_to_15_00_utc() -> None:
    start = datetime(2024, 6, 2, 14, tzinfo=UTC)
    rows = hours(1, start, 2, 1.0)  # 14:00 UTC is 23:00 on the 2nd, 15:00 UTC midnight the 3rd
    days = site_totals([MAIN], rows, tz="Asia/Seoul", period="day", start=start, end=start + 2 * H)
    assert [(d.start_utc.hour, d.start_local.date().isoformat(), d.total_kwh) for d in days] == [
        (15, "2024-06-02", 1.0),
        (15, "2024-06-03", 1.0),
    ]
    assert days[1].start_utc == datetime(2024, 6, 2, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("local_day", "expected_hours"),
    [(datetime(2024, 3, 31), 23), (datetime(2024, 10, 27), 25), (datetime(2024, 6, 3), 24)],
)
def test_a_berlin_day_when_clocks_change_sums_exactly_its_own_hours(
    local_day: datetime, expected_hours: int
) -> None:
    # One kWh in every UTC hour from two days before to two days after.
    start = local_day.replace(tzinfo=UTC) - 48 * H
    rows = hours(1, start, 24 * 5, 1.0, co2_kg=0.38, factor_set="de-uba", emission_factor_id=8)
    days = site_totals(
        [MAIN], rows, tz="Europe/Berlin", period="day", start=start, end=start + 24 * 5 * H
    )
    (day,) = [d for d in days if d.start_local.date() == local_day.date()]
    assert day.hours == expected_hours
    assert day.total_kwh == pytest.approx(expected_hours)
    assert day.co2_kg == pytest.approx(0.38 * expected_hours)
    assert day.coverage == 0.0
    assert day.factor_sets == ("de-uba",)


def test_a_period_mixing_factor_sets_lists_every_set() -> None:
    start = datetime(2024, 6, 2, 15, tzinfo=UTC)
    rows = [
        *hours(1, start, 1, 1.0, factor_set="original", emission_factor_id=1),
        *hours(1, start + H, 1, 1.0, factor_set="kr-gir", emission_factor_id=4),
    ]
    (day,) = site_totals([MAIN], rows, tz="Asia/Seoul", period="day", start=start, end=start + H)
    assert day.factor_sets == ("kr-gir", "original")
    assert day.emission_factor_ids == (1, 4)


def test_hours_with_energy_but_no_factor_are_counted() -> None:
    start = datetime(2024, 6, 2, 15, tzinfo=UTC)
    rows = hours(1, start, 3, 1.0)
    (day,) = site_totals([MAIN], rows, tz="Asia/Seoul", period="day", start=start, end=start + H)
    assert day.hours_without_factor == 3
