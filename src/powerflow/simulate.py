"""A simulated device fleet speaking the original format over MQTT QoS 1.

The original system's dummy publisher, made realistic: a daily load shape per kind of
device, noise, temperature and light following the time of day, and occasional offline
spells after which a device replays its buffered readings with their original timestamps.

On powerflow's closed broker each simulated device logs in as itself (``DeviceLogin``: what
``powerflow devices enroll --json`` prints) and publishes on its own topic
``power/<code>/measurement``, like a real enrolled device. Without logins the whole fleet
shares one connection with whatever account the URL names (an open lab broker, or a
benchmark's fleet account).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from powerflow_common.names import INGEST_CLIENT_ID
from powerflow_common.settings import Settings
from powerflow_ingest.mqtt import BrokerAddress

MAX_LOGINS = 10_000  # devices one credentials file may hold: a simulator, not a registry


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


def fleet_codes(devices: int) -> list[str]:
    """The simulated devices' codes: ``sim-0001`` ..."""
    return [f"sim-{i + 1:04d}" for i in range(devices)]


def make_fleet(devices: int, seed: int = 7, codes: Sequence[str] | None = None) -> list[SimDevice]:
    """Simulated nodes (``codes``, else ``devices`` of ``sim-0001`` ...), kinds in rotation."""
    chosen = list(codes) if codes is not None else fleet_codes(devices)
    return [
        SimDevice(code=code, kind=KINDS[i % len(KINDS)], rng=random.Random(seed + i))
        for i, code in enumerate(chosen)
    ]


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    """An enrolled device's broker account (never printed: the password is in it)."""

    code: str
    username: str
    password: str = field(repr=False)


def read_logins(lines: Iterable[str]) -> list[DeviceLogin]:
    """Logins from ``powerflow devices enroll --json`` output, one JSON object a line.

    ValueError, naming the line, for anything else (never echoing a password).
    """
    logins: list[DeviceLogin] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if len(logins) >= MAX_LOGINS:
            raise ValueError(f"more than {MAX_LOGINS} devices in the credentials")
        try:
            item = json.loads(line)
            login = DeviceLogin(str(item["code"]), str(item["username"]), str(item["password"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"credentials line {number} is not an `enroll --json` object "
                "(code, username, password)"
            ) from None
        logins.append(login)
    if len({login.code for login in logins}) != len(logins):
        raise ValueError("a device appears twice in the credentials")
    return logins


def connect_publisher(url: str, client_id: str, *, ca_file: str | None = None) -> mqtt.Client:
    """A QoS 1 publisher connected to the broker, network loop running.

    ``mqtts://`` verifies the broker's certificate against ``ca_file`` (pinned), else
    against the system's CAs.
    """
    address = BrokerAddress.parse(url)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(ca_certs=ca_file)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    client.connect(address.host, address.port, keepalive=30)
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise ConnectionError(f"no answer from the MQTT broker at {address.host}:{address.port}")
    if refused:
        client.loop_stop()
        client.disconnect()
        raise ConnectionError(
            f"the MQTT broker at {address.host}:{address.port} refused "
            f"{address.username or 'an anonymous client'}: {refused[0]}"
        )
    return client


def enroll_fleet(settings: Settings, codes: Sequence[str], *, by: str) -> list[DeviceLogin]:
    """Enrol (or enrol again: new passwords) simulated devices; their logins, in memory."""
    from powerflow_common.broker_admin import broker_admin
    from powerflow_common.db.engine import make_engine
    from powerflow_common.enrolment import enroll_device

    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with broker_admin(settings) as admin:
            enrolled = [enroll_device(engine, admin, code, by=by) for code in codes]
    finally:
        engine.dispose()
    return [DeviceLogin(e.code, e.username, e.password) for e in enrolled]


def refuse_ingest_account(url: str) -> None:
    """ValueError when ``url`` logs in as an ingest instance.

    The broker makes a client id its username: a publisher logged in as ingest would take
    over ingest's session, and its clean start would throw away the bridge's backlog.
    """
    username = BrokerAddress.parse(url).username or ""
    if username == INGEST_CLIENT_ID or f"{INGEST_CLIENT_ID}-" in username:
        raise ValueError(
            f"POWERFLOW_MQTT_URL logs in as ingest ({username!r}): publishing with it would "
            "take over ingest's session. Use --enroll, --credentials, or a publisher account."
        )


def login_url(url: str, login: DeviceLogin) -> str:
    """``url``'s broker (host, port, TLS) with a device's account."""
    from urllib.parse import quote

    address = BrokerAddress.parse(url)
    scheme = "mqtts" if address.tls else "mqtt"
    user, password = quote(login.username, safe=""), quote(login.password, safe="")
    return f"{scheme}://{user}:{password}@{address.host}:{address.port}"


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
    logins: Sequence[DeviceLogin] | None = None,
    ca_file: str | None = None,
) -> int:
    """Publish readings until ``count`` per device or ``duration_s``; returns how many.

    With ``logins`` the fleet is those devices, each on a connection of its own with its
    own account, on its own topic.
    """
    stop = stop or threading.Event()
    fleet, publisher = _open_fleet(url, devices, seed, rate, per_device_topic, logins, ca_file)
    started = time.monotonic()
    try:
        for tick, at in enumerate(_ticks(interval_s, fast=rate is not None, count=count)):
            if stop.is_set() or (count is not None and tick >= count):
                break
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            for device in fleet:
                _publish_one(device, publisher, at, interval_s, rate, offline_chance)
    finally:
        for device in fleet:  # flush what offline devices still hold
            _replay_buffer(device, publisher)
        publisher.close()
    return publisher.sent


def _open_fleet(
    url: str,
    devices: int,
    seed: int,
    rate: float | None,
    per_device_topic: bool,
    logins: Sequence[DeviceLogin] | None,
    ca_file: str | None,
) -> tuple[list[SimDevice], _Publisher]:
    """The simulated devices and their connection(s): one shared, or one per login."""
    if logins is None:
        refuse_ingest_account(url)
        fleet = make_fleet(devices, seed)
        client = connect_publisher(
            url, f"powerflow-sim-{seed}-{random.getrandbits(24):06x}", ca_file=ca_file
        )
        return fleet, _Publisher(client, per_device_topic, rate)
    fleet = make_fleet(len(logins), seed, [login.code for login in logins])
    clients: dict[str, mqtt.Client] = {}
    try:
        for login in logins:
            clients[login.code] = connect_publisher(
                login_url(url, login), login.username, ca_file=ca_file
            )
    except ConnectionError:
        for client in clients.values():
            _close(client)
        raise
    return fleet, _Publisher(clients, True, rate)


def _publish_one(
    device: SimDevice,
    publisher: _Publisher,
    at: datetime,
    interval_s: float,
    rate: float | None,
    offline_chance: float,
) -> None:
    """One device's reading at ``at``: buffered while the device is offline, else sent after
    what its buffer holds (oldest first). Only a paced-in-real-time fleet goes offline."""
    body = device.payload(at, interval_s)
    going_offline = device.rng.random() < offline_chance
    if rate is None and device.offline_until <= time.monotonic() and going_offline:
        device.offline_until = time.monotonic() + device.rng.uniform(20, 90)
    if device.offline_until > time.monotonic():
        device.buffer.append(body)
        return
    _replay_buffer(device, publisher)  # back online: replay oldest first
    publisher.send(device.code, body)


def _replay_buffer(device: SimDevice, publisher: _Publisher) -> None:
    while device.buffer:
        publisher.send(device.code, device.buffer.popleft())


class _Publisher:
    """Publishes at QoS 1 with a bounded window of unacknowledged messages, at a paced rate."""

    WINDOW = 1000

    def __init__(
        self,
        clients: mqtt.Client | dict[str, mqtt.Client],
        per_device_topic: bool,
        rate: float | None,
    ) -> None:
        # One shared connection, or one per device (each device's own account).
        self._clients = clients
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
        client = self._clients if isinstance(self._clients, mqtt.Client) else self._clients[code]
        self._pending.append(client.publish(topic, body, qos=1))
        self.sent += 1
        while len(self._pending) > self.WINDOW or (
            self._pending and self._pending[0].is_published()
        ):
            self._pending.popleft().wait_for_publish(30)

    def close(self) -> None:
        while self._pending:
            self._pending.popleft().wait_for_publish(30)
        clients = (
            [self._clients] if isinstance(self._clients, mqtt.Client) else self._clients.values()
        )
        for client in clients:
            _close(client)


def _close(client: mqtt.Client) -> None:
    client.loop_stop()
    client.disconnect()


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
