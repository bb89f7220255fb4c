"""Tasmota, Shelly, ESPHome and emonhub payloads (from the vendors' documentation)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from powerflow_common.errors import Ignored, Rejected
from powerflow_common.formats import decode_message, find_format
from powerflow_common.formats.registry import FORMATS, default_topics, enabled_formats
from powerflow_common.validation import Limits
from powerflow_common.wire import Reading

NOW = datetime(2026, 11, 26, 12, 0, 0, 456000, tzinfo=UTC)
ALL = enabled_formats(list(FORMATS))


def decode(
    topic: str, payload: str | bytes | Mapping[str, Any], retained: bool = False
) -> list[Reading]:
    if isinstance(payload, Mapping):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return decode_message(ALL, topic, payload, NOW, Limits(), retained=retained)


TASMOTA_PLUG = {
    "Time": "2026-11-26T20:59:50",
    "ENERGY": {
        "TotalStartTime": "2025-12-20T10:00:00",
        "Total": 12.345,
        "Yesterday": 0.05,
        "Today": 0.01,
        "Period": 0,
        "Power": 15,
        "ApparentPower": 20,
        "ReactivePower": 13,
        "Factor": 0.75,
        "Voltage": 230,
        "Current": 0.087,
    },
}


def test_tasmota_plug_reading_travels_as_local_time_with_its_counter_in_wh() -> None:
    [r] = decode("tele/tasmota_1A2B3C/SENSOR", TASMOTA_PLUG)
    assert r.device_code == "tasmota_1A2B3C"
    assert r.local_time and r.ts == datetime(2026, 11, 26, 20, 59, 50)
    assert (r.power_w, r.energy_wh, r.voltage_v, r.current_a) == (15.0, 12345.0, 230.0, 0.087)
    assert r.payload_format == "tasmota"


def test_tasmota_multi_channel_meter_becomes_one_device_per_channel() -> None:
    body = {
        "Time": "2026-11-26T20:59:50",
        "ENERGY": {"Total": 5.1, "Power": [45, 10], "Voltage": 230, "Current": [0.2, 0.05]},
    }
    readings = decode("tele/shelly25/SENSOR", body)
    assert [(r.device_code, r.power_w, r.current_a, r.voltage_v) for r in readings] == [
        ("shelly25-1", 45.0, 0.2, 230.0),
        ("shelly25-2", 10.0, 0.05, 230.0),
    ]
    # One Total for both channels is no channel's own counter.
    assert all(r.energy_wh is None for r in readings)


def test_tasmota_environment_sensors_and_an_offset_time_are_read() -> None:
    body = {"Time": "2026-11-26T11:59:50+00:00", "AM2301": {"Temperature": 21.5, "Humidity": 40.1}}
    [r] = decode("tele/sensor1/SENSOR", body)
    assert not r.local_time and r.ts == datetime(2026, 11, 26, 11, 59, 50, tzinfo=UTC)
    assert (r.temperature_c, r.humidity_pct) == (21.5, 40.1)


SHELLY_SWITCH = {
    "id": 0,
    "source": "button",
    "output": True,
    "apower": 8.9,
    "voltage": 237.5,
    "freq": 50.0,
    "current": 0.068,
    "pf": 0.71,
    "aenergy": {"total": 6.532, "by_minute": [45.199, 47.141, 88.397], "minute_ts": 1654511700},
    "temperature": {"tC": 23.5, "tF": 74.4},
}


def test_shelly_switch_status_is_stamped_on_arrival_to_the_second() -> None:
    [r] = decode("shellyplus1pm-441793d69718/status/switch:0", SHELLY_SWITCH)
    assert r.device_code == "shellyplus1pm-441793d69718-0"
    assert r.ts == NOW.replace(microsecond=0)
    assert (r.power_w, r.energy_wh, r.voltage_v, r.current_a, r.temperature_c) == (
        8.9,
        6.532,
        237.5,
        0.068,
        23.5,
    )


def test_shelly_notify_status_carries_only_changed_keys_and_its_own_time() -> None:
    frame = {
        "src": "shellyplus1pm-441793d69718",
        "dst": "shellyplus1pm-441793d69718/events",
        "method": "NotifyStatus",
        "params": {"ts": 1764158389.13, "switch:0": {"id": 0, "apower": 9.4}},
    }
    [r] = decode("shellyplus1pm-441793d69718/events/rpc", frame)
    assert r.ts == datetime(2025, 11, 26, 11, 59, 49, 130000, tzinfo=UTC)
    assert r.power_w == 9.4 and r.energy_wh is None and r.voltage_v is None


def test_shelly_em1_export_is_negative_power_of_a_bidirectional_meter() -> None:
    status = {"id": 0, "act_power": -120.5, "aprt_power": 130.2, "current": 0.6, "voltage": 231.4}
    [r] = decode("shellypro2em/status/em1:1", status)
    assert r.bidirectional and r.power_w == -120.5 and r.device_code == "shellypro2em-1"
    [d] = decode(
        "shellypro2em/status/em1data:1",
        {"id": 1, "total_act_energy": 12345.67, "total_act_ret_energy": 2345.89},
    )
    assert (d.energy_wh, d.energy_export_wh, d.bidirectional) == (12345.67, 2345.89, True)


def test_shelly_events_that_are_not_status_and_other_components_are_ignored() -> None:
    with pytest.raises(Ignored):
        decode("shelly1/events/rpc", {"method": "NotifyEvent", "params": {"ts": 1.0}})
    assert find_format(ALL, "shelly1/status/sys") is None


def test_esphome_state_is_one_quantity_stamped_on_arrival() -> None:
    [r] = decode("livingroom/sensor/power/state", "123.4")
    assert (r.device_code, r.power_w, r.ts) == ("livingroom", 123.4, NOW.replace(microsecond=0))
    [t] = decode("livingroom/sensor/total_daily_energy/state", "512.5")
    assert t.energy_wh == 512.5 and t.power_w is None


def test_esphome_retained_replay_nan_and_unknown_sensors_store_nothing() -> None:
    with pytest.raises(Ignored) as info:
        decode("livingroom/sensor/power/state", "123.4", retained=True)
    assert info.value.reason == "retained_replay"
    with pytest.raises(Ignored):
        decode("livingroom/sensor/power/state", "nan")
    with pytest.raises(Ignored):
        decode("livingroom/sensor/wifi_signal/state", "-60")


def test_emonhub_keys_become_channel_devices() -> None:
    [p] = decode("emon/emontx4/P1", "152")
    [e] = decode("emon/emontx4/E1", "12345")
    assert (p.device_code, p.power_w) == ("emontx4-1", 152.0)
    assert (e.device_code, e.energy_wh) == ("emontx4-1", 12345.0)
    assert p.ts == e.ts  # merged into one row by the writer


def test_emonhub_json_form_uses_its_time_and_node_values() -> None:
    body = {
        "time": 1764158390,
        "P1": 100,
        "P2": 50.5,
        "E1": 1234,
        "T1": 20.5,
        "Vrms": 240.1,
        "rssi": -60,
    }
    readings = {r.device_code: r for r in decode("emon/emonpi", body)}
    assert set(readings) == {"emonpi", "emonpi-1", "emonpi-2"}
    assert readings["emonpi-1"].energy_wh == 1234 and readings["emonpi-1"].power_w == 100
    assert readings["emonpi"].temperature_c == 20.5 and readings["emonpi"].voltage_v == 240.1
    assert readings["emonpi-2"].ts == datetime(2025, 11, 26, 11, 59, 50, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "fmt"),
    [
        ("tele/plug/SENSOR", b"{not json", "not_json", "tasmota"),
        ("tele/plug/SENSOR", b'{"ENERGY":{"Power":5}}', "missing_timestamp", "tasmota"),
        (
            "tele/plug/SENSOR",
            b'{"Time":"2026-11-26T10:00:00","ENERGY":{"Power":"x"}}',
            "wrong_type",
            "tasmota",
        ),
        ("shelly1/status/switch:0", b"[1]", "not_object", "shelly"),
        (
            "shelly1/events/rpc",
            b'{"method":"NotifyStatus","params":{}}',
            "missing_timestamp",
            "shelly",
        ),
        ("node/sensor/power/state", b"lots", "not_a_number", "esphome"),
        ("emon/node/P1", b"\xff", "invalid_utf8", "emonhub"),
        ("emon/node", b'{"time":1764158390,"P1":"x"}', "wrong_type", "emonhub"),
    ],
)
def test_malformed_vendor_payload_is_rejected_naming_its_format(
    topic: str, payload: bytes, reason: str, fmt: str
) -> None:
    with pytest.raises(Rejected) as info:
        decode(topic, payload)
    assert (info.value.reason, info.value.format_name) == (reason, fmt)


def test_default_subscriptions_cover_every_enabled_format() -> None:
    assert default_topics(enabled_formats(["original"])) == (
        "power/measurement",
        "power/+/measurement",
    )
    assert "tele/+/SENSOR" in default_topics(ALL)


def test_unknown_format_name_is_a_configuration_error() -> None:
    from powerflow_common.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="zigbee"):
        enabled_formats(["original", "zigbee"])
