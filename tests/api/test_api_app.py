"""The app around the endpoints: dashboard files, CORS, health, metrics, the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from pf_api_data import bearer

Client = TestClient[Any]


def test_the_dashboard_is_served_from_the_static_directory_without_a_key(
    make_client: Any, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<h1>dashboard</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    client = make_client(api_static_dir=tmp_path)
    assert "dashboard" in client.get("/").text
    assert client.get("/app.js").text == "console.log(1)"
    assert client.get("/api/v1/devices").status_code == 401


def test_cors_is_closed_by_default_and_open_to_configured_origins(
    make_client: Any, keys: dict[str, str]
) -> None:
    preflight = {
        "Origin": "https://dash.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    closed = make_client().options("/api/v1/devices", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = make_client(api_cors_origins=("https://dash.example",))
    response = opened.options("/api/v1/devices", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    other = opened.get(
        "/api/v1/devices", headers={**bearer(keys["viewer"]), "Origin": "https://evil.example"}
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_readyz_reports_database_nats_and_redis(client: Client) -> None:
    from pf_testing import wait_for

    body = wait_for(
        lambda: (r := client.get("/readyz").json())["status"] == "ready" and r, 10, what="ready"
    )
    assert body["database"] and body["nats"] and body["redis"]
    assert client.get("/healthz").json() == {"status": "ok"}


def test_metrics_count_requests_by_route_template(client: Client, keys: dict[str, str]) -> None:
    client.get("/api/v1/devices/abc", headers=bearer(keys["viewer"]))
    text = client.get("/metrics").text
    assert 'powerflow_api_requests_total{method="GET",route="/api/v1/devices/{code}"' in text


def test_the_openapi_schema_and_its_page_are_public_and_declare_bearer_auth(
    client: Client,
) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "/api/v1/devices/{code}/readings" in schema["paths"]
    assert client.get("/schema").status_code == 200
