"""Devices people already own, through the real pipeline: Tasmota, Shelly, ESPHome, emonhub."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from pf_testing import (
    FleetBroker,
    Service,
    device_rows,
    publish_all,
    read_rejections,
    sentinel_message,
    wait_for,
)
from powerflow.broker import free_port
from powerflow.simulate import connect_publisher
from powerflow_common.db.models import UtcDateTime
from powerflow_common.energy import EnergySample, hourly_energy
from powerflow_common.settings import Settings


def rows_of(engine: Engine, code: str) -> list[Any]:
    with engine.connect() as conn:
        return [
            dict(row._mapping)
            for row in conn.execute(
                # Typed: SQLite hands back an untyped DATETIME as a string.
                text(
                    "SELECT r.* FROM readings r JOIN devices d ON d.id = r.device_id"
                    " WHERE d.code = :code ORDER BY r.ts"
                ).columns(ts=UtcDateTime(), received_at=UtcDateTime()),
                {"code": code},
            )
        ]


def test_each_vendor_format_is_stored_with_its_device_time_and_values(
    running: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    # The devices send Seoul wall-clock time without an offset.
    seoul_now = datetime.now(ZoneInfo("Asia/Seoul")).replace(microsecond=0)
    seoul_wall = seoul_now.replace(tzinfo=None)
    utc_now = datetime.now(UTC).replace(microsecond=0)
    shelly_ts = (utc_now - timedelta(seconds=30)).timestamp()
    messages = [
        (
            "tele/tasmota_1A2B3C/SENSOR",
            {
                "Time": seoul_wall.isoformat(),
                "ENERGY": {"Total": 12.345, "Power": 15, "Voltage": 230, "Current": 0.087},
            },
        ),
        (
            "tele/shelly25/SENSOR",
            {"Time": seoul_wall.isoformat(), "ENERGY": {"Power": [45, 10], "Voltage": 230}},
        ),
        # Two NotifyStatus frames of one moment, each with some keys: one row.
        (
            "shelly1pm/events/rpc",
            {"method": "NotifyStatus", "params": {"ts": shelly_ts, "switch:0": {"apower": 8.9}}},
        ),
        (
            "shelly1pm/events/rpc",
            {"method": "NotifyStatus", "params": {"ts": shelly_ts, "switch:0": {"voltage": 237.5}}},
        ),
        ("emon/emonpi", {"time": int(utc_now.timestamp()) - 20, "P1": 100, "E1": 1234}),
    ]
    publish_all(broker.fleet_url, [(t, json.dumps(b)) for t, b in messages])
    wait_for(lambda: device_rows(engine, "emonpi-1") == 1, 30, what="emonhub row")
    wait_for(lambda: device_rows(engine, "shelly25-2") == 1, 30, what="tasmota channel 2")

    [tasmota] = rows_of(engine, "tasmota_1A2B3C")
    # Local time without an offset, resolved with the default site timezone (Asia/Seoul).
    assert tasmota["ts"] == seoul_now.astimezone(UTC)  # rows_of gives aware UTC datetimes
    assert (tasmota["power_w"], tasmota["energy_wh"]) == (15.0, 12345.0)
    assert [
        r["power_w"] for r in rows_of(engine, "shelly25-1") + rows_of(engine, "shelly25-2")
    ] == [45.0, 10.0]
    [shelly] = rows_of(engine, "shelly1pm-0")
    assert (shelly["power_w"], shelly["voltage_v"]) == (8.9, 237.5)
    [emon] = rows_of(engine, "emonpi-1")
    assert (emon["power_w"], emon["energy_wh"]) == (100.0, 1234.0)
    with engine.connect() as conn:
        formats = {c: f for c, f in conn.execute(text("SELECT code, payload_format FROM devices"))}
    assert formats["tasmota_1A2B3C"] == "tasmota" and formats["emonpi-1"] == "emonhub"


def test_shelly_counter_reset_never_yields_negative_energy(
    running: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    totals_wh = [100.0, 105.0, 2.0, 6.0]  # the plug lost power between the 2nd and 3rd
    frames = [
        (
            "plug9/events/rpc",
            json.dumps(
                {
                    "method": "NotifyStatus",
                    "params": {
                        "ts": (start + timedelta(seconds=5 * i)).timestamp(),
                        "switch:0": {"apower": 60.0, "aenergy": {"total": total}},
                    },
                }
            ),
        )
        for i, total in enumerate(totals_wh)
    ]
    publish_all(broker.fleet_url, frames)
    wait_for(lambda: device_rows(engine, "plug9-0") == 4, 30, what="four counter rows")
    samples = [
        EnergySample(ts=r["ts"], power_w=r["power_w"], energy_wh=r["energy_wh"])
        for r in rows_of(engine, "plug9-0")
    ]
    [hour] = hourly_energy(samples, start, start + timedelta(hours=1))
    assert hour.energy_kwh >= 0
    assert abs(hour.energy_kwh - 0.011) < 1e-9  # 5 Wh, then 2 Wh counted from the reset, then 4


def test_esphome_retained_state_replayed_on_reconnect_stores_nothing_new(
    services: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    metrics_port = free_port()
    services["ingest"].env["POWERFLOW_INGEST_METRICS_PORT"] = str(metrics_port)
    services["writer"].start()
    services["ingest"].start().wait_logged("mqtt_subscribed")
    # ESPHome publishes its states retained.
    client = connect_publisher(broker.fleet_url, "esphome-livingroom")
    client.publish("livingroom/sensor/power/state", "123.4", qos=1, retain=True).wait_for_publish(
        10
    )
    client.loop_stop()
    client.disconnect()
    wait_for(lambda: device_rows(engine, "livingroom") == 1, 30, what="the live state")

    services["ingest"].stop()
    services["ingest"].start().wait_logged("mqtt_subscribed")

    def replays_ignored() -> float:
        try:
            body = urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=2
            ).read()
        except OSError:
            return 0.0
        for line in body.decode().splitlines():
            if line.startswith('powerflow_ingest_messages_ignored_total{reason="retained_replay"}'):
                return float(line.split()[-1])
        return 0.0

    wait_for(replays_ignored, 30, what="the retained replay to be ignored")
    publish_all(broker.fleet_url, [sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 30)
    assert device_rows(engine, "livingroom") == 1


def test_malformed_payload_of_each_format_is_dead_lettered_with_its_format(
    running: dict[str, Service], broker: FleetBroker, settings: Settings
) -> None:
    bad = [
        ("tele/plug/SENSOR", b"{not json", "tasmota"),
        ("shelly1/status/switch:0", b"[1]", "shelly"),
        ("node/sensor/power/state", b"lots", "esphome"),
        ("emon/node", b'{"time":1764158390,"P1":"x"}', "emonhub"),
        ("power/measurement", b"nope", "original"),
    ]
    publish_all(broker.fleet_url, [(t, p) for t, p, _ in bad])
    records = read_rejections(settings.nats_url, settings.names.rejected_stream, len(bad), 30)
    assert sorted((r.topic, r.format) for r in records) == sorted((t, f) for t, _, f in bad)
    assert all(r.detail.startswith(f"{r.format}: ") for r in records)
