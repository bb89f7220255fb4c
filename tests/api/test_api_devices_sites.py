"""Devices and sites: list, get, update; validation answers problem+json, never 500."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from litestar.testing import TestClient
from pf_api_data import add_device, add_readings, add_site, bearer
from sqlalchemy import Engine

Client = TestClient[Any]


def test_devices_list_shows_last_seen_online_state_and_current_power(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    fresh = add_device(engine, "1001", last_seen=now)
    add_readings(engine, fresh, [(now - timedelta(seconds=5), 90.0), (now, 120.5)], now)
    stale = add_device(engine, "1002", last_seen=now - timedelta(hours=2))
    add_readings(engine, stale, [(now - timedelta(hours=2), 10.0)], now)
    response = client.get("/api/v1/devices", headers=bearer(keys["viewer"]))
    assert response.status_code == 200
    by_code = {d["code"]: d for d in response.json()}
    assert by_code["1001"]["online"] is True and by_code["1001"]["power_w"] == 120.5
    assert by_code["1002"]["online"] is False and by_code["1002"]["power_w"] == 10.0


def test_an_operator_assigns_a_device_to_a_site_and_a_viewer_reads_it(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    add_device(engine, "A4:CF:12:9B:00:01", last_seen=now)
    site = add_site(engine)
    body = {"name": "Main meter", "site_id": site, "location": "basement", "meter_role": "main"}
    response = client.patch(
        "/api/v1/devices/A4:CF:12:9B:00:01", json=body, headers=bearer(keys["operator"])
    )
    assert response.status_code == 200, response.text
    got = client.get("/api/v1/devices/A4:CF:12:9B:00:01", headers=bearer(keys["viewer"])).json()
    assert {k: got[k] for k in body} == body
    # An absent field stays, null clears.
    cleared = client.patch(
        "/api/v1/devices/A4:CF:12:9B:00:01", json={"location": None}, headers=bearer(keys["admin"])
    ).json()
    assert cleared["location"] is None and cleared["name"] == "Main meter"


def test_updating_a_device_with_bad_input_is_a_clear_client_error(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    add_device(engine, "1001", last_seen=now)
    headers = bearer(keys["operator"])
    bad_role = client.patch("/api/v1/devices/1001", json={"meter_role": "x"}, headers=headers)
    assert bad_role.status_code == 400
    assert bad_role.headers["content-type"].startswith("application/problem+json")
    assert "meter_role" in bad_role.json()["detail"]
    unknown_site = client.patch("/api/v1/devices/1001", json={"site_id": 999}, headers=headers)
    assert unknown_site.status_code == 422 and "site" in unknown_site.json()["detail"]
    unknown_field = client.patch("/api/v1/devices/1001", json={"colour": "red"}, headers=headers)
    assert unknown_field.status_code == 400
    not_json = client.patch(
        "/api/v1/devices/1001",
        content=b"{not json",
        headers={**headers, "content-type": "application/json"},
    )
    assert not_json.status_code == 400
    missing = client.get("/api/v1/devices/nope", headers=headers)
    assert missing.status_code == 404 and "GET /api/v1/devices" in missing.json()["detail"]


def test_sites_are_created_listed_and_updated_with_validated_timezones(
    client: Client, keys: dict[str, str]
) -> None:
    op = bearer(keys["operator"])
    created = client.post(
        "/api/v1/sites",
        json={"name": "Plant", "timezone": "Europe/Berlin", "region": "DE", "floor_area_m2": 1200},
        headers=op,
    )
    assert created.status_code == 201, created.text
    site = created.json()
    assert site["timezone"] == "Europe/Berlin" and site["floor_area_m2"] == 1200
    listed = client.get("/api/v1/sites", headers=bearer(keys["viewer"])).json()
    assert [s["name"] for s in listed] == ["Plant"]
    updated = client.patch(
        f"/api/v1/sites/{site['id']}", json={"timezone": "Asia/Seoul"}, headers=op
    )
    assert updated.status_code == 200 and updated.json()["timezone"] == "Asia/Seoul"
    assert updated.json()["region"] == "DE"


def test_a_site_with_an_unknown_or_half_hour_timezone_is_refused_with_422(
    client: Client, keys: dict[str, str]
) -> None:
    op = bearer(keys["operator"])
    for tz in ("Mars/Olympus", "Asia/Kolkata"):
        response = client.post("/api/v1/sites", json={"name": tz, "timezone": tz}, headers=op)
        assert response.status_code == 422, tz
        assert tz in response.json()["detail"]


def test_a_duplicate_site_name_is_a_409_conflict(client: Client, keys: dict[str, str]) -> None:
    op = bearer(keys["operator"])
    assert client.post("/api/v1/sites", json={"name": "HQ"}, headers=op).status_code == 201
    again = client.post("/api/v1/sites", json={"name": "HQ"}, headers=op)
    assert again.status_code == 409 and "HQ" in again.json()["detail"]


def test_an_unknown_site_is_a_404(client: Client, keys: dict[str, str]) -> None:
    response = client.get("/api/v1/sites/42", headers=bearer(keys["viewer"]))
    assert response.status_code == 404
