"""ESPHome's MQTT component: ``<prefix>/sensor/<object_id>/state``, a plain-text number.

No timestamp (stamped on arrival, whole seconds) and retained by default: a retained state
replayed on subscribe is not a new reading. Which quantity a sensor is comes from its
object id (``power``, ``energy``, ``voltage``, ``current``, ``temperature``, ``humidity``,
``illuminance``, by the first of these words it contains).
"""

from __future__ import annotations

import re
from datetime import datetime

from powerflow_common.formats.mqtt_topics import arrival_ts, code_from_topic, plain_number
from powerflow_common.validation import Limits
from powerflow_common.wire import Reading

STATE_TOPIC = re.compile(r"^(?P<prefix>.+)/sensor/(?P<object_id>[^/]+)/state$")

# Checked in order: "daily_energy" names energy, not power; "apparent_power" is not W.
QUANTITIES: tuple[tuple[str, str, float], ...] = (
    ("apparent", "", 0.0),
    ("reactive", "", 0.0),
    ("energy", "energy_wh", 1.0),
    ("power", "power_w", 1.0),
    ("voltage", "voltage_v", 1.0),
    ("current", "current_a", 1.0),
    ("temperature", "temperature_c", 1.0),
    ("humidity", "humidity_pct", 1.0),
    ("illuminance", "brightness_lux", 1.0),
    ("lux", "brightness_lux", 1.0),
)


def quantity(object_id: str) -> tuple[str, float] | None:
    """The canonical column and scale an object id names, or None."""
    lowered = object_id.lower()
    for word, column, scale in QUANTITIES:
        if word in lowered:
            return (column, scale) if column else None
    return None


class EsphomeFormat:
    """Decoder of ESPHome sensor state messages."""

    name: str = "esphome"
    topic_patterns: tuple[str, ...] = ("+/sensor/+/state",)

    def claims(self, topic: str) -> bool:
        """``<prefix>/sensor/<object_id>/state``."""
        return STATE_TOPIC.match(topic) is not None

    def device_topics(self, code: str) -> tuple[str, ...]:
        """Sensor states under ``topic_prefix: <code>``, and ESPHome's availability topic.

        ``<code>/status`` carries ESPHome's birth and last-will messages (``online`` and
        ``offline``, retained); without it the broker would refuse the will. No format
        claims it. Discovery (``homeassistant/...``) and the log topic are not granted.
        """
        return (f"{code}/sensor/+/state", f"{code}/status")

    def decode(
        self, topic: str, payload: bytes, now: datetime, limits: Limits, *, retained: bool
    ) -> list[Reading]:
        """One reading with the one quantity the message carries."""
        match = STATE_TOPIC.match(topic)
        assert match is not None
        known = quantity(match["object_id"])
        if known is None:
            return []
        ts = arrival_ts(now, retained)
        value = plain_number(payload)
        if value is None:
            return []
        column, scale = known
        return [
            Reading(
                device_code=code_from_topic(match["prefix"].replace("/", "_")),
                ts=ts,
                payload_format=self.name,
                **{column: value * scale},  # type: ignore[arg-type]
            )
        ]


ESPHOME = EsphomeFormat()
