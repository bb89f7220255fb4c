"""Tasmota: ``tele/<topic>/SENSOR`` with an ``ENERGY`` object and/or environment sensors.

``{"Time":"2024-01-15T10:30:00","ENERGY":{"Total":12.345,"Power":45,"Voltage":230,
"Current":0.2},"AM2301":{"Temperature":21.5,"Humidity":40.1}}``. ``Total`` is cumulative
kWh; multi-channel meters send arrays (one device per channel, ``<topic>-<n>``). ``Time``
is the device's local time without an offset unless ``TimeZone`` settings add one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from powerflow_common.errors import Rejected
from powerflow_common.formats._json import json_object, number
from powerflow_common.formats.mqtt_topics import code_from_topic, topic_matches
from powerflow_common.validation import Limits
from powerflow_common.wire import Reading

ENV_KEYS = {
    "Temperature": "temperature_c",
    "Humidity": "humidity_pct",
    "Illuminance": "brightness_lux",
}


def _channels(value: Any, name: str) -> list[float | None]:
    if isinstance(value, list):
        return [number(v, name) for v in value]
    return [number(value, name)]


class TasmotaFormat:
    """Decoder of Tasmota's telemetry ``SENSOR`` messages."""

    name: str = "tasmota"
    topic_patterns: tuple[str, ...] = ("tele/+/SENSOR",)

    def claims(self, topic: str) -> bool:
        """``tele/<topic>/SENSOR``."""
        return topic_matches(self.topic_patterns[0], topic)

    def device_topics(self, code: str) -> tuple[str, ...]:
        """``tele/<code>/...`` one level deep: SENSOR, STATE, LWT, INFO (Topic = the code).

        One level (``+``), not ``#``: Tasmota's telemetry is never deeper, and ``#`` would
        also cover ``tele/<code>/sensor/x/state``, an ESPHome topic of a device ``tele``.
        """
        return (f"tele/{code}/+",)

    def decode(
        self, topic: str, payload: bytes, now: datetime, limits: Limits, *, retained: bool
    ) -> list[Reading]:
        """One reading per meter channel, the environment sensors on the first."""
        body = json_object(payload)
        device = code_from_topic(topic.split("/")[1])
        stamp = body.get("Time")
        if not isinstance(stamp, str):
            raise Rejected("missing_timestamp", "Tasmota SENSOR without a Time string")
        try:
            ts = datetime.fromisoformat(stamp)
        except ValueError:
            raise Rejected("bad_timestamp", f"Time {stamp[:40]!r} is not ISO 8601") from None
        env: dict[str, float] = {}
        for key, sensor in body.items():
            if isinstance(sensor, dict) and key != "ENERGY":
                for field, column in ENV_KEYS.items():
                    value = number(sensor.get(field), f"{key}.{field}")
                    if value is not None and column not in env:
                        env[column] = value
        energy = body.get("ENERGY")
        if energy is not None and not isinstance(energy, dict):
            raise Rejected("wrong_type", "ENERGY must be an object")
        power = _channels((energy or {}).get("Power"), "ENERGY.Power")
        total = _channels((energy or {}).get("Total"), "ENERGY.Total")
        voltage = _channels((energy or {}).get("Voltage"), "ENERGY.Voltage")
        current = _channels((energy or {}).get("Current"), "ENERGY.Current")
        n = max(len(power), len(total), len(voltage), len(current))
        multi = n > 1
        readings = []
        for i in range(n):
            # A single Total on a multi-channel meter is their sum: no channel's own counter.
            total_kwh = total[i] if len(total) == n else (total[0] if not multi else None)
            readings.append(
                Reading(
                    device_code=f"{device}-{i + 1}" if multi else device,
                    ts=ts,
                    power_w=_at(power, i, n),
                    energy_wh=None if total_kwh is None else total_kwh * 1000.0,
                    voltage_v=_at(voltage, i, n),
                    current_a=_at(current, i, n),
                    local_time=ts.tzinfo is None,
                    payload_format=self.name,
                    **(env if i == 0 else {}),  # type: ignore[arg-type]
                )
            )
        return [r for r in readings if _has_measurement(r)]


def _at(values: list[float | None], i: int, n: int) -> float | None:
    """The channel's value; a single value on a multi-channel meter is shared (voltage)."""
    if len(values) == n:
        return values[i]
    return values[0] if len(values) == 1 else None


def _has_measurement(reading: Reading) -> bool:
    return any(
        getattr(reading, f) is not None
        for f in (
            "power_w",
            "energy_wh",
            "voltage_v",
            "current_a",
            "temperature_c",
            "humidity_pct",
            "brightness_lux",
        )
    )


TASMOTA = TasmotaFormat()
