"""The dashboard in real headless Chromium against the running stack (see conftest.py).

Scenarios are in scenarios.mjs (playwright-core, Debian's /usr/bin/chromium). Screenshots go
to PF_SCREENSHOT_DIR when set (``PF_SCREENSHOT_DIR=docs/screenshots``), else to a temporary
directory, so ``make test`` leaves the work tree as it was.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from browser.pf_browser import Scenario, Stack

from pf_testing import publish_all, wait_for

PROBE_DEVICE = "e2e-probe"
PROBE_POWER_W = 4321.5  # shown as "4.32 kW"


def _env(stack: Stack, screenshots: Path, key: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "PF_BASE_URL": stack.base_url,
        "PF_KEY": key or stack.keys["admin"],
        "PF_DEVICES": ",".join(stack.devices),
        "PF_SCREENSHOT_DIR": str(screenshots),
        **extra,
    }


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("PF_SCREENSHOT_DIR")
    directory = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_overview_shows_every_device(stack: Stack, screenshots: Path) -> None:
    result = Scenario("overview", _env(stack, screenshots)).result(60)
    assert set(stack.devices) <= set(result["tiles"])
    assert result["devicesLink"] == 1  # an admin sees the Devices admin link
    assert (screenshots / "overview.png").stat().st_size > 10_000


def test_device_page_draws_the_24h_chart(stack: Stack, screenshots: Path) -> None:
    result = Scenario("device24h", _env(stack, screenshots)).result(60)
    assert result["pressed"] == "true"
    assert result["points"] > 0
    assert result["ink"] > 500, "the power chart's canvas is blank"
    assert result["climatePoints"] > 0
    assert result["scatterPoints"] > 0


def test_report_is_requested_and_done(stack: Stack, screenshots: Path) -> None:
    # The endpoint exists: a 404 here is a routing regression, and the scenario fails on it.
    status, _ = stack.get("/api/v1/reports", key=stack.keys["operator"])
    assert status == 200, f"GET /api/v1/reports answered {status}\n{stack.logs()}"
    result = Scenario(
        "report", _env(stack, screenshots, key=stack.keys["operator"], PF_TIMEOUT_MS="30000")
    ).result(150)
    assert "done" in result["statuses"]
    assert result["reportChars"] > 200
    assert result["kwhInReport"]
    assert result["hasPdf"]


def test_reports_page_says_when_the_server_has_no_reports(stack: Stack, screenshots: Path) -> None:
    # The scenario answers /api/v1/reports with 404 in the browser, as an older API would.
    result = Scenario("reportsUnavailable", _env(stack, screenshots)).result(60)
    assert result["unavailable"] == 1


def test_switching_to_korean_changes_the_labels(stack: Stack, screenshots: Path) -> None:
    result = Scenario("korean", _env(stack, screenshots)).result(60)
    assert result["before"] == "Overview"
    assert result["after"] == "개요"
    assert result["reports"] == "보고서"
    assert result["htmlLang"] == "ko"
    assert result["afterReload"] == "개요"  # remembered


def test_viewer_cannot_see_the_devices_admin_page(stack: Stack, screenshots: Path) -> None:
    result = Scenario("viewer", _env(stack, screenshots, key=stack.keys["viewer"])).result(60)
    assert result["role"] == "Viewer"
    assert result["devicesLink"] == 0
    assert result["adminShown"] == 0
    assert "/admin/devices" not in result["url"]
    assert result["requestForm"] == 0  # a viewer may read reports, not request them


def test_empty_and_api_down_states_are_clear(stack: Stack, screenshots: Path) -> None:
    result = Scenario("states", _env(stack, screenshots)).result(60)
    assert "No devices yet" in result["emptyText"]
    assert "API is not answering" in result["errorText"]
    assert result["recovered"]  # "Try again" brings the page back once the API answers


def test_reading_published_over_mqtt_appears_within_seconds(
    stack: Stack, screenshots: Path
) -> None:
    scenario = Scenario(
        "live",
        _env(stack, screenshots, PF_PROBE_DEVICE=PROBE_DEVICE, PF_PROBE_TEXT="4.32"),
    )
    scenario.wait_event("ready", 40)
    now = datetime.now(UTC)
    reading = {
        "deviceCode": PROBE_DEVICE,
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "electric": PROBE_POWER_W,
        "temp": 21.5,
        "humidity": 40.0,
        "brightness": 300.0,
    }
    topic = f"power/{PROBE_DEVICE}/measurement"
    publish_all(stack.broker.fleet_url, [(topic, json.dumps(reading))])
    result = scenario.result(30)
    assert result["seenAfterMs"] < 10_000, result
    assert "kW" in result["text"]


def test_operator_renames_a_device_on_the_devices_page(stack: Stack, screenshots: Path) -> None:
    result = Scenario("adminRename", _env(stack, screenshots, key=stack.keys["operator"])).result(
        60
    )
    assert result["lastSeen"], "the Devices page shows when the device was last seen"
    assert "Server rack" in result["tileText"]
    assert "Basement" in result["tileText"]
    status, device = stack.get(f"/api/v1/devices/{stack.devices[-1]}")
    assert status == 200
    assert (device["name"], device["location"]) == ("Server rack", "Basement")


def test_an_admin_admits_a_waiting_device_on_the_devices_page(
    stack: Stack, screenshots: Path
) -> None:
    code = "lab-browser"
    now = datetime.now(UTC)
    reading = {"deviceCode": code, "timestamp": now.isoformat(), "electric": 12.5}
    publish_all(stack.broker.fleet_url, [(f"power/{code}/measurement", json.dumps(reading))])

    def waiting() -> bool:
        status, body = stack.get(f"/api/v1/devices/{code}")
        return status == 200 and body["admitted_at"] is None

    wait_for(waiting, 30, 0.3, "the unknown device stored, waiting")
    env = _env(stack, screenshots, key=stack.keys["operator"], PF_WAITING_DEVICE=code)
    seen = Scenario("adminAdmit", env).result(60)
    assert seen == {"admitted": False, "askAdmin": 1}  # an operator sees it wait, cannot admit
    env = _env(stack, screenshots, key=stack.keys["admin"], PF_WAITING_DEVICE=code)
    assert Scenario("adminAdmit", env).result(60) == {"admitted": True, "askAdmin": 0}
    status, device = stack.get(f"/api/v1/devices/{code}")
    assert status == 200 and device["admitted_by"] == "browser-admin" and device["counted"]


def test_an_admin_enrols_and_revokes_a_device_on_the_devices_page(
    stack: Stack, screenshots: Path
) -> None:
    from powerflow.broker import account_url
    from powerflow.simulate import connect_publisher

    code = "ui-enrolled"
    env = _env(stack, screenshots, PF_ENROL_DEVICE=code)
    shown = Scenario("adminEnrol", env).result(60)
    assert shown["username"] == f"device-{code}"
    assert shown["setupHasPassword"]  # the firmware's config.json, ready to copy
    assert not shown["passwordLeft"]  # "Done" leaves no trace of it on the page
    broker = stack.broker
    url = account_url(broker.connect_host, broker.port, shown["username"], shown["password"])
    client = connect_publisher(url, shown["username"])  # the shown credentials log in
    client.loop_stop()
    client.disconnect()
    assert Scenario("adminRevoke", env).result(60) == {"asked": True, "revokeLeft": 0}
    status, device = stack.get(f"/api/v1/devices/{code}")
    assert status == 200 and device["enrolment"] == "revoked"
    with pytest.raises(ConnectionError, match="refused"):
        connect_publisher(url, shown["username"])


def test_an_operator_acknowledges_and_mutes_an_alert_on_the_alerts_page(
    stack: Stack, screenshots: Path
) -> None:
    from pf_api_data import add_device
    from sqlalchemy import insert

    from powerflow_common.db.models import ALERT_RULES

    now = datetime.now(UTC)
    device_id = add_device(stack.engine, "ui-silent", last_seen=now.replace(year=now.year - 1))
    with stack.engine.begin() as conn:
        conn.execute(
            insert(ALERT_RULES).values(
                name="ui silence",
                kind="silence",
                scope="device",
                device_id=device_id,
                params={"minutes": 10},
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )

    def raised() -> Any:
        status, body = stack.get("/api/v1/alerts?state=open")
        found = [a for a in body or [] if a["subject"] == f"device:{device_id}"]
        return status == 200 and found and found[0]

    alert = wait_for(raised, 30, 0.2, "the alerts worker to raise the silence alert")
    env = _env(stack, screenshots, key=stack.keys["operator"], PF_ALERT_ID=str(alert["id"]))
    result = Scenario("alerts", env).result(60)
    assert result["before"] == "Open" and result["unmute"] == 1
    assert "silent_s" in result["evidence"]
    status, after = stack.get(f"/api/v1/alerts/{alert['id']}")
    assert status == 200 and after["acknowledged_by"] == "browser-operator"
    assert after["muted_until"] is not None and after["open"] is True
