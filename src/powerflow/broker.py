"""Run a Mosquitto with the project's configuration on a chosen port and data folder.

One broker setup for ``powerflow broker``, ``powerflow up``, the tests and the deployment
files: the configuration in the package (powerflow/data/mosquitto.conf), rendered with ports
and paths, and a data folder holding the store, the dynamic-security accounts, the
certificates and the accounts' passwords:

    <data-dir>/mosquitto.conf            rendered at every start
    <data-dir>/dynamic-security.json     accounts, roles, ACLs (the broker rewrites it)
    <data-dir>/secrets/<account>.password   mode 0600, random unless already there
    <data-dir>/certs/{ca,server}.{crt,key}   `powerflow broker certs` (development CA)
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import ipaddress
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from powerflow.child_process import ChildProcess, listening
from powerflow_common.broker_admin import (
    ADMIN_ROLE,
    ADMIN_USERNAME,
    ANONYMOUS_GROUP,
    CONTROL_TOPIC,
    INGEST_ROLE,
    OPEN_LAB_ROLE,
    Acl,
    BrokerAdmin,
    client_acls,
    hash_password,
    new_password,
)
from powerflow_common.errors import Unavailable
from powerflow_common.formats.registry import FORMATS, default_topics
from powerflow_common.ingest_slots import slot_client_ids
from powerflow_common.names import Names

# The configuration template ships inside the package, so an installed `powerflow` (a wheel, no
# source tree) has it; deploy/mosquitto/mosquitto.conf is its copy for the container and k8s
# files (tests/test_deploy_files.py holds the two equal).
BROKER_CONFIG = Path(str(resources.files("powerflow").joinpath("data", "mosquitto.conf")))

DYNSEC_FILE = "dynamic-security.json"
SECRETS_DIR = "secrets"
CERTS_DIR = "certs"
PLUGIN_NAME = "mosquitto_dynamic_security.so"
# Debian/Ubuntu's multiarch folder, then the eclipse-mosquitto image's and a source build's.
PLUGIN_GLOBS = (
    f"/usr/lib/*-linux-gnu/{PLUGIN_NAME}",
    f"/usr/lib/{PLUGIN_NAME}",
    f"/usr/local/lib/{PLUGIN_NAME}",
)
SECRET_MODE = 0o600

# What the broker's accounts may read: every known format's device topics (the broker does
# not know which formats ingest enables; a disabled format's topic only goes unsubscribed)
# and the broker's own $SYS counters ingest alarms on.
DEVICE_TOPICS: tuple[str, ...] = default_topics(tuple(FORMATS.values()))
SYS_TOPIC = "$SYS/broker/#"
INGEST_TOPICS: tuple[str, ...] = (*DEVICE_TOPICS, SYS_TOPIC)

# Dynamic security's defaults for what no ACL names: nobody publishes, subscribes or
# receives anything unless a role says so (Mosquitto's own default lets everyone receive).
DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
ADMIN_ACLS = (
    Acl("publishClientSend", CONTROL_TOPIC),
    Acl("subscribePattern", f"{CONTROL_TOPIC}/response"),
    Acl("publishClientReceive", f"{CONTROL_TOPIC}/response"),
)


class BrokerSetupError(Unavailable, RuntimeError):
    """The broker cannot be set up or started; the message says what to fix."""


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing listens there, else a free port the OS picks."""
    if preferred is not None:
        with socket.socket() as s:
            if s.connect_ex((host, preferred)) != 0:
                return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def find_plugin() -> str:
    """Where Mosquitto's dynamic security plugin is installed."""
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise BrokerSetupError(
        f"Mosquitto's dynamic security plugin ({PLUGIN_NAME}) is not installed; it ships with "
        "Mosquitto 2.0 (Debian/Ubuntu: apt install mosquitto)"
    )


def ingest_username(instance: str = "0", namespace: str = "") -> str:
    """The broker account of one ingest slot: its MQTT client id (``powerflow-ingest-<slot>``)."""
    return Names(namespace).mqtt_client_id(instance)


def ingest_usernames(slots: int, namespace: str = "") -> list[str]:
    """The K ingest accounts: exactly the slots' client ids (ingest_slots.slot_client_ids)."""
    return list(slot_client_ids(Names(namespace), slots))


# --- configuration --------------------------------------------------------------------------


def render_config(
    port: int,
    data_dir: Path,
    host: str = "127.0.0.1",
    *,
    tls_port: int | None = None,
    plugin: str | None = None,
    open_lab: bool = False,
    certs_dir: Path | None = None,
    template: Path | None = None,
) -> str:
    """The project's broker configuration with its listeners, paths and mode filled in.

    ``tls_port`` None leaves the TLS listener out (its three certificate lines with it);
    ``certs_dir`` (default: the data folder's certs/) holds ca.crt, server.crt, server.key;
    ``template`` is the packaged mosquitto.conf unless given (an installed image).
    """
    text = (template or BROKER_CONFIG).read_text()
    listeners = iter([f"listener {port} {host}", f"listener {tls_port} {host}"])
    text = re.sub(r"(?m)^listener .*$", lambda _m: next(listeners), text)
    if tls_port is None:
        text = re.sub(
            r"(?m)^listener None .*\n(^(cafile|certfile|keyfile|use_username_as_clientid) .*\n)*",
            "",
            text,
        )
    certs = certs_dir or data_dir / CERTS_DIR
    for key, name in (("cafile", "ca.crt"), ("certfile", "server.crt"), ("keyfile", "server.key")):
        text = re.sub(rf"(?m)^{key} .*$", f"{key} {certs / name}", text)
    text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {data_dir}/", text)
    text = re.sub(r"(?m)^plugin .*$", f"plugin {plugin or find_plugin()}", text)
    text = re.sub(
        r"(?m)^plugin_opt_config_file .*$", f"plugin_opt_config_file {data_dir / DYNSEC_FILE}", text
    )
    if open_lab:
        text = re.sub(r"(?m)^allow_anonymous .*$", "allow_anonymous true", text)
        # Mosquitto refuses username-less clients under use_username_as_clientid: the lab's
        # anonymous devices need it off, and then any client may take any client id.
        text = re.sub(r"(?m)^use_username_as_clientid .*$", "use_username_as_clientid false", text)
    # Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read the
    # data folder's 0600 files: it runs as whoever runs it (in containers: uid 10001).
    if os.geteuid() != 0:
        return text  # `user` only matters to a broker started as root
    user = pwd.getpwuid(os.geteuid()).pw_name
    return text + f"\n# Rendered by powerflow: the broker keeps its user.\nuser {user}\n"


# --- accounts -------------------------------------------------------------------------------


def read_or_make_secret(secrets_dir: Path, account: str) -> str:
    """The account's password from ``<secrets>/<account>.password``, made random if absent."""
    path = secrets_dir / f"{account}.password"
    if path.exists():
        password = path.read_text().strip()
        if not password:
            raise BrokerSetupError(f"{path} is empty")
        return password
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = new_password()
    # Created 0600 from the start: the password never sits in a readable file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def _password_matches(entry: dict[str, Any], password: str) -> bool:
    """Whether a dynamic-security client entry's hash is of ``password``."""
    try:
        salt = base64.b64decode(entry["salt"])
        iterations = int(entry["iterations"])
        stored = base64.b64decode(entry["password"])
    except (KeyError, ValueError, TypeError):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(stored))
    return hmac.compare_digest(digest, stored)


def _put_role(config: dict[str, Any], rolename: str, acls: Iterable[Acl]) -> None:
    roles = [r for r in config["roles"] if r.get("rolename") != rolename]
    roles.append({"rolename": rolename, "acls": [a.as_json() for a in acls]})
    config["roles"] = roles


def _put_client(config: dict[str, Any], username: str, password: str, role: str) -> None:
    """Add the client, or make its password ``password`` and give it ``role``."""
    for entry in config["clients"]:
        if entry.get("username") == username:
            if not _password_matches(entry, password):
                entry.update(hash_password(password))
            if role not in {r.get("rolename") for r in entry.get("roles", [])}:
                entry.setdefault("roles", []).append({"rolename": role})
            return
    config["clients"].append(
        {"username": username, "roles": [{"rolename": role}], **hash_password(password)}
    )


def prepare_accounts(
    data_dir: Path, *, ingest_usernames: Sequence[str], open_lab: bool = False
) -> None:
    """Write the broker's own accounts into its dynamic-security file (broker stopped).

    Keeps everything else in the file (enrolled devices). At every start, so that new ingest
    slots, new formats' topics and a rotated secret file take effect:
    ``powerflow-admin`` (role ``dynsec-admin``: $CONTROL only), one account per ingest
    slot (role ``ingest``: read device topics and $SYS/broker/#), and the ``anonymous``
    group's ``open-lab`` role (publish on device topics with --open, nothing otherwise).

    Every ingest account has the password of the first one's secret file
    (``powerflow-ingest-0.password``): any ingest instance may adopt any slot, so each needs
    every slot's password anyway; separate ones would only be more secrets to rotate.
    """
    path = data_dir / DYNSEC_FILE
    secrets_dir = data_dir / SECRETS_DIR
    config: dict[str, Any]
    if path.exists():
        try:
            config = json.loads(path.read_text())
        except ValueError as exc:
            raise BrokerSetupError(f"{path} is not valid JSON: {exc}") from None
    else:
        config = {}
    config.setdefault("clients", [])
    config.setdefault("groups", [])
    config.setdefault("roles", [])
    config["defaultACLAccess"] = dict(DEFAULT_ACL_ACCESS)
    _put_role(config, ADMIN_ROLE, ADMIN_ACLS)
    admin_password = read_or_make_secret(secrets_dir, ADMIN_USERNAME)
    _put_client(config, ADMIN_USERNAME, admin_password, ADMIN_ROLE)
    _put_role(config, INGEST_ROLE, client_acls(subscribe=INGEST_TOPICS))
    if ingest_usernames:
        ingest_password = read_or_make_secret(secrets_dir, ingest_usernames[0])
        for username in ingest_usernames:
            _put_client(config, username, ingest_password, INGEST_ROLE)
    _put_role(config, OPEN_LAB_ROLE, client_acls(publish=DEVICE_TOPICS if open_lab else ()))
    config["groups"] = [g for g in config["groups"] if g.get("groupname") != ANONYMOUS_GROUP]
    config["groups"].append(
        {"groupname": ANONYMOUS_GROUP, "roles": [{"rolename": OPEN_LAB_ROLE}], "clients": []}
    )
    config["anonymousGroup"] = ANONYMOUS_GROUP
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    tmp.replace(path)


# --- certificates -----------------------------------------------------------------------------

CERT_DAYS_CA = 3650
CERT_DAYS_SERVER = 825  # what Apple's and browsers' limits accept for a server certificate


@dataclass(frozen=True, slots=True)
class CertPaths:
    """The TLS files the configuration's three certificate lines point at."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, data_dir: Path) -> CertPaths:
        return cls.of(data_dir / CERTS_DIR)

    @classmethod
    def of(cls, certs: Path) -> CertPaths:
        """The three files in a certificate folder."""
        return cls(certs / "ca.crt", certs / "server.crt", certs / "server.key")

    def exist(self) -> bool:
        return self.ca.exists() and self.cert.exists() and self.key.exists()


# A DNS name as a certificate may carry it (a leading wildcard label allowed).
HOSTNAME_PATTERN = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _san_entry(name: str) -> str:
    """``IP:...`` or ``DNS:...`` for the certificate; anything else is refused."""
    try:
        return f"IP:{ipaddress.ip_address(name)}"
    except ValueError:
        pass
    if len(name) > 253 or not HOSTNAME_PATTERN.fullmatch(name):
        raise BrokerSetupError(f"{name!r} is neither a host name nor an IP address")
    return f"DNS:{name}"


def make_dev_certs(data_dir: Path, hostnames: Sequence[str] = ("localhost",)) -> CertPaths:
    """A development CA and a server certificate for ``hostnames`` (openssl CLI, EC P-256).

    Development only: the CA's key sits beside it. Devices pin ``ca.crt``.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerSetupError("openssl is not installed: it makes the development certificates")
    paths = CertPaths.in_dir(data_dir)
    certs = paths.ca.parent
    certs.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = certs / "ca.key"
    names = list(dict.fromkeys([*hostnames, "localhost", "127.0.0.1"]))
    san = ",".join(_san_entry(n) for n in names)

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerSetupError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(paths.ca),
        "-days", str(CERT_DAYS_CA), "-subj", "/CN=powerflow development CA")  # fmt: skip
    csr = certs / "server.csr"
    run("req", *ec, "-keyout", str(paths.key), "-out", str(csr),
        "-subj", f"/CN={names[0]}")  # fmt: skip
    ext = certs / "server.ext"
    ext.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", str(csr), "-CA", str(paths.ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(paths.cert), "-days", str(CERT_DAYS_SERVER),
        "-extfile", str(ext))  # fmt: skip
    for leftover in (csr, ext, certs / "ca.srl"):
        leftover.unlink(missing_ok=True)
    for key in (ca_key, paths.key):
        key.chmod(SECRET_MODE)
    return paths


def copy_certs(source_dir: Path, data_dir: Path) -> None:
    """Use another data folder's certificates (tests share one development CA per run)."""
    src, dst = CertPaths.in_dir(source_dir), CertPaths.in_dir(data_dir)
    dst.ca.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for a, b in ((src.ca, dst.ca), (src.cert, dst.cert), (src.key, dst.key)):
        shutil.copyfile(a, b)
    dst.key.chmod(SECRET_MODE)


# --- the broker -------------------------------------------------------------------------------


def account_url(host: str, port: int, username: str, password: str, *, tls: bool = False) -> str:
    """An mqtt:// (mqtts://) URL that logs in as ``username``."""
    scheme = "mqtts" if tls else "mqtt"
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{host}:{port}"


class BrokerProcess(ChildProcess):
    """What the two MQTT brokers ``powerflow`` runs share: Mosquitto (``Broker``) and the
    embedded nats-server (``mqtt_embedded.EmbeddedBroker``): where a client on this machine
    reaches it, and its accounts' passwords in its data folder."""

    setup_error = BrokerSetupError
    host: str
    port: int
    data_dir: Path
    namespace: str

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches it."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def url(self) -> str:
        """Its address without credentials (an anonymous client; refused unless open_lab)."""
        return f"mqtt://{self.connect_host}:{self.port}"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / SECRETS_DIR

    def password(self, account: str) -> str:
        """An account's password from the data folder's secrets."""
        return read_or_make_secret(self.secrets_dir, account)

    def ingest_password(self, namespace: str | None = None) -> str:
        """The one password of every ingest slot account: slot 0's secret file."""
        namespace = self.namespace if namespace is None else namespace
        return self.password(ingest_username("0", namespace))


class Broker(BrokerProcess):
    """One Mosquitto process with the project's configuration, accounts included.

    ``start`` prepares the data folder (accounts, certificates when ``tls_port`` is set),
    renders the configuration and waits until the broker listens.
    """

    mqtt_protocol = "5"  # what ingest speaks to it (POWERFLOW_MQTT_PROTOCOL)
    label = "mosquitto"

    def __init__(
        self,
        port: int,
        data_dir: Path,
        *,
        tls_port: int | None = None,
        host: str = "127.0.0.1",
        ingest_slots: int = 1,
        namespace: str = "",
        open_lab: bool = False,
        certs_from: Path | None = None,
        cert_hostnames: Sequence[str] = ("localhost",),
        certs_dir: Path | None = None,
        config_template: Path | None = None,
    ) -> None:
        self.port = port
        self.tls_port = tls_port
        self.host = host
        self.data_dir = data_dir
        self.namespace = namespace
        self.ingest_slots = ingest_slots
        self.open_lab = open_lab
        self.certs_from = certs_from
        self.cert_hostnames = tuple(cert_hostnames)
        self.certs_dir = certs_dir
        self.config_template = config_template
        self.made_certs = False
        self._accounts = set(ingest_usernames(ingest_slots, namespace))

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    @property
    def certs(self) -> CertPaths:
        """The TLS files: a given certificate folder, else the data folder's certs/."""
        return CertPaths.of(self.certs_dir) if self.certs_dir else CertPaths.in_dir(self.data_dir)

    @property
    def admin_url(self) -> str:
        """The dynamic-security admin's URL (POWERFLOW_BROKER_ADMIN_URL)."""
        return account_url(
            self.connect_host, self.port, ADMIN_USERNAME, self.password(ADMIN_USERNAME)
        )

    def admin(self, timeout_s: float = 10.0) -> BrokerAdmin:
        """A BrokerAdmin on this broker (use it in a ``with`` block)."""
        return BrokerAdmin(self.admin_url, timeout_s=timeout_s)

    def ingest_url(self, instance: str = "0", namespace: str | None = None) -> str:
        """ingest's POWERFLOW_MQTT_URL (as slot ``instance``); an account not made at start
        is added now."""
        username = ingest_username(instance, self.namespace if namespace is None else namespace)
        password = self.ingest_password(namespace)
        if username not in self._accounts:
            with self.admin() as admin:
                admin.ensure_client(username, password, roles=[INGEST_ROLE])
            self._accounts.add(username)
        return account_url(self.connect_host, self.port, username, password)

    def start(self, timeout_s: float = 10.0) -> None:
        """Prepare the data folder, start Mosquitto and wait until it accepts connections."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        prepare_accounts(
            self.data_dir,
            ingest_usernames=ingest_usernames(self.ingest_slots, self.namespace),
            open_lab=self.open_lab,
        )
        if self.tls_port is not None and not self.certs.exist():
            if self.certs_dir is not None:
                raise BrokerSetupError(
                    f"TLS files missing in {self.certs_dir}: ca.crt, server.crt and server.key"
                )
            if self.certs_from is not None:
                copy_certs(self.certs_from, self.data_dir)
            else:
                make_dev_certs(self.data_dir, self.cert_hostnames)
                self.made_certs = True
        config = self.data_dir / "mosquitto.conf"
        config.write_text(
            render_config(
                self.port,
                self.data_dir,
                self.host,
                tls_port=self.tls_port,
                open_lab=self.open_lab,
                certs_dir=self.certs.ca.parent,
                template=self.config_template,
            )
        )
        self._spawn([binary, "-c", str(config)])
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        self._await_ready(lambda: all(listening(self.connect_host, p) for p in ports), timeout_s)
