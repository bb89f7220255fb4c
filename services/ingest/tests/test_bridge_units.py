"""The bridge's pure parts: batch sorting, the thread hand-over."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

from powerflow_common.formats.original import ORIGINAL
from powerflow_common.validation import Limits
from powerflow_ingest.bridge import sort_batch
from powerflow_ingest.inbox import Inbox
from powerflow_ingest.mqtt import BrokerAddress, Inbound

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def inbound(topic: str, payload: bytes, mid: int = 1) -> Inbound:
    return Inbound(
        topic=topic, payload=payload, qos=1, mid=mid, retain=False, received_at=T0, epoch=1
    )


# The content-derived ids are tested with their module: libs/common/tests/test_msgids.py.


def test_a_batch_is_sorted_into_readings_and_rejections_and_keeps_every_message() -> None:
    good = b'{"deviceCode":1,"timestamp":"2025-01-01T00:00:00Z","electric":5}'
    batch = [inbound("power/measurement", good, 1), inbound("power/measurement", b"nope", 2)]
    out = sort_batch(batch, [ORIGINAL], Limits(), T0)
    assert [r.device_code for r in out.readings] == ["1"]
    assert [(m.mid, exc.reason) for m, exc in out.rejections] == [(2, "not_json")]
    assert out.messages == batch


def test_inbox_hands_over_every_message_put_from_another_thread() -> None:
    async def run() -> list[int]:
        inbox = Inbox(asyncio.get_running_loop())

        def produce() -> None:
            for mid in range(5_000):
                inbox.put(inbound("t", b"", mid))

        thread = threading.Thread(target=produce)
        thread.start()
        got: list[int] = []
        while len(got) < 5_000:
            got += [m.mid for m in await inbox.get_batch(500, 0.005, idle_s=5)]
        thread.join()
        return got

    assert asyncio.run(run()) == list(range(5_000))


def test_broker_url_gives_host_port_tls_and_credentials() -> None:
    plain = BrokerAddress.parse("mqtt://127.0.0.1:1884")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1884, False, None)
    secure = BrokerAddress.parse("mqtts://ingest:p%40ss@broker.example")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "ingest",
        "p@ss",
    )


def test_http_items_in_either_format_are_validated_like_mqtt_ones() -> None:
    from powerflow_common.http_ingest import decode_items

    items = [
        {"deviceCode": 7, "timestamp": "2025-12-01T00:00:00Z", "electric": 5.5},
        {"device_code": "gw-1", "ts": "2025-12-01T00:00:05Z", "power_w": 3.0, "local_time": True},
        {"device_code": "gw-1", "ts": "2025-12-01T00:00:05", "power_w": 3.0},
        {"deviceCode": 7, "timestamp": "2025-12-01T00:00:00Z", "humidity": 140},
        "not an object",
    ]
    readings, results, rejected = decode_items(items, T0.replace(year=2026), Limits())
    assert [r.device_code for r in readings] == ["7", "gw-1"]
    assert readings[1].local_time is False and readings[1].payload_format == "http"
    assert [(r.status, r.reason) for r in results] == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "timestamp_no_offset"),
        ("rejected", "out_of_range"),
        ("rejected", "not_object"),
    ]
    assert len(rejected) == 3
