"""Baselines and savings through the API, on real hourly_stats rows (SQLite and MariaDB)."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import bearer
from pf_baselines import BASELINE, REPORTING, make_plant
from sqlalchemy import Engine

pytestmark = pytest.mark.both_backends

Client = TestClient[Any]


@pytest.fixture
def plant(engine: Engine) -> dict[str, Any]:
    return make_plant(engine)


def period(first: date, days: int) -> dict[str, str]:
    return {"start": first.isoformat(), "end": (first + timedelta(days=days - 1)).isoformat()}


def test_a_site_without_an_outdoor_series_is_refused_and_says_why(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    response = client.post(
        f"/api/v1/sites/{plant['site']}/baselines",
        json=period(*BASELINE),
        headers=bearer(keys["operator"]),
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"] == [{"key": "reason", "message": "no_outdoor_series"}]
    assert "Indoor temperature follows the HVAC" in body["detail"]


def test_an_outdoor_device_gives_a_baseline_and_a_10_pct_saving_within_its_band(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    operator, viewer = bearer(keys["operator"]), bearer(keys["viewer"])
    marked = client.put("/api/v1/devices/yard-1/outdoor", json={"outdoor": True}, headers=operator)
    assert marked.status_code == 200, marked.text
    assert marked.json() == {"code": "yard-1", "outdoor": True, "changed": True}
    assert client.get(f"/api/v1/sites/{plant['site']}/outdoor", headers=viewer).json()[
        "devices"
    ] == ["yard-1"]
    # A viewer reads baselines but does not fit them.
    denied = client.post(
        f"/api/v1/sites/{plant['site']}/baselines", json=period(*BASELINE), headers=viewer
    )
    assert denied.status_code == 403

    fitted = client.post(
        f"/api/v1/sites/{plant['site']}/baselines", json=period(*BASELINE), headers=operator
    )
    assert fitted.status_code == 201, fitted.text
    model = fitted.json()
    assert model["model_kind"] == "5p" and model["temperature_source"] == "device"
    assert model["stats"]["n_days"] == 120
    terms = {c["name"]: c for c in model["coefficients"]}
    for name, truth in (
        ("intercept_kwh", 300.0),
        ("heating_slope_kwh_per_c", 9.0),
        ("cooling_slope_kwh_per_c", 12.0),
    ):
        assert abs(terms[name]["value"] - truth) <= 3 * terms[name]["std_error"], terms[name]
    assert model["limits"]["daily"]["cv_rmse_max_pct"] == 30.0
    assert model["stats"]["meets_guideline_14"] is True
    assert "120 usable days" in model["sufficiency"]

    detail = client.get(f"/api/v1/baselines/{model['id']}", headers=viewer).json()
    assert len(detail["fit_days"]) == 120
    first = detail["fit_days"][0]
    assert first["temperature_c"] == pytest.approx(plant["temps"][BASELINE[0]])

    saved = client.get(
        f"/api/v1/sites/{plant['site']}/savings", params=period(*REPORTING), headers=viewer
    )
    assert saved.status_code == 200, saved.text
    s = saved.json()
    assert s["baseline_id"] == model["id"] and s["m_reporting"] == 60
    assert (
        s["savings_pct"] - s["uncertainty_pct"] <= 10.0 <= s["savings_pct"] + s["uncertainty_pct"]
    )
    assert s["days"][-1]["cusum_kwh"] == pytest.approx(s["savings_kwh"])
    assert s["savings_kwh"] == pytest.approx(s["baseline_kwh"] - s["actual_kwh"])
    assert s["days_missing"] == 0 and s["overlaps_baseline"] is False
    assert math.isfinite(s["n_effective"])


def test_an_imported_kma_daily_csv_is_an_outdoor_series(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    operator = bearer(keys["operator"])
    lines = ["지점,지점명,일시,평균기온(°C),최저기온(°C),최고기온(°C)"]
    for day, t in sorted(plant["temps"].items()):
        lines.append(f"108,서울,{day.isoformat()},{t:.1f},{t - 4:.1f},{t + 4:.1f}")
    body = ("\n".join(lines) + "\n").encode("cp949")
    imported = client.post(
        f"/api/v1/sites/{plant['site']}/weather",
        content=body,
        headers={**operator, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["imported_days"] == 120 and imported.json()["station"] == "108"
    series = client.get(f"/api/v1/sites/{plant['site']}/outdoor", headers=operator).json()
    assert series["weather_days"] == 120 and series["weather_sources"] == ["kma-asos:108"]
    assert series["weather_first"] == BASELINE[0].isoformat() and series["devices"] == []
    too_many = client.post(
        f"/api/v1/sites/{plant['site']}/baselines",
        json={**period(*BASELINE), "kinds": ["mean"] * 6},
        headers=operator,
    )
    assert too_many.status_code == 400, too_many.text
    only_3p = client.post(
        f"/api/v1/sites/{plant['site']}/baselines",
        json={**period(*BASELINE), "kinds": ["3p_heating"]},
        headers=operator,
    )
    assert only_3p.status_code == 201 and only_3p.json()["model_kind"] == "3p_heating"
    fitted = client.post(
        f"/api/v1/sites/{plant['site']}/baselines",
        json={**period(*BASELINE), "temperature_source": "weather"},
        headers=operator,
    )
    assert fitted.status_code == 201, fitted.text
    assert fitted.json()["temperature_source"] == "weather"
    assert fitted.json()["model_kind"] == "5p"

    bad = client.post(
        f"/api/v1/sites/{plant['site']}/weather",
        content=b"date,temp\n2025-01-01,3\n",
        headers={**operator, "Content-Type": "text/csv"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"key": "reason", "message": "not_kma_asos"}]


def test_a_short_baseline_period_is_refused_with_the_sufficiency_rule(
    client: Client, plant: dict[str, Any], keys: dict[str, str]
) -> None:
    operator = bearer(keys["operator"])
    client.put("/api/v1/devices/yard-1/outdoor", json={"outdoor": True}, headers=operator)
    response = client.post(
        f"/api/v1/sites/{plant['site']}/baselines",
        json=period(BASELINE[0], 30),
        headers=operator,
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"key": "reason", "message": "insufficient_data"}]
    missing = client.get(
        f"/api/v1/sites/{plant['site']}/savings",
        params=period(*REPORTING),
        headers=bearer(keys["viewer"]),
    )
    assert missing.status_code == 404, missing.text  # no baseline fitted yet
    unknown = client.get(
        "/api/v1/sites/999999/savings", params=period(*REPORTING), headers=operator
    )
    assert unknown.status_code == 404
