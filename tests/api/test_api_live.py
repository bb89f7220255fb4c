"""The live socket: tickets, filters, and a reading from MQTT to the browser end to end."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from pf_api_data import bearer
from sqlalchemy import Engine
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from conftest import service_env
from pf_testing import FleetBroker, Service, publish_all, wait_for
from powerflow.broker import free_port
from powerflow_api.keys import create_key
from powerflow_common.jetstream import connect_nats
from powerflow_common.settings import Settings
from powerflow_common.wire import Reading, ReadingBatch, json_encoder

Client = TestClient[Any]


def _publish(settings: Settings, *codes: str) -> None:
    """Publish one ReadingBatch on core NATS, as ingest does."""

    async def send() -> None:
        nc = await connect_nats(settings, name="pf-test-live")
        batch = ReadingBatch(
            readings=[Reading(device_code=c, ts=datetime.now(UTC), power_w=42.0) for c in codes],
            ingested_at=datetime.now(UTC),
        )
        await nc.publish(settings.names.readings_subject("0"), json_encoder.encode(batch))
        await nc.flush()
        await nc.close()

    asyncio.run(send())


def _ticket(client: Client, key: str) -> str:
    response = client.post("/api/v1/live/ticket", headers=bearer(key))
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


def test_a_socket_without_a_ticket_or_with_a_bad_one_is_refused(client: Client) -> None:
    for url in ("/api/v1/live", "/api/v1/live?ticket=forged"):
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(url) as ws:
            ws.receive_text()


def test_a_ticket_needs_a_reader_key(client: Client, keys: dict[str, str]) -> None:
    assert client.post("/api/v1/live/ticket").status_code == 401
    assert client.post("/api/v1/live/ticket", headers=bearer(keys["device"])).status_code == 403


def test_a_ticket_opens_one_socket_only_and_it_streams_the_devices_asked_for(
    client: Client, keys: dict[str, str], api_settings: Settings
) -> None:
    ticket = _ticket(client, keys["viewer"])
    with client.websocket_connect(f"/api/v1/live?ticket={ticket}&device=1001") as ws:
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(f"/api/v1/live?ticket={ticket}") as again,
        ):
            again.receive_text()
        wait_for(lambda: client.app.state.api.hub.clients, 5, what="the socket to register")
        _publish(api_settings, "1002", "1001")
        message = json.loads(ws.receive_text(timeout=5))
    assert message["device_code"] == "1001" and message["power_w"] == 42.0


def test_a_live_reading_published_over_mqtt_reaches_the_socket_and_no_secret_is_logged(
    running: dict[str, Service],
    broker: FleetBroker,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = service_env(settings, POWERFLOW_API_PORT=str(port), POWERFLOW_LOG_LEVEL="debug")
    api = Service("api", env, tmp_path).start()
    try:
        api.wait_logged("live_subscribed")
        key, _ = create_key(engine, "e2e", "viewer")
        base = f"http://127.0.0.1:{port}"
        ticket = httpx.post(f"{base}/api/v1/live/ticket", headers=bearer(key)).json()["ticket"]
        with ws_connect(f"ws://127.0.0.1:{port}/api/v1/live?ticket={ticket}") as ws:
            body = {
                "deviceCode": 7001,
                "timestamp": datetime.now(UTC).isoformat(),
                "electric": 55.5,
            }
            # Its own topic: from the shared power/measurement only legacy-enrolled devices
            # are shown (and stored).
            publish_all(broker.fleet_url, [("power/7001/measurement", json.dumps(body))])
            message = json.loads(ws.recv(timeout=10))
        assert message["device_code"] == "7001" and message["power_w"] == 55.5
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"ws://127.0.0.1:{port}/api/v1/live?ticket={ticket}").close()
        assert refused.value.response.status_code == 403
        assert httpx.get(f"{base}/api/v1/devices", headers=bearer(key)).status_code == 200
        assert httpx.get(f"{base}/api/v1/devices?token={key}").status_code == 401
        wait_for(lambda: api.log_text().count("http_request") >= 3, 5, what="access logs")
    finally:
        api.stop()
    log = api.log_text()
    assert "http_request" in log
    # The secret part may itself contain "_": split only at the first two.
    assert key not in log and key.split("_", 2)[2] not in log
    assert ticket not in log
