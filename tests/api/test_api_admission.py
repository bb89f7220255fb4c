"""Waiting devices in the API: kept and listed in the overview, counted nowhere until admitted.

End to end: readings over MQTT through the real ingest and writer, hours rolled up by the
aggregator's own code, totals read through the API on the real database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import add_device, add_hour, add_site, bearer
from sqlalchemy import Engine

from pf_testing import FleetBroker, Service, admit, count_rows, publish_all, wait_for
from powerflow_aggregator.rollup import RollupConfig, buckets_in_range, recompute_buckets
from powerflow_common.settings import Settings

Client = TestClient[Any]
H = timedelta(hours=1)


def org_kwh(client: Client, key: str, start: datetime, end: datetime) -> float:
    response = client.get(
        "/api/v1/stats/organisation",
        params={"period": "hour", "start": start.isoformat(), "end": end.isoformat()},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    return float(response.json()["totals"]["energy_kwh"])


def site_kwh(client: Client, key: str, site_id: int, start: datetime, end: datetime) -> float:
    response = client.get(
        f"/api/v1/stats/sites/{site_id}",
        params={"period": "hour", "start": start.isoformat(), "end": end.isoformat()},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    return float(response.json()["totals"]["energy_kwh"])


def summary(client: Client, key: str, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/stats/summary", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_unknown_device_over_mqtt_waits_in_the_overview_and_counts_once_admitted(
    running: dict[str, Service],
    broker: FleetBroker,
    engine: Engine,
    settings: Settings,
    client: Client,
    keys: dict[str, str],
) -> None:
    admit(engine, "hq-1")  # the enrolled fleet, on the shared topic
    hour = (datetime.now(UTC) - 2 * H).replace(minute=0, second=0, microsecond=0)

    def hour_of(code: str, topic: str, power_w: float) -> list[tuple[str, str]]:
        return [
            (
                topic,
                json.dumps(
                    {
                        "deviceCode": code,
                        "timestamp": (hour + timedelta(seconds=5 * i)).isoformat(),
                        "electric": power_w,
                    }
                ),
            )
            for i in range(721)  # the whole hour, both ends
        ]

    publish_all(
        broker.fleet_url,
        [
            *hour_of("hq-1", "power/measurement", 1000.0),
            # A lab device on an open listener: its own topic, nobody enrolled it.
            *hour_of("lab-5", "power/lab-5/measurement", 500.0),
        ],
    )
    wait_for(lambda: count_rows(engine) == 2 * 721, 60, what="both devices' readings stored")
    rolled = recompute_buckets(
        engine,
        buckets_in_range(engine, hour - H, hour + 2 * H),
        RollupConfig.from_settings(settings),
    )
    assert not rolled.failed
    start, end = hour, hour + H
    viewer = keys["viewer"]

    # Waiting: kept, listed, its own figures shown, counted in no total.
    assert org_kwh(client, viewer, start, end) == pytest.approx(1.0, rel=1e-3)
    overview = summary(client, viewer)
    assert overview["waiting"]["count"] == 1
    [waiting] = overview["waiting"]["devices"]
    assert waiting["code"] == "lab-5" and waiting["readings"] == 721
    assert waiting["readings_capped"] is False
    assert waiting["last_seen_at"].startswith((hour + H).strftime("%Y-%m-%dT%H:00:00"))
    assert overview["devices_total"] == 1  # the admitted fleet
    own = client.get(
        "/api/v1/stats/devices/lab-5",
        params={"period": "hour", "start": start.isoformat(), "end": end.isoformat()},
        headers=bearer(viewer),
    ).json()
    assert own["totals"]["energy_kwh"] == pytest.approx(0.5, rel=1e-3)
    device = client.get("/api/v1/devices/lab-5", headers=bearer(viewer)).json()
    assert device["admitted_at"] is None and device["counted"] is False

    # Only an admin admits; an unknown code is a 404.
    for role in ("viewer", "operator"):
        refused = client.post("/api/v1/devices/lab-5/admission", headers=bearer(keys[role]))
        assert refused.status_code == 403, role
    missing = client.post("/api/v1/devices/ghost/admission", headers=bearer(keys["admin"]))
    assert missing.status_code == 404 and "nothing to admit" in missing.json()["detail"]
    admitted = client.post("/api/v1/devices/lab-5/admission", headers=bearer(keys["admin"]))
    assert admitted.status_code == 200, admitted.text
    body = admitted.json()
    assert body["newly_admitted"] is True
    assert body["device"]["admitted_by"] == "test-admin" and body["device"]["counted"] is True
    again = client.post("/api/v1/devices/lab-5/admission", headers=bearer(keys["admin"]))
    assert again.json()["newly_admitted"] is False

    # Admitted: its whole history counts, nothing recomputed.
    assert org_kwh(client, viewer, start, end) == pytest.approx(1.5, rel=1e-3)
    assert summary(client, viewer)["waiting"] == {"count": 0, "devices": []}


def test_a_waiting_main_meter_on_a_site_leaves_the_sites_total_to_its_plugs(
    engine: Engine, client: Client, keys: dict[str, str]
) -> None:
    site = add_site(engine)
    hour = (datetime.now(UTC) - 3 * H).replace(minute=0, second=0, microsecond=0)
    plug = add_device(engine, "plug-1", last_seen=hour, site_id=site)
    meter = add_device(
        engine, "meter-1", last_seen=hour, site_id=site, meter_role="main", admitted=False
    )
    add_hour(engine, plug, hour, energy_kwh=0.4)
    add_hour(engine, meter, hour, energy_kwh=2.0)
    viewer = keys["viewer"]
    assert site_kwh(client, viewer, site, hour, hour + H) == pytest.approx(0.4)
    on_site = summary(client, viewer, site_id=site)
    assert on_site["waiting"]["count"] == 1
    assert on_site["waiting"]["devices"][0]["code"] == "meter-1"
    assert on_site["waiting"]["devices"][0]["site_id"] == site
    admitted = client.post("/api/v1/devices/meter-1/admission", headers=bearer(keys["admin"]))
    assert admitted.status_code == 200
    # Admitted, the main meter gives the site's total, as for any main meter.
    assert site_kwh(client, viewer, site, hour, hour + H) == pytest.approx(2.0)
