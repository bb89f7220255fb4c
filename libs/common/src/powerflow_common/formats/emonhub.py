"""OpenEnergyMonitor emonhub: ``emon/<node>/<key>`` plain-text values, or JSON on ``emon/<node>``.

``P1``..``P6`` (or ``power1``..) are W per CT channel, ``E1``..``E6`` cumulative Wh per
channel; each channel is a device ``<node>-<n>``. ``T1``.. temperatures, ``Vrms`` voltage
and ``humidity`` belong to the node itself. The JSON form carries ``time`` (Unix seconds);
plain-text values are stamped on arrival (whole seconds).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from powerflow_common.errors import Rejected
from powerflow_common.formats._json import json_object, number
from powerflow_common.formats.mqtt_topics import arrival_ts, code_from_topic, plain_number
from powerflow_common.validation import Limits
from powerflow_common.wire import Reading

CHANNEL_KEY = re.compile(r"^(?:P|power)(\d)$|^(?:E|energy)(\d)$")
NODE_KEYS = {
    "T1": "temperature_c",
    "temp": "temperature_c",
    "Vrms": "voltage_v",
    "humidity": "humidity_pct",
    "vrms": "voltage_v",
}


def _columns(node: str, key: str) -> tuple[str, str] | None:
    """(device code, column) for one emonhub key, or None for keys we do not store."""
    match = CHANNEL_KEY.match(key)
    if match is not None:
        power_ch, energy_ch = match.groups()
        if power_ch:
            return code_from_topic(node, power_ch), "power_w"
        return code_from_topic(node, energy_ch), "energy_wh"
    column = NODE_KEYS.get(key)
    return (code_from_topic(node), column) if column else None


def _readings(node: str, values: dict[str, float], ts: datetime, fmt: str) -> list[Reading]:
    by_device: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        target = _columns(node, key)
        if target is not None:
            by_device.setdefault(target[0], {})[target[1]] = value
    return [
        Reading(device_code=code, ts=ts, payload_format=fmt, **cols)
        for code, cols in sorted(by_device.items())
    ]


class EmonhubFormat:
    """Decoder of emonhub's MQTT output, both the per-key and the JSON form."""

    name: str = "emonhub"
    topic_patterns: tuple[str, ...] = ("emon/+", "emon/+/+")

    def claims(self, topic: str) -> bool:
        """``emon/<node>`` and ``emon/<node>/<key>``."""
        levels = topic.split("/")
        return levels[0] == "emon" and len(levels) in (2, 3) and all(levels)

    def device_topics(self, code: str) -> tuple[str, ...]:
        """The node's JSON topic ``emon/<code>`` and its per-key topics ``emon/<code>/<key>``."""
        return (f"emon/{code}", f"emon/{code}/+")

    def decode(
        self, topic: str, payload: bytes, now: datetime, limits: Limits, *, retained: bool
    ) -> list[Reading]:
        """Readings per channel of a node's values."""
        levels = topic.split("/")
        node = levels[1]
        if len(levels) == 3:
            value = plain_number(payload)
            if value is None:
                return []
            return _readings(node, {levels[2]: value}, arrival_ts(now, retained), self.name)
        body = json_object(payload)
        stamp = number(body.get("time"), "time")
        if stamp is None:
            ts = arrival_ts(now, retained)
        else:
            try:
                ts = datetime.fromtimestamp(stamp, UTC)
            except (OverflowError, OSError, ValueError):
                raise Rejected("bad_timestamp", f"time {stamp} is not a time") from None
        values = {
            key: value
            for key, raw in body.items()
            if _columns(node, key) is not None and (value := number(raw, key)) is not None
        }
        return _readings(node, values, ts, self.name)


EMONHUB = EmonhubFormat()
