"""A simulated device fleet speaking the original format over MQTT QoS 1.

The original system's dummy publisher, made realistic: a daily load shape per kind of
device, noise, temperature and light following the time of day, and occasional offline
spells after which a device replays its buffered readings with their original timestamps.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from powerflow_ingest.mqtt import BrokerAddress


@dataclass(frozen=True)
class DeviceKind:
    """A kind of load: base and peak watts, and the hours its peak spans."""

    name: str
    base_w: float
    peak_w: float
    peak_hours: tuple[int, int]
    cycling: bool = False  # compressors switch on and off


KINDS = (
    DeviceKind("office-lighting", 40, 900, (8, 19)),
    DeviceKind("hvac", 150, 3200, (9, 18), cycling=True),
    DeviceKind("server-rack", 1100, 1500, (0, 24)),
    DeviceKind("refrigerator", 20, 180, (0, 24), cycling=True),
    DeviceKind("workstation", 8, 320, (9, 18)),
    DeviceKind("kitchen", 15, 2400, (11, 14)),
)


@dataclass
class SimDevice:
    """One simulated node: its code, kind, randomness and offline buffer."""

    code: str
    kind: DeviceKind
    rng: random.Random
    energy_wh: float = 0.0
    offline_until: float = 0.0
    buffer: deque[str] = field(default_factory=lambda: deque(maxlen=17_280))

    def power_w(self, at: datetime) -> float:
        """Load at a moment: shape by local hour (KST), noise, compressor cycling."""
        hour = (at.hour + 9) % 24 + at.minute / 60
        start, end = self.kind.peak_hours
        ramp = min(1.0, (hour - start) / 0.75, (end - hour) / 0.75) if start <= hour < end else 0.0
        level = self.kind.base_w + (self.kind.peak_w - self.kind.base_w) * ramp
        if self.kind.cycling and math.sin(at.timestamp() / 180 + self.rng.random() * 0.2) < -0.3:
            level *= 0.25
        return max(0.0, level * self.rng.gauss(1.0, 0.04))

    def payload(self, at: datetime, interval_s: float) -> str:
        """The original format's JSON for a reading taken ``at``."""
        power = self.power_w(at)
        self.energy_wh += power * interval_s / 3600
        local_hour = (at.hour + 9) % 24 + at.minute / 60
        temperature = 22 + 4 * math.sin((local_hour - 9) / 24 * 2 * math.pi)
        daylight = max(0.0, math.sin((local_hour - 6) / 12 * math.pi))
        return json.dumps(
            {
                "deviceCode": self.code,
                "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
                "temp": round(temperature + self.rng.gauss(0, 0.2), 2),
                "humidity": round(min(100, max(0, 50 + self.rng.gauss(0, 3))), 2),
                "brightness": round(max(0.0, 800 * daylight + self.rng.gauss(0, 15)), 1),
                "electric": round(power, 2),
            }
        )


def make_fleet(devices: int, seed: int = 7) -> list[SimDevice]:
    """``devices`` simulated nodes, codes ``sim-0001`` ..., kinds in rotation."""
    return [
        SimDevice(code=f"sim-{i + 1:04d}", kind=KINDS[i % len(KINDS)], rng=random.Random(seed + i))
        for i in range(devices)
    ]


def connect_publisher(url: str, client_id: str) -> mqtt.Client:
    """A QoS 1 publisher connected to the broker, network loop running."""
    address = BrokerAddress.parse(url)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(address.host, address.port, keepalive=30)
    client.loop_start()
    if not connected.wait(10):
        raise ConnectionError(f"no answer from the MQTT broker at {address.host}:{address.port}")
    return client


def run_fleet(
    url: str,
    *,
    devices: int = 20,
    interval_s: float = 5.0,
    count: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    per_device_topic: bool = False,
    offline_chance: float = 0.002,
    seed: int = 7,
    stop: threading.Event | None = None,
) -> int:
    """Publish readings until ``count`` per device or ``duration_s``; returns how many."""
    stop = stop or threading.Event()
    fleet = make_fleet(devices, seed)
    client = connect_publisher(url, f"powerflow-sim-{seed}-{random.getrandbits(24):06x}")
    publisher = _Publisher(client, per_device_topic, rate)
    started = time.monotonic()
    try:
        for tick, at in enumerate(_ticks(interval_s, fast=rate is not None, count=count)):
            if stop.is_set() or (count is not None and tick >= count):
                break
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            for device in fleet:
                body = device.payload(at, interval_s)
                going_offline = device.rng.random() < offline_chance
                if rate is None and device.offline_until <= time.monotonic() and going_offline:
                    device.offline_until = time.monotonic() + device.rng.uniform(20, 90)
                if device.offline_until > time.monotonic():
                    device.buffer.append(body)
                    continue
                while device.buffer:  # back online: replay oldest first
                    publisher.send(device.code, device.buffer.popleft())
                publisher.send(device.code, body)
    finally:
        for device in fleet:  # flush what offline devices still hold
            while device.buffer:
                publisher.send(device.code, device.buffer.popleft())
        publisher.close()
    return publisher.sent


class _Publisher:
    """Publishes at QoS 1 with a bounded window of unacknowledged messages, at a paced rate."""

    WINDOW = 1000

    def __init__(self, client: mqtt.Client, per_device_topic: bool, rate: float | None) -> None:
        self._client = client
        self._per_device_topic = per_device_topic
        self._gap_s = 1.0 / rate if rate else 0.0
        self._started = time.monotonic()
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()
        self.sent = 0

    def send(self, code: str, body: str) -> None:
        if self._gap_s:
            ahead = self._started + self.sent * self._gap_s - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        topic = f"power/{code}/measurement" if self._per_device_topic else "power/measurement"
        self._pending.append(self._client.publish(topic, body, qos=1))
        self.sent += 1
        while len(self._pending) > self.WINDOW or (
            self._pending and self._pending[0].is_published()
        ):
            self._pending.popleft().wait_for_publish(30)

    def close(self) -> None:
        while self._pending:
            self._pending.popleft().wait_for_publish(30)
        self._client.loop_stop()
        self._client.disconnect()


def _ticks(interval_s: float, fast: bool, count: int | None) -> Iterator[datetime]:
    """Reading times: real time paced by the interval, or back-to-back when ``fast``."""
    if fast:
        # Back-dated so that the last reading is not in the future.
        start = datetime.now(UTC) - timedelta(seconds=interval_s * (count or 720))
        step = timedelta(seconds=interval_s)
        n = 0
        while True:
            yield start + n * step
            n += 1
    next_at = time.monotonic()
    while True:
        yield datetime.now(UTC)
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))
