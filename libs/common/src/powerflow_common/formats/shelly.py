"""Shelly Gen2/Gen3 over MQTT: component status topics and ``NotifyStatus`` RPC frames.

- ``<prefix>/status/switch:<n>`` and ``pm1:<n>``: ``apower`` W, ``aenergy.total`` Wh,
  ``voltage``, ``current``, ``temperature.tC``; ``em1:<n>``: ``act_power`` W, negative for
  export (such meters are bidirectional); ``em1data:<n>``: ``total_act_energy`` and
  ``total_act_ret_energy`` Wh. Status messages carry no time: stamped on arrival.
- ``<prefix>/events/rpc`` with ``method`` ``NotifyStatus``/``NotifyFullStatus``: only the
  changed keys, and a UTC ``params.ts``.
Each channel is a device ``<prefix>-<n>``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from powerflow_common.errors import Ignored, Rejected
from powerflow_common.formats._json import json_object, number
from powerflow_common.formats.mqtt_topics import arrival_ts, code_from_topic
from powerflow_common.validation import Limits
from powerflow_common.wire import Reading

COMPONENT = re.compile(r"^(switch|pm1|em1|em1data):(\d{1,3})$")
STATUS_TOPIC = re.compile(r"^(?P<prefix>.+)/status/(?P<component>[a-z0-9]+:\d{1,3})$")
RPC_TOPIC = re.compile(r"^(?P<prefix>.+)/events/rpc$")


def component_reading(
    prefix: str, component: str, status: dict[str, Any], ts: datetime, fmt: str
) -> Reading | None:
    """The reading of one component's (full or partial) status; None if it measures nothing."""
    match = COMPONENT.match(component)
    if match is None:
        return None
    kind, channel = match.groups()
    values: dict[str, Any] = {}
    if kind in ("switch", "pm1"):
        values["power_w"] = number(status.get("apower"), f"{component}.apower")
        aenergy = status.get("aenergy")
        if isinstance(aenergy, dict):
            values["energy_wh"] = number(aenergy.get("total"), f"{component}.aenergy.total")
        ret = status.get("ret_aenergy")
        if isinstance(ret, dict):
            values["energy_export_wh"] = number(ret.get("total"), f"{component}.ret_aenergy")
        temperature = status.get("temperature")
        if isinstance(temperature, dict):
            values["temperature_c"] = number(temperature.get("tC"), f"{component}.temperature")
    elif kind == "em1":
        values["power_w"] = number(status.get("act_power"), f"{component}.act_power")
    else:  # em1data
        values["energy_wh"] = number(status.get("total_act_energy"), "total_act_energy")
        values["energy_export_wh"] = number(
            status.get("total_act_ret_energy"), "total_act_ret_energy"
        )
    if kind != "em1data":
        values["voltage_v"] = number(status.get("voltage"), f"{component}.voltage")
        values["current_a"] = number(status.get("current"), f"{component}.current")
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return None
    return Reading(
        device_code=code_from_topic(prefix, channel),
        ts=ts,
        payload_format=fmt,
        bidirectional=kind in ("em1", "em1data"),
        **present,
    )


class ShellyFormat:
    """Decoder of Shelly Gen2/Gen3 status and NotifyStatus messages."""

    name: str = "shelly"
    topic_patterns: tuple[str, ...] = ("+/status/+", "+/events/rpc")

    def claims(self, topic: str) -> bool:
        """Status topics of metering components, and the RPC event topic."""
        status = STATUS_TOPIC.match(topic)
        if status is not None:
            return COMPONENT.match(status["component"]) is not None
        return RPC_TOPIC.match(topic) is not None

    def device_topics(self, code: str) -> tuple[str, ...]:
        """Status of each component and the RPC events, under the MQTT prefix ``<code>``.

        ``status/+``, not ``status/#``: a component's status is one level (``switch:0``).
        ``<code>/online`` is Shelly's availability topic and last will: Mosquitto refuses a
        connection whose will topic the account may not publish on.
        """
        return (f"{code}/status/+", f"{code}/events/rpc", f"{code}/online")

    def decode(
        self, topic: str, payload: bytes, now: datetime, limits: Limits, *, retained: bool
    ) -> list[Reading]:
        """Readings of a status message or of each component in a NotifyStatus frame."""
        body = json_object(payload)
        status = STATUS_TOPIC.match(topic)
        if status is not None:
            reading = component_reading(
                status["prefix"], status["component"], body, arrival_ts(now, retained), self.name
            )
            return [reading] if reading else []
        rpc = RPC_TOPIC.match(topic)
        assert rpc is not None  # claims() said so
        if body.get("method") not in ("NotifyStatus", "NotifyFullStatus"):
            raise Ignored("not_a_status", f"RPC method {str(body.get('method'))[:40]!r}")
        params = body.get("params")
        if not isinstance(params, dict):
            raise Rejected("wrong_type", "NotifyStatus params must be an object")
        stamp = number(params.get("ts"), "params.ts")
        if stamp is None:
            raise Rejected("missing_timestamp", "NotifyStatus without params.ts")
        try:
            ts = datetime.fromtimestamp(stamp, UTC)
        except (OverflowError, OSError, ValueError):
            raise Rejected("bad_timestamp", f"params.ts {stamp} is not a time") from None
        readings = []
        for component, value in params.items():
            if isinstance(value, dict):
                reading = component_reading(rpc["prefix"], component, value, ts, self.name)
                if reading is not None:
                    readings.append(reading)
        return readings


SHELLY = ShellyFormat()
