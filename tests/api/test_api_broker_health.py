"""/readyz and the broker's drop counter as ingest recorded it (the shared key-value bucket)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from pf_testing import wait_for
from powerflow_common.broker_health import (
    NOT_AVAILABLE,
    BrokerHealthRecord,
    encode_record,
    open_bucket,
)
from powerflow_common.jetstream import connect_nats
from powerflow_common.settings import Settings

Client = TestClient[Any]


@pytest.fixture
def put_record(api_settings: Settings) -> Iterator[Callable[[str, BrokerHealthRecord], None]]:
    """Write a record as ingest would."""

    async def put(key: str, record: BrokerHealthRecord) -> None:
        nc = await connect_nats(api_settings, name="pf-test-broker-health")
        bucket = await open_bucket(nc.jetstream(), api_settings.names)
        await bucket.put(key, encode_record(record))
        await nc.close()

    yield lambda key, record: asyncio.run(put(key, record))
    # api_settings' teardown deletes the namespace's streams and this bucket


def ready(client: Client) -> dict[str, Any]:
    body: dict[str, Any] = wait_for(
        lambda: (r := client.get("/readyz").json())["database"] and r["nats"] and r,
        10,
        what="database and NATS up",
    )
    return body


def test_readyz_is_degraded_while_the_broker_dropped_messages_within_the_window(
    make_client: Callable[..., Client], put_record: Callable[[str, BrokerHealthRecord], None]
) -> None:
    now = datetime.now(UTC)
    seen = BrokerHealthRecord(
        broker="mqtt.example:1883",
        available=True,
        observed_at=now,
        dropped=2000,
        uptime_s=900,
        last_rise=2000,
        last_rise_at=now - timedelta(minutes=5),
        rises_total=2000,
    )
    put_record("mqtt_example_1883", seen)
    body = ready(make_client())
    assert body["status"] == "degraded"
    assert "mqtt.example:1883 dropped 2000 messages" in body["detail"]["broker"]
    # The same rise outside a shorter window: ready again, nothing said.
    body = ready(make_client(broker_drop_alarm_window_s=60))
    assert body["status"] == "ready" and "broker" not in body["detail"]


def test_readyz_says_when_the_broker_publishes_no_drop_counter_without_failing(
    client: Client, put_record: Callable[[str, BrokerHealthRecord], None]
) -> None:
    put_record(
        "other_1883",
        BrokerHealthRecord(broker="other:1883", available=False, observed_at=datetime.now(UTC)),
    )
    body = ready(client)
    assert body["status"] == "ready"
    assert body["detail"]["broker"] == f"{NOT_AVAILABLE} (other:1883)"
