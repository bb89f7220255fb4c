"""Broker accounts and their rights: Mosquitto's dynamic security plugin, driven over MQTT.

Why dynamic security and not a password + ACL file: a change takes effect at once (a removed
client is disconnected by the broker itself), it is made remotely over one MQTT connection
(no signal, no file copied into the broker's container) and needs no reload.

Mosquitto 2.0.11's dynamic security has no ``%u``/``%c`` substitution in ACL topics, so every
account gets a role of its own, named after it (``set_client``). The broker runs with
``use_username_as_clientid true``: a client id is its username, so no account can take over
another's session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from powerflow_common.enrolment import DeviceAccounts
from powerflow_common.errors import BrokerError
from powerflow_common.settings import Settings, with_password

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

# Roles powerflow itself owns. An account named like one of them would have set_client
# rewrite (or remove_client delete) a role other accounts rely on, so such names are refused.
ADMIN_ROLE = "dynsec-admin"
INGEST_ROLE = "ingest"
OPEN_LAB_ROLE = "open-lab"
ANONYMOUS_GROUP = "anonymous"
RESERVED_ROLES = frozenset({ADMIN_ROLE, INGEST_ROLE, OPEN_LAB_ROLE})

ADMIN_USERNAME = "powerflow-admin"

# Dynamic security's password format (Mosquitto 2.0): PBKDF2-HMAC-SHA512 with a 12-byte
# salt and a 64-byte hash, both base64 in the JSON. The plugin itself hashes passwords set
# over $CONTROL with 101 iterations; powerflow's passwords are 256 random bits, so the
# iteration count protects nothing and the plugin's own count is kept.
DYNSEC_SALT_BYTES = 12
DYNSEC_HASH_BYTES = 64
DYNSEC_ITERATIONS = 101
PASSWORD_BYTES = 32  # 256 random bits: no guessing, no dictionary


@dataclass(frozen=True, slots=True)
class Acl:
    """One dynamic-security ACL entry (``acltype`` is one of the plugin's six kinds)."""

    acltype: str
    topic: str
    allow: bool = True
    priority: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "acltype": self.acltype,
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }


def client_acls(publish: Iterable[str] = (), subscribe: Iterable[str] = ()) -> list[Acl]:
    """ACLs that let a client publish on ``publish`` and subscribe to and read ``subscribe``."""
    acls = [Acl("publishClientSend", t) for t in dict.fromkeys(publish)]
    for topic in dict.fromkeys(subscribe):
        acls += [Acl("subscribePattern", topic), Acl("publishClientReceive", topic)]
    return acls


def new_password() -> str:
    """A random broker password (URL-safe: it goes into mqtt:// URLs as it is)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields of a dynamic-security client."""
    salt = salt if salt is not None else secrets.token_bytes(DYNSEC_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), salt, DYNSEC_ITERATIONS, DYNSEC_HASH_BYTES
    )
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": DYNSEC_ITERATIONS,
    }


@dataclass(frozen=True, slots=True)
class _Address:
    host: str
    port: int
    tls: bool
    username: str
    password: str

    @classmethod
    def parse(cls, url: str) -> _Address:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BrokerError("the broker admin URL must start with mqtt:// or mqtts://")
        if not parts.username or not parts.password:
            raise BrokerError(
                "the broker admin URL has no credentials (mqtt://powerflow-admin:PASSWORD@host:port;"
                " `powerflow broker` prints where the password is)"
            )
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username),
            password=unquote(parts.password),
        )


# The broker makes a client id of the username, so two admin connections at once knock each
# other off. Within one process (the API's worker threads) sessions take turns; a session
# of another process (the CLI) meanwhile surfaces as a BrokerError saying to try again.
_SESSION_LOCK = threading.RLock()


class BrokerAdmin:
    """Mosquitto dynamic security over $CONTROL/dynamic-security/v1 (one paho connection).

    Use it as a context manager: ``with BrokerAdmin(url) as admin: admin.set_client(...)``.
    Each command waits for the plugin's answer (matched by correlation data) up to
    ``timeout_s``; a refusal or a silence is a :class:`BrokerError`. One session at a time
    per process (they take turns).
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0, ca_file: str | None = None) -> None:
        self._address = _Address.parse(url)
        self._timeout_s = timeout_s
        self._ca_file = ca_file
        self._client: mqtt.Client | None = None
        self._lock = threading.Condition()
        self._responses: dict[str, dict[str, Any]] = {}
        self._connect_result: str | None = None
        self._subscribed = False
        self._gone: str | None = None

    # connection ------------------------------------------------------------------------------
    def __enter__(self) -> BrokerAdmin:
        if not _SESSION_LOCK.acquire(timeout=self._timeout_s * 3):
            raise BrokerError("another broker admin session of this process did not finish")
        try:
            self._connect()
        except BaseException:
            _SESSION_LOCK.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            _SESSION_LOCK.release()

    def _connect(self) -> None:
        address = self._address
        # The client id is the username anyway (use_username_as_clientid); say it explicitly.
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=address.username,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(address.username, address.password)
        if address.tls:
            client.tls_set(ca_certs=self._ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(address.host, address.port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(
                f"cannot reach the broker at {address.host}:{address.port}: {exc}"
            ) from None
        client.loop_start()
        self._client = client
        with self._lock:
            if not self._lock.wait_for(lambda: self._connect_result is not None, self._timeout_s):
                self.close()
                raise BrokerError(
                    f"the broker at {address.host}:{address.port} did not answer within "
                    f"{self._timeout_s} s"
                )
        if self._connect_result != "Success":
            result = self._connect_result
            self.close()
            raise BrokerError(
                f"the broker refused the admin login as {address.username!r}: {result}"
            )
        client.subscribe(RESPONSE_TOPIC, qos=1)
        with self._lock:
            if not self._lock.wait_for(lambda: self._subscribed or self._gone, self._timeout_s):
                self.close()
                raise BrokerError("the broker did not confirm the admin subscription")
            if self._gone or self._subscribed is not True:
                self.close()
                raise BrokerError(
                    f"{address.username!r} may not read {RESPONSE_TOPIC}: is it the admin account?"
                )

    def close(self) -> None:
        """Disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self._connect_result = "Success" if not reason.is_failure else str(reason)
            self._lock.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        with self._lock:
            self._subscribed = bool(codes) and not codes[0].is_failure
            if not self._subscribed:
                self._gone = f"subscription refused: {codes[0] if codes else 'no answer'}"
            self._lock.notify_all()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            # "Session taken over": another connection logged in as the admin meanwhile.
            self._gone = str(reason)
            self._lock.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        with self._lock:
            for response in body.get("responses", []):
                correlation = response.get("correlationData")
                if isinstance(correlation, str):
                    self._responses[correlation] = response
            self._lock.notify_all()

    # one command -------------------------------------------------------------------------------
    def _call(self, command: str, *, missing_ok: bool = False, **fields: Any) -> Any:
        """Send one command and return its ``data`` (None when ``missing_ok`` and not found)."""
        client = self._client
        if client is None:
            raise BrokerError("BrokerAdmin is not connected: use it in a `with` block")
        correlation = uuid.uuid4().hex
        body = {"commands": [{"command": command, "correlationData": correlation, **fields}]}
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        info = client.publish(CONTROL_TOPIC, json.dumps(body), qos=1, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerError(f"{command}: the admin connection is down ({info.rc})")
        with self._lock:
            answered = self._lock.wait_for(
                lambda: correlation in self._responses or self._gone is not None,
                self._timeout_s,
            )
            response = self._responses.pop(correlation, None)
            gone = self._gone
        if response is None:
            if gone is not None:
                raise BrokerError(
                    f"{command}: the admin connection was closed ({gone}); another admin "
                    "connection may have taken it over: try again"
                )
            raise BrokerError(
                f"{command}: no answer from the broker's dynamic security plugin within "
                f"{self._timeout_s} s (is the plugin loaded?)"
                if not answered
                else f"{command}: no answer"
            )
        error = response.get("error")
        if error:
            if missing_ok and "not found" in str(error).lower():
                return None
            raise BrokerError(f"{command} refused by the broker: {error}")
        return response.get("data", {})

    # roles and clients -------------------------------------------------------------------------
    def ensure_role(self, rolename: str, acls: Sequence[Acl], textname: str | None = None) -> None:
        """Create the role or make its ACLs exactly ``acls`` (new ones added before old removed)."""
        role = self._call("getRole", rolename=rolename, missing_ok=True)
        wanted = {(a.acltype, a.topic): a for a in acls}
        if role is None:
            fields: dict[str, Any] = {"acls": [a.as_json() for a in acls]}
            if textname is not None:
                fields["textname"] = textname
            self._call("createRole", rolename=rolename, **fields)
            return
        current = {(a["acltype"], a["topic"]): a for a in role["role"].get("acls", [])}
        for key, acl in wanted.items():
            have = current.get(key)
            if have is not None and (have.get("allow"), have.get("priority", 0)) == (
                acl.allow,
                acl.priority,
            ):
                continue
            if have is not None:
                self._call("removeRoleACL", rolename=rolename, acltype=key[0], topic=key[1])
            self._call("addRoleACL", rolename=rolename, **acl.as_json())
        for acltype, topic in current.keys() - wanted.keys():
            self._call("removeRoleACL", rolename=rolename, acltype=acltype, topic=topic)

    def ensure_client(
        self,
        username: str,
        password: str | None,
        *,
        roles: Sequence[str],
        textname: str | None = None,
    ) -> None:
        """Create the client with ``roles`` or add missing roles; a password given replaces it."""
        client = self._call("getClient", username=username, missing_ok=True)
        if client is None:
            if password is None:
                raise BrokerError(f"client {username!r} does not exist: a new one needs a password")
            fields: dict[str, Any] = {"roles": [{"rolename": r} for r in roles]}
            if textname is not None:
                fields["textname"] = textname
            self._call("createClient", username=username, password=password, **fields)
            return
        if password is not None:
            self._call("setClientPassword", username=username, password=password)
        if textname is not None and client["client"].get("textname") != textname:
            self._call("modifyClient", username=username, textname=textname)
        have = {r["rolename"] for r in client["client"].get("roles", [])}
        for role in roles:
            if role not in have:
                self._call("addClientRole", username=username, rolename=role)

    def set_client(
        self,
        username: str,
        password: str | None,
        *,
        publish: Sequence[str] = (),
        subscribe: Sequence[str] = (),
        textname: str | None = None,
    ) -> None:
        """Create or replace the client and its own role named after it; idempotent.

        The role allows publishing on each of ``publish`` and subscribing to and receiving
        each of ``subscribe``, nothing else. ``password`` None keeps the current one.
        Mosquitto disconnects a connected client whose password, text name or role ACLs
        change (it reconnects with the new ones); a call that changes nothing sends only
        reads and disconnects nobody.
        """
        _refuse_reserved(username)
        self.ensure_role(username, client_acls(publish, subscribe))
        self.ensure_client(username, password, roles=[username], textname=textname)

    def remove_client(self, username: str) -> bool:
        """Delete the client and its role; the broker disconnects it at once. False if absent."""
        _refuse_reserved(username)
        existed = self._call("deleteClient", username=username, missing_ok=True) is not None
        self._call("deleteRole", rolename=username, missing_ok=True)
        return existed

    def list_clients(self) -> list[str]:
        """Every client's username."""
        data = self._call("listClients", verbose=False, count=-1, offset=0)
        return [str(c) for c in data.get("clients", [])]

    def set_anonymous_publish(self, topics: Sequence[str]) -> None:
        """What anonymous clients may publish (the lab's open broker); empty: nothing."""
        self.ensure_role(OPEN_LAB_ROLE, client_acls(publish=topics))
        group = self._call("getGroup", groupname=ANONYMOUS_GROUP, missing_ok=True)
        if group is None:
            self._call(
                "createGroup", groupname=ANONYMOUS_GROUP, roles=[{"rolename": OPEN_LAB_ROLE}]
            )
        elif OPEN_LAB_ROLE not in {r["rolename"] for r in group["group"].get("roles", [])}:
            self._call("addGroupRole", groupname=ANONYMOUS_GROUP, rolename=OPEN_LAB_ROLE)
        self._call("setAnonymousGroup", groupname=ANONYMOUS_GROUP)


def _refuse_reserved(username: str) -> None:
    if username in RESERVED_ROLES:
        raise BrokerError(f"{username!r} is the name of a role powerflow owns; choose another")


class AccountAdmin(DeviceAccounts, Protocol):
    """What enrolment, the CLI and the API use of a broker's admin, whichever the broker:
    the accounts (enrolment.DeviceAccounts) and a connection to open and close.

    ``BrokerAdmin`` (Mosquitto's dynamic security, over MQTT) and
    ``embedded_broker.EmbeddedBrokerAdmin`` (the embedded nats-server, through its folder).
    Open it with ``with`` (or ``__enter__``); ``close`` ends it.
    """

    def __enter__(self) -> AccountAdmin: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None: ...


def broker_admin(settings: Settings, *, timeout_s: float = 10.0) -> AccountAdmin:
    """The admin ``POWERFLOW_BROKER_ADMIN_URL`` names (not yet connected): mqtt(s):// is
    Mosquitto's dynamic security, file:// the embedded broker's folder."""
    if settings.broker_admin_url is not None and (
        urlsplit(settings.broker_admin_url.get_secret_value()).scheme == "file"
    ):
        from powerflow_common.embedded_broker import EmbeddedBrokerAdmin, folder_from_url

        folder = folder_from_url(settings.broker_admin_url.get_secret_value())
        return EmbeddedBrokerAdmin(folder, timeout_s=timeout_s)
    if settings.broker_admin_url is None:
        raise BrokerError(
            "POWERFLOW_BROKER_ADMIN_URL is not set: set it to "
            f"mqtt://{ADMIN_USERNAME}:PASSWORD@HOST:PORT (`powerflow broker` prints where the "
            "admin password is kept: <data-dir>/secrets/powerflow-admin.password)"
        )
    url = settings.broker_admin_url.get_secret_value()
    password = settings.broker_admin_password
    if password is not None:
        url = with_password(url, password)
    return BrokerAdmin(url, timeout_s=timeout_s, ca_file=settings.mqtt_ca_file)
