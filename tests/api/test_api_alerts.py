"""Alert rules CRUD and alerts list / acknowledge / mute through the real app and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient
from pf_api_data import add_device, add_site, bearer
from sqlalchemy import Engine, insert

from powerflow_common.db.models import ALERTS

Client = TestClient[Any]


def _open_alert(engine: Engine, rule_id: int, subject: str, at: datetime) -> int:
    with engine.begin() as conn:
        key = conn.execute(
            insert(ALERTS).values(
                rule_id=rule_id,
                kind="silence",
                subject=subject,
                open_subject=subject,
                raised_at=at,
                evidence={"silent_s": 900.0},
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def test_an_operator_creates_a_rule_with_defaults_filled_and_a_viewer_lists_it(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    site = add_site(engine)
    body = {
        "name": "night jump",
        "kind": "base_load_jump",
        "scope": "site",
        "site_id": site,
        "params": {"k": 4},
    }
    created = client.post("/api/v1/alert-rules", json=body, headers=bearer(keys["operator"]))
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["params"] == {"k": 4.0, "min_change_pct": 10.0, "min_history": 14}
    assert rule["created_by"] == "test-operator" and rule["enabled"] is True
    listed = client.get("/api/v1/alert-rules", headers=bearer(keys["viewer"]))
    assert listed.headers["x-total-count"] == "1" and listed.json()[0]["id"] == rule["id"]
    changed = client.patch(
        f"/api/v1/alert-rules/{rule['id']}",
        json={"enabled": False, "params": {"k": 2}},
        headers=bearer(keys["operator"]),
    ).json()
    assert changed["enabled"] is False and changed["params"]["k"] == 2.0
    assert (
        client.delete(
            f"/api/v1/alert-rules/{rule['id']}", headers=bearer(keys["operator"])
        ).status_code
        == 204
    )
    assert (
        client.get(f"/api/v1/alert-rules/{rule['id']}", headers=bearer(keys["viewer"])).status_code
        == 404
    )


def test_bad_rules_are_clear_client_errors_and_viewers_cannot_write(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    dev = add_device(engine, "AL-1", last_seen=now)
    op = bearer(keys["operator"])
    ok = {
        "name": "hot",
        "kind": "power_above",
        "scope": "device",
        "device_id": dev,
        "params": {"threshold_w": 2000, "minutes": 5},
    }
    cases = [
        ({**ok, "params": {"threshold_w": 2000}}, 422, "minutes"),
        ({**ok, "params": {"threshold_w": 2000, "minutes": 0}}, 422, "minutes"),
        ({**ok, "device_id": 999_999}, 422, "No device"),
        ({**ok, "scope": "site"}, 422, "site_id"),
        ({**ok, "kind": "sideways"}, 400, "kind"),
        ({**ok, "colour": "red"}, 400, "colour"),
    ]
    for body, status, words in cases:
        response = client.post("/api/v1/alert-rules", json=body, headers=op)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert words in response.text
    viewer = client.post("/api/v1/alert-rules", json=ok, headers=bearer(keys["viewer"]))
    assert viewer.status_code == 403


def test_a_rule_name_with_a_control_character_is_refused_422(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    dev = add_device(engine, "AL-2", last_seen=now)
    op = bearer(keys["operator"])
    ok = {
        "name": "hot",
        "kind": "power_above",
        "scope": "device",
        "device_id": dev,
        "params": {"threshold_w": 2000, "minutes": 5},
    }
    for name in ["hot\nBcc: x@example.test", "hot\n", "hot\rx", "tab\there"]:
        response = client.post("/api/v1/alert-rules", json={**ok, "name": name}, headers=op)
        assert response.status_code == 422, (name, response.text)
        assert "name" in response.text
    created = client.post("/api/v1/alert-rules", json=ok, headers=op)
    assert created.status_code == 201, created.text
    renamed = client.patch(
        f"/api/v1/alert-rules/{created.json()['id']}", json={"name": "a\nb"}, headers=op
    )
    assert renamed.status_code == 422, renamed.text


def test_rules_are_bounded_in_number(
    make_client: Any, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    client = make_client(alerts_rules_max=2)
    dev = add_device(engine, "AL-3", last_seen=now)
    body = {
        "name": "q",
        "kind": "silence",
        "scope": "device",
        "device_id": dev,
        "params": {"minutes": 5},
    }
    op = bearer(keys["operator"])
    assert [
        client.post("/api/v1/alert-rules", json=body, headers=op).status_code for _ in range(2)
    ] == [201, 201]
    third = client.post("/api/v1/alert-rules", json=body, headers=op)
    assert third.status_code == 409 and "alerts_rules_max" in third.json()["detail"]


def test_alerts_are_listed_by_state_acknowledged_once_and_muted_within_bounds(
    client: Client, engine: Engine, keys: dict[str, str], now: datetime
) -> None:
    dev = add_device(engine, "AL-2", last_seen=now)
    op = bearer(keys["operator"])
    rule = client.post(
        "/api/v1/alert-rules",
        json={
            "name": "quiet",
            "kind": "silence",
            "scope": "device",
            "device_id": dev,
            "params": {"minutes": 10},
        },
        headers=op,
    ).json()
    alert_id = _open_alert(engine, rule["id"], f"device:{dev}", now)
    listed = client.get("/api/v1/alerts?state=open", headers=bearer(keys["viewer"]))
    assert listed.status_code == 200 and listed.headers["x-total-count"] == "1"
    [alert] = listed.json()
    assert alert["open"] is True and alert["rule_name"] == "quiet"
    assert alert["evidence"] == {"silent_s": 900.0}
    assert client.get("/api/v1/alerts?state=cleared", headers=op).json() == []
    first = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=op).json()
    again = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=bearer(keys["admin"]))
    assert first["acknowledged_by"] == "test-operator"
    assert again.json()["acknowledged_at"] == first["acknowledged_at"]
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    muted = client.post(f"/api/v1/alerts/{alert_id}/mute", json={"until": until}, headers=op)
    assert muted.status_code == 201 and muted.json()["muted_until"] is not None
    too_far = (datetime.now(UTC) + timedelta(days=91)).isoformat()
    refused = client.post(f"/api/v1/alerts/{alert_id}/mute", json={"until": too_far}, headers=op)
    assert refused.status_code == 422 and "90 days" in refused.json()["detail"]
    unmuted = client.post(f"/api/v1/alerts/{alert_id}/mute", json={"until": None}, headers=op)
    assert unmuted.json()["muted_until"] is None
    assert client.get("/api/v1/alerts/999999", headers=op).status_code == 404
    assert client.get("/api/v1/alerts?state=sideways", headers=op).status_code == 400
    assert client.get("/api/v1/alerts?limit=100000", headers=op).status_code == 400
    viewer_ack = client.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers=bearer(keys["viewer"])
    )
    assert viewer_ack.status_code == 403
