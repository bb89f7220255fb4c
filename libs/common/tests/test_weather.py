"""KMA ASOS CSV files (daily and hourly) read into daily mean outdoor temperatures."""

from __future__ import annotations

from datetime import date

import pytest

from powerflow_common.weather import WeatherRejected, parse_kma_asos_csv

DAILY = (
    "지점,지점명,일시,평균기온(°C),최저기온(°C),최고기온(°C)\n"
    "108,서울,2025-01-01,-1.5,-6.0,3.2\n"
    "108,서울,2025-01-02,,-7.0,1.0\n"
)


def test_a_daily_cp949_file_gives_its_mean_column_and_skips_a_missing_day() -> None:
    days = parse_kma_asos_csv(DAILY.encode("cp949"), site_timezone="Asia/Seoul")
    assert [(d.station, d.day, d.temperature_mean_c) for d in days] == [
        ("108", date(2025, 1, 1), -1.5)
    ]


def test_an_hourly_file_is_averaged_per_local_day_when_it_has_enough_hours() -> None:
    # 24 hours of 1 January (KST) at 0..23 °C: mean 11.5; 2 January has 3 hours only.
    rows = [f"108,서울,2025-01-01 {h:02d}:00,{h}.0,0" for h in range(24)]
    rows += [f"108,서울,2025-01-02 {h:02d}:00,5.0,0" for h in range(3)]
    text = "지점,지점명,일시,기온(°C),기온 QC플래그\n" + "\n".join(rows) + "\n"
    days = parse_kma_asos_csv(text.encode("utf-8-sig"), site_timezone="Asia/Seoul")
    assert [(d.day, d.temperature_mean_c, d.hours) for d in days] == [(date(2025, 1, 1), 11.5, 24)]


def test_several_stations_need_one_chosen() -> None:
    text = DAILY + "112,인천,2025-01-01,-0.5,-3.0,2.0\n"
    with pytest.raises(WeatherRejected) as rejected:
        parse_kma_asos_csv(text.encode("cp949"), site_timezone="Asia/Seoul")
    assert rejected.value.reason == "several_stations"
    (day,) = parse_kma_asos_csv(text.encode("cp949"), site_timezone="Asia/Seoul", station="112")
    assert day.temperature_mean_c == -0.5


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("date,temp\n2025-01-01,3\n", "not_kma_asos"),
        ("지점,지점명,일시,평균기온(°C)\n108,서울,2025-01-01,warm\n", "bad_value"),
        ("지점,지점명,일시,평균기온(°C)\n108,서울,2025-01-01,99\n", "out_of_range"),
        ("지점,지점명,일시,평균기온(°C)\n108,서울,0001-01-01,1\n", "out_of_range"),
        ("", "empty"),
    ],
)
def test_a_file_that_is_not_an_asos_export_is_rejected_with_its_reason(
    text: str, reason: str
) -> None:
    with pytest.raises(WeatherRejected) as rejected:
        parse_kma_asos_csv(text.encode(), site_timezone="Asia/Seoul")
    assert rejected.value.reason == reason
