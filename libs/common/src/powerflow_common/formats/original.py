"""The original prototype's JSON format on ``power/measurement`` and ``power/<device>/measurement``.

``{"deviceCode":1234,"timestamp":"2023-06-27T14:30:00Z","temp":25.3,"humidity":55.2,
"brightness":650,"electric":1150.5}``, plus the optional ``energy_wh``, ``voltage``,
``current``, ``seq`` and ``fw`` that powerflow's own firmware sends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec

from powerflow_common.errors import Rejected
from powerflow_common.formats.mqtt_topics import topic_matches
from powerflow_common.validation import Limits, canonical_device_code, check_device_code
from powerflow_common.wire import Reading

MAX_PAYLOAD_BYTES = 16 * 1024  # a reading is ~200 bytes; larger is not a device speaking


class OriginalPayload(msgspec.Struct, frozen=True):
    """The device's JSON, field names as the devices send them."""

    deviceCode: int | str | None = None
    timestamp: str | None = None
    temp: float | None = None
    humidity: float | None = None
    brightness: float | None = None
    electric: float | None = None
    energy_wh: float | None = None
    voltage: float | None = None
    current: float | None = None
    seq: int | None = None
    fw: str | None = None


_decoder = msgspec.json.Decoder(OriginalPayload)


def _parse_timestamp(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise Rejected("bad_timestamp", f"timestamp {text[:64]!r} is not ISO 8601") from None
    # The prototype's devices send UTC; a timestamp without an offset is taken as UTC.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _classify_decode_error(payload: bytes, error: msgspec.DecodeError) -> Rejected:
    """Tell apart the ways a payload fails to be a JSON object of the right shape."""
    message = str(error)
    if isinstance(error, msgspec.ValidationError):
        if "Number out of range" in message:
            return Rejected("not_finite", message)
        return Rejected("wrong_type", message)
    try:
        # Python's json accepts NaN and Infinity, which JSON itself does not: name them.
        json.loads(payload)
    except RecursionError:
        return Rejected("too_deep", "payload nesting too deep")
    except ValueError:
        return Rejected("not_json", message)
    return Rejected("not_finite", "NaN and Infinity are not JSON numbers")


# The prototype's shared topic, where only the payload names the device: readings there are
# stored only for devices enrolled as legacy (powerflow_common.admission, the writer).
LEGACY_TOPIC = "power/measurement"


class OriginalFormat:
    """Decoder of the prototype's format; the default on ``power/...`` topics."""

    name: str = "original"
    topic_patterns: tuple[str, ...] = (LEGACY_TOPIC, "power/+/measurement")

    def claims(self, topic: str) -> bool:
        """``power/measurement`` and ``power/<device>/measurement``."""
        return any(topic_matches(p, topic) for p in self.topic_patterns)

    def device_topics(self, code: str) -> tuple[str, ...]:
        """Its own measurement topic, and the status topic powerflow's firmware publishes
        (online/offline and its last will; no format decodes it)."""
        return (f"power/{code}/measurement", f"power/{code}/status")

    def decode(
        self, topic: str, payload: bytes, now: datetime, limits: Limits, *, retained: bool
    ) -> list[Reading]:
        """The one reading of a message; Rejected when it is not the prototype's format."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Rejected("too_large", f"{len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("invalid_utf8", f"payload is not UTF-8: {exc}") from None
        stripped = payload.lstrip()
        if stripped[:1] != b"{":
            try:
                msgspec.json.decode(stripped)
            except RecursionError:
                raise Rejected("too_deep", "payload nesting too deep") from None
            except msgspec.DecodeError as exc:
                raise _classify_decode_error(payload, exc) from None
            raise Rejected("not_object", "payload must be a JSON object")
        try:
            body = _decoder.decode(payload)
        except msgspec.DecodeError as exc:
            raise _classify_decode_error(payload, exc) from None
        return [self._to_reading(topic, body)]

    def _to_reading(self, topic: str, body: OriginalPayload) -> Reading:
        levels = topic.split("/")
        topic_device = levels[1] if len(levels) == 3 else None
        if body.deviceCode is None and topic_device is None:
            raise Rejected("missing_device_code", "deviceCode is required on power/measurement")
        if body.timestamp is None:
            raise Rejected("missing_timestamp", "timestamp is required")
        payload_device = None if body.deviceCode is None else str(body.deviceCode)
        if topic_device is not None:
            topic_device = check_device_code(topic_device)
            if payload_device is not None and canonical_device_code(payload_device) != topic_device:
                raise Rejected(
                    "device_mismatch",
                    f"topic names device {topic_device!r}, payload names {payload_device[:80]!r}",
                )
        code = check_device_code(topic_device or payload_device or "")
        measurements = (body.electric, body.energy_wh, body.temp, body.humidity, body.brightness)
        if all(v is None for v in (*measurements, body.voltage, body.current)):
            raise Rejected("no_measurements", "the payload carries no measurement")
        return Reading(
            device_code=code,
            ts=_parse_timestamp(body.timestamp),
            power_w=body.electric,
            energy_wh=body.energy_wh,
            voltage_v=body.voltage,
            current_a=body.current,
            temperature_c=body.temp,
            humidity_pct=body.humidity,
            brightness_lux=body.brightness,
            seq=body.seq,
            firmware=body.fw,
        )


ORIGINAL = OriginalFormat()
