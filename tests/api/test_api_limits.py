"""HTTP limits: device keys bound to devices, failed logins throttled, live sockets capped
and closed on revocation, report requests and bodies capped, lists paged."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from pf_api_data import add_device, add_site, bearer
from sqlalchemy import Engine, event, text
from typer.testing import CliRunner

from pf_testing import Service, count_rows, read_rejections, wait_for
from powerflow.broker import free_port
from powerflow.cli import app as cli_app
from powerflow_api.app import create_app
from powerflow_api.keys import create_key, key_devices, revoke_key
from powerflow_common.settings import Settings, load_settings

Client = TestClient[Any]

# A key of the right shape that no database holds: each one would be looked up.
WRONG_KEY = "pf_abcdefgh_" + "x" * 43


def _wait_nats(client: Client) -> None:
    wait_for(lambda: client.get("/readyz").json()["nats"], 20, what="the API to reach NATS")


# --- device keys -----------------------------------------------------------------------------


def test_a_device_key_stores_its_devices_items_and_refuses_the_others_per_item(
    services: dict[str, Service],
    make_client: Callable[..., Client],
    engine: Engine,
    settings: Settings,
) -> None:
    services["writer"].start().wait_logged("writer_starting")
    client = make_client(nats_url=settings.nats_url, namespace=settings.namespace)
    device_key, _ = create_key(engine, "meter-g", "device", ["G-1"])
    operator, _ = create_key(engine, "ops", "operator")
    _wait_nats(client)
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    batch = {
        "readings": [
            {"device_code": "G-1", "ts": ts.isoformat(), "power_w": 10.0},
            {"device_code": "H-1", "ts": ts.isoformat(), "power_w": 99_000.0},
            {"deviceCode": "H-1", "timestamp": ts.isoformat(), "electric": 99_000.0},
        ]
    }
    response = client.post("/api/v1/ingest", json=batch, headers=bearer(device_key))
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    first, *others = body["items"]
    assert first["status"] == "accepted" and first["device_code"] == "G-1"
    for item in others:
        assert item["status"] == "rejected" and item["reason"] == "device_not_allowed"
        assert "'H-1' is not one of them" in item["detail"]

    # An operator key posts for any device.
    later = {"readings": [{"device_code": "H-1", "ts": ts.isoformat(), "power_w": 5.0}]}
    response = client.post("/api/v1/ingest", json=later, headers=bearer(operator))
    assert response.status_code == 202 and response.json()["accepted"] == 1

    wait_for(lambda: count_rows(engine) == 2, 30, what="G-1's and the operator's rows")
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT d.code, r.power_w FROM readings r JOIN devices d ON d.id = r.device_id"
                " ORDER BY d.code"
            )
        ).all()
    assert [(r.code, r.power_w) for r in stored] == [("G-1", 10.0), ("H-1", 5.0)]
    # The refused items are kept in REJECTED, where an operator sees who tried.
    records = read_rejections(settings.nats_url, settings.names.rejected_stream, 2, 10)
    assert {r.reason for r in records} == {"device_not_allowed"}


def test_device_keys_need_devices_and_other_roles_take_none(engine: Engine) -> None:
    with pytest.raises(ValueError, match="needs the devices"):
        create_key(engine, "x", "device")
    with pytest.raises(ValueError, match="only device keys"):
        create_key(engine, "x", "viewer", ["G-1"])
    with pytest.raises(ValueError, match="must match"):
        create_key(engine, "x", "device", ["no spaces"])
    # MAC-like codes are stored in their canonical form, duplicates once.
    _, row = create_key(engine, "mac", "device", ["a4-cf-12-9b-00-01", "A4:CF:12:9B:00:01"])
    assert key_devices(engine, row.id) == {"A4:CF:12:9B:00:01"}


def test_the_keys_cli_binds_device_keys_and_lists_the_bindings(
    engine: Engine, database_url: str
) -> None:
    runner = CliRunner()
    env = {"POWERFLOW_DATABASE_URL": database_url, "POWERFLOW_LOG_LEVEL": "warning"}
    create = ["keys", "create", "--name", "gw", "--role", "device"]
    made = runner.invoke(cli_app, [*create, "--device", "G-1", "--device", "G-2"], env=env)
    assert made.exit_code == 0, made.output
    refused = runner.invoke(cli_app, ["keys", "create", "--name", "x", "--role", "device"], env=env)
    assert refused.exit_code == 2 and "--device CODE" in refused.output
    listed = runner.invoke(cli_app, ["keys", "list"], env={**env, "COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "G-1, G-2" in listed.output


# --- failed logins ---------------------------------------------------------------------------


@pytest.fixture
def served(engine: Engine, api_settings: Settings) -> Iterator[Callable[..., str]]:
    """The app served by uvicorn on 127.0.0.1, so requests can come from other addresses."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(**overrides: Any) -> str:
        settings = load_settings(**{**dict(api_settings), **overrides})
        port = free_port()
        config = uvicorn.Config(
            create_app(settings, engine=engine),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_for(lambda: server.started, 10, what="uvicorn to start")
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def test_a_thousand_failed_logins_are_throttled_without_a_thousand_queries(
    served: Callable[..., str], engine: Engine
) -> None:
    base = served(api_auth_failures_burst=20, api_auth_failures_per_minute=6)
    viewer, _ = create_key(engine, "viewer", "viewer")
    colleague, _ = create_key(engine, "colleague", "viewer")
    queries: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_keys" in statement:
            queries.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with httpx.Client(base_url=base, timeout=10) as attacker:
            # A colleague behind the same address (a shared NAT) signed in before the flood.
            assert attacker.get("/api/v1/me", headers=bearer(colleague)).status_code == 200
            queries.clear()
            answers = [
                attacker.get("/api/v1/devices", headers=bearer(WRONG_KEY)) for _ in range(1000)
            ]
            key_lookups = len(queries)
            # While throttled, a key this process has not seen work waits (it could be a
            # guess); a key that worked lately is still looked up, so it is not locked out.
            assert attacker.get("/api/v1/me", headers=bearer(viewer)).status_code == 429
            assert attacker.get("/api/v1/me", headers=bearer(colleague)).status_code == 200
        other = httpx.Client(
            base_url=base, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2")
        )
        with other:
            assert other.get("/api/v1/me", headers=bearer(viewer)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    statuses = [a.status_code for a in answers]
    assert statuses[:20] == [401] * 20
    assert statuses.count(429) >= 975  # the bucket refills 6 a minute while the test runs
    # One key lookup per failure that got through; none for the throttled ones.
    assert key_lookups == statuses.count(401) < 30
    last = answers[-1]
    assert last.headers["content-type"].startswith("application/problem+json")
    assert "api_auth_failures" in last.json()["detail"]
    assert int(last.headers["Retry-After"]) >= 1


# --- live sockets ----------------------------------------------------------------------------


def _ticket(client: Client, key: str) -> str:
    response = client.post("/api/v1/live/ticket", headers=bearer(key))
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


def test_a_revoked_keys_open_live_socket_is_closed(
    make_client: Callable[..., Client], engine: Engine
) -> None:
    client = make_client(api_live_key_check_s=0.2)
    key, row = create_key(engine, "wall-screen", "viewer")
    other, _ = create_key(engine, "other", "viewer")
    hub = client.app.state.api.hub
    with (
        client.websocket_connect(f"/api/v1/live?ticket={_ticket(client, key)}") as ws,
        client.websocket_connect(f"/api/v1/live?ticket={_ticket(client, other)}"),
    ):
        wait_for(lambda: len(hub.clients) == 2, 5, what="both sockets to register")
        assert revoke_key(engine, str(row.id)) == 1
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text(timeout=5)  # the check runs every 0.2 s
        assert closed.value.code == 1008 and "revoked" in str(closed.value.detail)
        # The other key's socket stays open.
        wait_for(lambda: len(hub.clients) == 1, 5, what="the revoked socket to unregister")
        assert next(iter(hub.clients)).key_id != row.id


def test_a_ticket_of_a_key_revoked_since_opens_nothing(client: Client, engine: Engine) -> None:
    key, row = create_key(engine, "soon-revoked", "viewer")
    ticket = _ticket(client, key)
    revoke_key(engine, str(row.id))
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(f"/api/v1/live?ticket={ticket}") as ws,
    ):
        ws.receive_text(timeout=5)


def test_live_sockets_per_key_are_capped(
    make_client: Callable[..., Client], engine: Engine
) -> None:
    client = make_client(api_live_max_per_key=2)
    key, _ = create_key(engine, "screens", "viewer")
    other, _ = create_key(engine, "other", "viewer")
    with (
        client.websocket_connect(f"/api/v1/live?ticket={_ticket(client, key)}"),
        client.websocket_connect(f"/api/v1/live?ticket={_ticket(client, key)}"),
    ):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(f"/api/v1/live?ticket={_ticket(client, key)}") as third,
        ):
            third.receive_text(timeout=5)
        assert "api_live_max_per_key" in str(refused.value.detail)
        # Another key is not affected.
        with client.websocket_connect(f"/api/v1/live?ticket={_ticket(client, other)}"):
            hub = client.app.state.api.hub
            wait_for(lambda: len(hub.clients) == 3, 5, what="the other key's socket")


# --- reports, bodies, pages ------------------------------------------------------------------


def test_report_requests_per_key_are_capped(
    make_client: Callable[..., Client], engine: Engine, api_settings: Settings, tmp_path: Any
) -> None:
    client = make_client(api_reports_per_key=2, reports_dir=tmp_path / "reports")
    operator, _ = create_key(engine, "op", "operator")
    second, _ = create_key(engine, "op2", "operator")
    body = {"period_start": "2026-01-01", "period_end": "2026-02-01"}
    try:
        # An invalid request (refused before the database) does not count.
        backwards = {**body, "period_end": "2025-12-01"}
        invalid = client.post("/api/v1/reports", json=backwards, headers=bearer(operator))
        assert invalid.status_code == 422
        for _ in range(2):
            made = client.post("/api/v1/reports", json=body, headers=bearer(operator))
            assert made.status_code == 202, made.text
        refused = client.post("/api/v1/reports", json=body, headers=bearer(operator))
        assert refused.status_code == 429
        assert "api_reports_per_key" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert count_rows(engine, "esg_reports") == 2
        # The cap is per key.
        other = client.post("/api/v1/reports", json=body, headers=bearer(second))
        assert other.status_code == 202
    finally:
        store = redis.Redis.from_url(api_settings.redis_url.get_secret_value())
        for name in store.scan_iter(f"*{api_settings.namespace}*"):
            store.delete(name)
        store.close()


def test_request_bodies_are_capped_and_ingest_takes_more(
    make_client: Callable[..., Client], keys: dict[str, str]
) -> None:
    client = make_client(api_max_body_bytes=16 * 1024, api_ingest_max_body_bytes=256 * 1024)
    admin = bearer(keys["admin"])
    big = client.post("/api/v1/sites", json={"name": "x" * 20_000}, headers=admin)
    assert big.status_code == 413, big.text
    assert "api_max_body_bytes" in big.json()["detail"] and "16384" in big.json()["detail"]

    _wait_nats(client)
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    items = [
        {"device_code": "gw-1", "ts": (ts + timedelta(seconds=i)).isoformat(), "power_w": 1.5}
        for i in range(1000)
    ]  # about 70 KB: over the general cap, under ingest's
    device = bearer(keys["device"])
    response = client.post("/api/v1/ingest", json={"readings": items}, headers=device)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1000
    huge = client.post("/api/v1/ingest", json={"readings": items * 4}, headers=device)
    assert huge.status_code == 413
    assert "api_ingest_max_body_bytes" in huge.json()["detail"]


def test_devices_and_latest_readings_are_paged_with_a_maximum(
    make_client: Callable[..., Client], engine: Engine, keys: dict[str, str]
) -> None:
    client = make_client(api_list_page_max=3)
    site = add_site(engine)
    seen = datetime.now(UTC) - timedelta(minutes=5)
    codes = [f"pg-{n}" for n in range(5)]
    for code in codes:
        add_device(engine, code, last_seen=seen, site_id=site)
    viewer = bearer(keys["viewer"])
    for path, field in (("/api/v1/devices", "code"), ("/api/v1/readings/latest", "device_code")):
        response = client.get(path, headers=viewer)
        first = response.json()
        assert [d[field] for d in first] == codes[:3]  # default page: the maximum
        assert response.headers["X-Total-Count"] == "5"
        rest = client.get(path, params={"limit": 3, "offset": 3}, headers=viewer).json()
        assert [d[field] for d in rest] == codes[3:]
        too_many = client.get(path, params={"limit": 4}, headers=viewer)
        assert too_many.status_code == 400
        assert "api_list_page_max" in too_many.json()["detail"]
