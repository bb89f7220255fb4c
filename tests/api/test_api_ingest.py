"""HTTP ingest: the same validation and the same exactly-once path as MQTT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import Engine

from pf_testing import Service, consumer_idle, count_rows, read_rejections, wait_for
from powerflow_common.jetstream import is_stream_full
from powerflow_common.settings import STREAM_MIN_BYTES, Settings

Client = TestClient[Any]


def test_http_batch_retried_twice_stores_each_reading_once(
    services: dict[str, Service],
    make_client: Callable[..., Client],
    keys: dict[str, str],
    engine: Engine,
    settings: Settings,
) -> None:
    services["writer"].start().wait_logged("writer_starting")
    client = make_client(nats_url=settings.nats_url, namespace=settings.namespace)
    now = datetime.now(UTC).replace(microsecond=0)
    batch = {
        "readings": [
            {
                "deviceCode": "gw-1",
                "timestamp": (now - timedelta(seconds=10)).isoformat(),
                "electric": 100.5,
                "temp": 21.0,
            },
            {
                "device_code": "gw-2",
                "ts": (now - timedelta(seconds=5)).isoformat(),
                "power_w": 42.0,
                "energy_wh": 1000.0,
            },
            {"device_code": "gw-2", "ts": now.isoformat(), "power_w": 43.0},
            {"deviceCode": "gw-1", "timestamp": now.isoformat(), "humidity": 140},
        ]
    }
    auth = {"Authorization": f"Bearer {keys['device']}"}

    def post() -> Any:
        response = client.post("/api/v1/ingest", json=batch, headers=auth)
        # 503 until the app's NATS connection is up; a retry is exactly what clients do.
        return response if response.status_code != 503 else None

    first = wait_for(post, 20, what="the API to reach NATS")
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["accepted"], body["rejected"]) == (3, 1)
    assert [item["status"] for item in body["items"]] == ["accepted"] * 3 + ["rejected"]
    assert body["items"][3]["reason"] == "out_of_range"
    for _ in range(2):
        again = post()
        assert again.status_code == 202
        # JetStream already had both messages (readings, rejection): same content, same ids.
        assert again.json()["duplicates"] == 2

    wait_for(lambda: count_rows(engine) == 3, 30, what="three rows")
    names = settings.names
    wait_for(
        lambda: consumer_idle(settings.nats_url, names.readings_stream, names.writer_consumer),
        30,
        what="the writer to finish every retried batch",
    )
    assert count_rows(engine) == 3
    [record] = read_rejections(settings.nats_url, names.rejected_stream, 1, 10)
    assert record.reason == "out_of_range" and record.topic == "http/ingest"


def test_http_ingest_refuses_viewers_and_malformed_batches(
    client: Client, keys: dict[str, str]
) -> None:
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    device = {"Authorization": f"Bearer {keys['device']}"}
    assert client.post("/api/v1/ingest", json={"readings": [{}]}, headers=viewer).status_code == 403
    bad: Any
    for bad in ({"readings": "nope"}, {"rows": []}, [1, 2]):
        response = client.post("/api/v1/ingest", json=bad, headers=device)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    empty = client.post("/api/v1/ingest", json={"readings": []}, headers=device)
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    # A device key reads nothing.
    assert client.get("/api/v1/devices", headers=device).status_code == 403


def fill_stream(settings: Settings, subject: str) -> None:
    """Publish filler to ``subject`` until its stream has no room even for a few bytes."""
    import nats

    async def fill() -> None:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        for size in (100_000, 10_000, 1_000, 100, 1):
            while True:
                try:
                    await js.publish(subject, b"f" * size)
                except Exception as exc:
                    assert is_stream_full(exc), exc
                    break
        await nc.close()

    asyncio.run(fill())


def test_http_ingest_at_a_full_readings_stream_answers_503_and_readyz_says_degraded(
    make_client: Callable[..., Client], keys: dict[str, str], settings: Settings
) -> None:
    client = make_client(readings_max_bytes=STREAM_MIN_BYTES)
    auth = {"Authorization": f"Bearer {keys['device']}"}
    batch = {"readings": [{"device_code": "gw-9", "ts": datetime.now(UTC).isoformat()}]}
    wait_for(lambda: client.get("/readyz").json()["nats"], 20, what="the API to reach NATS")
    assert client.get("/readyz").json()["status"] == "ready"
    # No writer: nothing frees READINGS once it is full.
    fill_stream(settings, settings.names.readings_subject("filler"))

    response = client.post("/api/v1/ingest", json=batch, headers=auth)
    assert response.status_code == 503, response.text
    assert "byte limit" in response.json()["detail"] and response.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert "READINGS at 100% of its 1048576 byte limit" in ready.json()["detail"]["streams"]
