"""The MQTT edge: a paho-mqtt 2 client with a persistent session and manual acks.

MQTT 5 (Mosquitto): ``clean_start=False`` with a Session Expiry Interval and a Receive
Maximum. MQTT 3.1.1 (nats-server's MQTT listener, the embedded broker): ``clean_session=False``
(the session lasts until a clean connection ends it) and the broker's own in-flight limit.

paho runs its network loop in a thread of its own; messages cross into asyncio through
an ``Inbox``, and acks go back through ``Client.ack`` (paho queues them safely).
"""

from __future__ import annotations

import itertools
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from powerflow_common.backoff import jittered_delay
from powerflow_common.errors import ConfigurationError
from powerflow_common.logs import get_logger
from powerflow_ingest import metrics

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One MQTT message, held until JetStream has it; ``epoch`` names the MQTT session."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    received_at: datetime
    epoch: int
    slot: int = 0  # the ingest slot (client id) whose session it came in on


# Sessions and connections are numbered across every source of the process: an ack (or a
# $SYS value) of one slot's session can never be taken for another's, nor for the session
# a slot had before it was released and adopted again.
_EPOCHS = itertools.count(1)
_CONNECTIONS = itertools.count(1)


# The ``mqtt_protocol`` setting's values and paho's versions.
PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


class SysListener(Protocol):
    """Receives the broker's own ``$SYS`` values, apart from the readings (paho's thread)."""

    def subscribed(self, connection: int) -> None: ...

    def refused(self, topic: str, reason: str) -> None: ...

    def message(self, topic: str, payload: bytes, connection: int) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in, parsed from ``POWERFLOW_MQTT_URL``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    ca_file: str | None = None  # the CA pinned for mqtts:// (None: the system's CAs)

    @classmethod
    def parse(cls, url: str, ca_file: str | None = None) -> BrokerAddress:
        """Parse ``mqtt://user:pass@host:port`` (``mqtts://`` for TLS)."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ca_file=ca_file,
        )


def checked_client_id(address: BrokerAddress, client_id: str) -> str:
    """``client_id``, when the broker account (if any) is the one that owns it.

    powerflow's broker sets ``use_username_as_clientid``: logged in as anyone else, ingest
    would silently get that username as its client id, and two instances sharing an account
    would take each other's session (and backlog). Refused at start, with what to set.
    """
    return checked_slot_login(address, (client_id,))


def checked_slot_login(address: BrokerAddress, client_ids: tuple[str, ...]) -> str:
    """The username in ``POWERFLOW_MQTT_URL`` when it is one of ingest's slot ids.

    Each slot logs in as its own client id (its broker account) with the one ingest
    password; the URL's username only has to be one of them (slot 0's, as the broker prints
    it). Anything else is a wrong account, refused at start with what to set.
    """
    if address.username is not None and address.username not in client_ids:
        shown = client_ids[0] if len(client_ids) == 1 else f"{client_ids[0]}..{client_ids[-1]}"
        raise ConfigurationError(
            f"the MQTT username {address.username!r} is not one of ingest's client ids "
            f"({shown}): log in as {client_ids[0]!r} (POWERFLOW_MQTT_URL; the accounts are made "
            "by `powerflow broker`, their password is in <data-dir>/secrets/) or set "
            "POWERFLOW_NAMESPACE to match the account"
        )
    return address.username or client_ids[0]


def slot_address(address: BrokerAddress, client_id: str) -> BrokerAddress:
    """The login of one slot: its client id as username (when the broker wants a login)."""
    if address.username is None:
        return address
    return BrokerAddress(
        host=address.host,
        port=address.port,
        tls=address.tls,
        username=client_id,
        password=address.password,
        ca_file=address.ca_file,
    )


class MqttSource:
    """Subscribes with QoS 1 in a persistent session and hands messages to a callback."""

    def __init__(
        self,
        *,
        address: BrokerAddress,
        client_id: str,
        topics: tuple[str, ...],
        session_expiry_s: int,
        receive_maximum: int,
        keepalive_s: int,
        deliver: Callable[[Inbound], None],
        sys_topics: tuple[str, ...] = (),
        sys_listener: SysListener | None = None,
        protocol: str = "5",
        slot: int = 0,
    ) -> None:
        self._slot = slot
        self._address = address
        self._client_id = client_id
        self._topics = topics
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._keepalive_s = keepalive_s
        self._deliver = deliver
        self._sys_topics = sys_topics if sys_listener is not None else ()
        self._sys_listener = sys_listener
        if protocol not in PROTOCOLS:
            raise ConfigurationError(f"MQTT protocol must be one of {', '.join(PROTOCOLS)}")
        self._protocol = PROTOCOLS[protocol]
        self._connection = 0  # numbers connections: $SYS values pair within one only
        self._epoch = next(_EPOCHS)
        # Packet ids received on this connection and not yet acked. nats-server sends an
        # unacked message again after its ack_wait on the same connection (the MQTT spec
        # resends only on reconnect); while the first copy is held, the second is dropped.
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=self._protocol,
            # 3.1.1's persistent session (paho's default would start every process clean and
            # the broker would throw the backlog away); MQTT 5 says it at connect instead.
            clean_session=None if v5 else False,
            manual_ack=True,
            reconnect_on_failure=False,  # we reconnect ourselves, with jitter
        )
        if self._address.username is not None:
            client.username_pw_set(self._address.username, self._address.password)
        if self._address.tls:
            client.tls_set(ca_certs=self._address.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        # Our own acks bound what is in flight; paho's queue limits must not drop anything.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # paho thread --------------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("mqtt_connect_refused", reason=str(reason))
            return
        if not flags.session_present:
            # A new session: acks still pending for the old one would name other messages.
            self._epoch = next(_EPOCHS)
        self._connection = next(_CONNECTIONS)
        with self._held_lock:
            # A resend after a reconnect is processed again: the old connection's acks may
            # not have reached the broker.
            self._held.clear()
        log.info(
            "mqtt_connected",
            host=self._address.host,
            port=self._address.port,
            session_present=bool(flags.session_present),
            client_id=self._client_id,
            protocol=self._protocol.name,
        )
        metrics.SLOT_CONNECTED.labels(str(self._slot)).set(1)
        if not self._topics and not self._sys_topics:
            self.connected.set()  # a slot beyond the number of filters: nothing to receive
            return
        # $SYS at QoS 0: an offline session must not queue them in the readings' place.
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            options, sys_options = SubscribeOptions(qos=1), SubscribeOptions(qos=0)
            client.subscribe(
                [(t, options) for t in self._topics] + [(t, sys_options) for t in self._sys_topics]
            )
        else:  # 3.1.1 takes a plain QoS per topic
            client.subscribe([(t, 1) for t in self._topics] + [(t, 0) for t in self._sys_topics])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reason_codes: list[Any], _p: Any
    ) -> None:
        for topic, code in zip(self._topics + self._sys_topics, reason_codes, strict=False):
            if not code.is_failure:
                continue
            if topic in self._sys_topics and self._sys_listener is not None:
                # A broker without Mosquitto's $SYS (or that keeps it from ingest): the
                # listener says the drop counter is not available; the readings go on.
                self._sys_listener.refused(topic, str(code))
            else:
                log.error("mqtt_subscribe_refused", topic=topic, reason=str(code))
        log.info("mqtt_subscribed", topics=list(self._topics), client_id=self._client_id)
        self.connected.set()
        if self._sys_listener is not None:
            self._sys_listener.subscribed(self._connection)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.connected.clear()
        metrics.SLOT_CONNECTED.labels(str(self._slot)).set(0)
        if not self._stopping.is_set():
            log.error("mqtt_disconnected", reason=str(reason), client_id=self._client_id)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._sys_listener is not None and message.topic.startswith("$SYS/"):
            self._sys_listener.message(message.topic, bytes(message.payload), self._connection)
            return
        if message.qos > 0:
            with self._held_lock:
                if message.mid in self._held:
                    metrics.MQTT_REDELIVERIES_HELD.inc()
                    return
                self._held.add(message.mid)
        self._deliver(
            Inbound(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                mid=message.mid,
                retain=bool(message.retain),
                received_at=datetime.now(UTC),
                epoch=self._epoch,
                slot=self._slot,
            )
        )

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                self._connect()
            except OSError as exc:
                delay = jittered_delay(attempt, base_s=0.25, cap_s=10.0)
                log.error(
                    "mqtt_unreachable",
                    host=self._address.host,
                    port=self._address.port,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                attempt += 1
                self._stopping.wait(delay)
                continue
            attempt = 0
            self._client.loop_forever(retry_first_connection=False)
            if not self._stopping.is_set():
                delay = jittered_delay(attempt, base_s=0.25, cap_s=10.0)
                attempt += 1
                self._stopping.wait(delay)

    def _connect(self) -> None:
        if self._protocol != MQTTProtocolVersion.MQTTv5:
            # 3.1.1: clean_session=False was set on the client; nothing else to say.
            self._client.connect(
                self._address.host, self._address.port, keepalive=self._keepalive_s
            )
            return
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry_s
        properties.ReceiveMaximum = self._receive_maximum
        # clean_start=False explicitly: paho's default starts every process clean.
        self._client.connect(
            self._address.host,
            self._address.port,
            keepalive=self._keepalive_s,
            clean_start=False,
            properties=properties,
        )

    # any thread ----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect and keep connected in a background thread."""
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self._slot}", daemon=True)
        self._thread.start()

    def ack(self, inbound: Inbound) -> bool:
        """Acknowledge a message to the broker, unless its session is gone (then it is void)."""
        if inbound.qos == 0 or inbound.epoch != self._epoch:
            return False
        with self._held_lock:
            self._held.discard(inbound.mid)
        self._client.ack(inbound.mid, inbound.qos)
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect (the session and its unacked messages stay with the broker)."""
        self._stopping.set()
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout_s)
