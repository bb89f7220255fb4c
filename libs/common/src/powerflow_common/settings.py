"""One frozen, typed settings object from ``POWERFLOW_*`` environment variables and ``.env``.

Build it in ``main()`` with :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote, unquote, urlsplit

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from powerflow_common.engines_file import engines_path, live_engines, read_engines_file
from powerflow_common.errors import ConfigurationError
from powerflow_common.names import NAMESPACE_PATTERN, Names

# Mosquitto's dynamic security is managed over MQTT; the embedded broker through its folder.
BROKER_ADMIN_SCHEMES = ("mqtt", "mqtts", "file")
STREAM_MIN_BYTES = 1024 * 1024  # NATS's max_payload: one message must always fit


ENV_PREFIX = "POWERFLOW_"
# URL settings that are secret whole, not only their password: a webhook receiver's URL
# often carries its token in the path or query.
WHOLE_URL_SECRETS = frozenset({"alerts_webhook_url"})
FILE_SUFFIX = "_FILE"  # the Docker/Kubernetes convention: POWERFLOW_REDIS_PASSWORD_FILE=/run/...
# A secret file is a few hundred bytes; anything bigger is the wrong file, not a secret.
SECRET_FILE_MAX_BYTES = 64 * 1024


def is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def env_names(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from (its aliases, else the prefixed name)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{ENV_PREFIX}{name}".upper()]


def read_secret_file(variable: str, path: str) -> str:
    """A secret file's text without its one trailing newline; ConfigurationError if unreadable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(
            f"{variable}={path}: cannot read the secret file ({exc.strerror or exc})"
        ) from None
    if len(raw) > SECRET_FILE_MAX_BYTES:
        raise ConfigurationError(
            f"{variable}={path}: larger than {SECRET_FILE_MAX_BYTES} bytes; not a secret file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{variable}={path}: the secret file is not UTF-8") from None
    # Editors and `echo` end files with a newline that is not part of the secret.
    return text.removesuffix("\n").removesuffix("\r")


def _environment(config: SettingsConfigDict) -> dict[str, str]:
    """The environment over ``.env``, names upper-cased (as pydantic-settings matches them)."""
    environ: dict[str, str] = {}
    env_file = config.get("env_file")
    if isinstance(env_file, str | Path) and Path(env_file).is_file():
        values = dotenv_values(env_file, encoding=config.get("env_file_encoding"))
        environ.update({k.upper(): v for k, v in values.items() if v is not None})
    environ.update({k.upper(): v for k, v in os.environ.items()})
    return environ


# Renamed settings: the old environment name -> the field it now sets. The old name is still
# read, with a warning logged once per process; set together with the new name to another
# value, it is an error (which one was meant would be a guess).
DEPRECATED_NAMES: dict[str, str] = {
    "POWERFLOW_DEFAULT_TIMEZONE": "device_clock_timezone",
    "POWERFLOW_API_TIMEZONE": "organisation_timezone",
    "POWERFLOW_API_PAGE_SIZE_MAX": "api_readings_page_max",
}
_warned_names: set[str] = set()
# The standard library's logger: settings are read before logging is configured, and an
# unconfigured stdlib logger still prints a warning (to stderr), a configured one formats it.
_stdlib_log = logging.getLogger(__name__)


class DeprecatedNameSource(PydanticBaseSettingsSource):
    """Renamed settings from their old environment names (DEPRECATED_NAMES), warning once."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every old name at once

    def __call__(self) -> dict[str, Any]:
        environ = _environment(self.config)
        found: dict[str, Any] = {}
        for old, field_name in DEPRECATED_NAMES.items():
            if old not in environ:
                continue
            value, new = environ[old], f"{ENV_PREFIX}{field_name}".upper()
            if new in environ and environ[new] != value:
                raise ConfigurationError(
                    f"{old}={value!r} is the deprecated name of {new}, which is set to "
                    f"{environ[new]!r}; set only {new}"
                )
            if old not in _warned_names:
                _warned_names.add(old)
                _stdlib_log.warning(
                    "setting %s is deprecated and will be removed: rename it %s", old, new
                )
            found[field_name] = value
        return found


class SecretFileSource(PydanticBaseSettingsSource):
    """Every secret setting from ``<VARIABLE>_FILE`` (a path), as Docker and Kubernetes mount them.

    Read from the environment and ``.env``. Setting both ``POWERFLOW_X`` and
    ``POWERFLOW_X_FILE`` (in either) is an error (which one wins would be a guess), as is a
    file that cannot be read.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        # The environment over .env, as for every other setting (a _FILE line in .env works).
        environ = _environment(self.config)
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not is_secret(field):
                continue
            for variable in env_names(name, field):
                path = environ.get(variable + FILE_SUFFIX)
                if path is None:
                    continue
                direct = [v for v in env_names(name, field) if v in environ]
                if direct:
                    raise ConfigurationError(
                        f"both {direct[0]} and {variable}{FILE_SUFFIX} are set; "
                        "set only one (the _FILE one for a mounted secret)"
                    )
                # Keyed as the environment source keys it: by alias when the field has one.
                key = name if field.validation_alias is None else env_names(name, field)[0]
                found[key] = read_secret_file(variable + FILE_SUFFIX, path)
                break
        return found


class EnginesFileSource(PydanticBaseSettingsSource):
    """The lowest-priority source: the engines of a running ``powerflow up`` with this data folder.

    Reads ``<data_dir>/engines.json`` (data_dir as the other sources set it, else the
    default) when the ``up`` that wrote it is alive; a stale file gives nothing. Every other
    source wins over it, so a worker can still point one engine elsewhere.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file at once

    def __call__(self) -> dict[str, Any]:
        data_dir = self.current_state.get("data_dir", DEFAULT_DATA_DIR)
        found = live_engines(Path(data_dir))
        if found is None:
            return {}
        fields = self.settings_cls.model_fields
        return {name: value for name, value in found.settings.items() if name in fields}


DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    """Every setting of every powerflow process, with defaults that work on one machine."""

    model_config = SettingsConfigDict(
        env_prefix="POWERFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,  # each field's docstring is its description
    )

    data_dir: Path = DEFAULT_DATA_DIR
    """The data folder (relative to the current directory unless absolute): the embedded
    engines' stores, the SQLite database and `engines.json` of a running `powerflow up`."""

    # Connections. Empty means not set: then the URL of a running `powerflow up` with the
    # same data folder (its engines.json), else the command needing it refuses to start
    # (require_engines). No default points at a machine's own services.
    database_url: SecretStr = SecretStr("")
    """SQLAlchemy URL: `mysql+pymysql://user:pass@host/db` (MariaDB/MySQL) or
    `sqlite:////abs/path.db`. Unset: `up`'s, `sqlite:///<data dir>/powerflow.db`."""
    mqtt_url: SecretStr = SecretStr("")
    """The broker, `mqtt://user:pass@host:port` (`mqtts://` for TLS); ingest's username must be
    its client id, `[<namespace>-]powerflow-ingest-<slot>`. Unset: `up`'s broker."""
    mqtt_password: SecretStr | None = None
    """Replaces the password in `POWERFLOW_MQTT_URL`: the URL can sit in plain configuration
    and the password in a secret (`POWERFLOW_MQTT_PASSWORD_FILE`)."""
    mqtt_ca_file: str | None = None
    """The CA that signed the broker's certificate, pinned for `mqtts://` (unset: the
    system's CAs)."""
    broker_admin_url: SecretStr | None = None
    """The broker's account admin for device enrolment: Mosquitto's dynamic security,
    `mqtt://powerflow-admin:PASS@host:port`; the embedded broker, `file:///<data dir>/mqtt`."""
    broker_admin_password: SecretStr | None = None
    """Replaces the password in `POWERFLOW_BROKER_ADMIN_URL`."""
    mqtt_topics: Annotated[tuple[str, ...] | None, NoDecode] = None
    """Comma-separated MQTT subscriptions (unset: the topic patterns of the enabled formats)."""
    nats_url: str = ""
    """NATS server(s), comma-separated. Unset: `up`'s embedded nats-server."""
    namespace: str = ""
    """Prefix of streams, subjects, consumers and the MQTT client id (tests and tenants
    sharing one NATS)."""
    redis_url: SecretStr = SecretStr("")
    """Redis: the dramatiq broker, rate limits, live tickets. Unset: `up`'s redis-server."""
    emission_region: str = "KR"
    """Grid region of the emission factor for devices whose site names none."""
    factor_set: str = "original"
    """The emission factor set in force (`original`: 0.478 kg CO2/kWh at all times)."""
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "POWERFLOW_ANTHROPIC_API_KEY"),
    )
    """Claude's API key; unset, reports get the template narrative."""
    anthropic_model: str = "claude-sonnet-5-5"
    """The Claude model id reports are written with."""
    reports_dir: Path = Path("./var/reports")
    """Where report files go (under `up`: `<data dir>/reports`)."""
    api_host: str = "127.0.0.1"
    """Where the API and the dashboard listen: the address."""
    api_port: int = 8000
    """Where the API and the dashboard listen: the port."""

    metrics_host: str = "127.0.0.1"
    """Where every process's Prometheus `/metrics` listens (`0.0.0.0` in containers)."""

    # Device enrolment (``powerflow devices enroll``): the broker address devices are told,
    # which is often not the one powerflow's own processes use (mqtt_url may be 127.0.0.1 or
    # a cluster-internal name).
    device_mqtt_host: str | None = None
    """The broker host `devices enroll` tells devices (unset: `POWERFLOW_MQTT_URL`'s)."""
    device_mqtt_port: int | None = Field(default=None, ge=1, le=65_535)
    """The broker port `devices enroll` tells devices (unset: `POWERFLOW_MQTT_URL`'s)."""
    device_mqtt_tls_port: int | None = Field(default=None, ge=1, le=65_535)
    """The broker's TLS port as devices reach it (8883 in the shipped configuration); set,
    enrolment prints `mqtts://` settings and the firmware's config.json uses them."""

    # Logging.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The lowest level logged: `debug`, `info`, `warning` or `error`."""
    log_format: Literal["json", "console"] = "json"
    """`json` (one object a line) or `console` (for people)."""

    formats: Annotated[tuple[str, ...], NoDecode] = (
        "original",
        "tasmota",
        "shelly",
        "esphome",
        "emonhub",
    )
    """Payload formats ingest decodes, comma-separated."""
    device_clock_timezone: str = "Asia/Seoul"
    """The timezone of a device clock that sends local time without an offset (Tasmota), for
    a device without a site (a device on a site: the site's)."""

    # Validation of every reading, whatever way it came in (MQTT, HTTP, corrections).
    max_power_w: float = Field(default=100_000.0, gt=0)
    """The largest power a reading may carry; above it the reading is rejected."""
    max_future_s: float = Field(default=300.0, ge=0)
    """How far ahead of the receiving clock a reading's time may be; beyond it, rejected."""

    # Ingest: MQTT session and micro-batching.
    ingest_instance: str = "0"
    """This ingest's name: its `readings.<instance>` subject and the start of its lease
    member id (not its client id)."""
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    """The MQTT version ingest speaks: `5` (Mosquitto) or `3.1.1`, the only one the embedded
    broker (nats-server's MQTT listener, `powerflow up` sets it) and amqtt accept. 3.1.1 has
    no session expiry and no Receive Maximum: the broker's own in-flight limit bounds what is
    unacknowledged."""
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, gt=0)
    """How long the broker keeps ingest's session (and its queued messages) while it is away
    (MQTT 5)."""
    mqtt_receive_maximum: int = Field(default=10_000, ge=20, le=65_535)
    """Unacknowledged MQTT messages ingest accepts at once (MQTT 5)."""
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    """MQTT keepalive of ingest's connection."""
    ingest_batch_max_messages: int = Field(default=500, ge=1)
    """MQTT messages in one ingest micro-batch at most."""
    ingest_batch_linger_ms: int = Field(default=20, ge=0)
    """How long ingest waits to fill a micro-batch."""
    ingest_max_publishes_in_flight: int = Field(default=32, ge=1)
    """JetStream publishes ingest awaits at once."""
    ingest_metrics_port: int = 9101
    """ingest's Prometheus `/metrics` port (0: off)."""
    ingest_slots: int = Field(default=1, ge=1, le=256)
    """K: ingest's fixed MQTT client ids `powerflow-ingest-0..K-1` (broker accounts, persistent
    sessions, each with its share of the topic filters), leased by the running instances in a
    JetStream key-value bucket. 1: one session with every topic, a second instance is a
    standby. Set it above the instances you run (4 for 2 replicas) and never lower it without
    draining the removed slots' sessions (docs/operations.md, "Many ingest bridges")."""
    ingest_lease_ttl_s: float = Field(default=10.0, ge=2.0, le=3600.0)
    """A slot lease not renewed for this long expires and a survivor adopts the slot; the
    holder renews every quarter of it and drops a slot it could not renew in time."""
    broker_sys_wait_s: float = Field(default=30.0, gt=0)
    """How long after subscribing ingest waits for the broker's retained `$SYS` drop counter
    before saying the broker publishes none."""
    broker_drop_alarm_window_s: float = Field(default=3600.0, gt=0)
    """How long `/readyz` stays degraded after the broker was seen dropping messages."""

    # JetStream.
    readings_max_age_days: int = Field(default=0, ge=0)
    """Age limit of READINGS' unconsumed backlog (0: none; a limit deletes messages the writer
    has not read)."""
    rejected_max_age_days: int = Field(default=30, ge=1)
    """REJECTED keeps records this many days, dropping the oldest (counted)."""
    persisted_max_age_days: int = Field(default=0, ge=0)
    """Age limit of PERSISTED's unconsumed backlog (0: none; a limit deletes messages the
    aggregator has not read)."""
    duplicate_window_s: int = Field(default=120, ge=1)
    """JetStream's duplicate window (`Nats-Msg-Id`): an optimisation; the idempotent insert is
    the guarantee."""
    readings_max_bytes: int = Field(default=1024**3, ge=STREAM_MIN_BYTES)
    """Byte limit of READINGS, a work queue (what the writer acked is freed): it bounds a
    backlog, not history; at the limit ingest holds its acks. At least 1 MiB, NATS's largest
    message."""
    persisted_max_bytes: int = Field(default=256 * 1024**2, ge=STREAM_MIN_BYTES)
    """Byte limit of PERSISTED, a work queue: at the limit the writer holds its acks. At least
    1 MiB."""
    rejected_max_bytes: int = Field(default=256 * 1024**2, ge=STREAM_MIN_BYTES)
    """REJECTED keeps records up to this size, dropping the oldest (counted and logged)."""
    rejected_payload_max_bytes: int = Field(default=64 * 1024, ge=0, le=512 * 1024)
    """Raw bytes of a bad message kept in its REJECTED record (size and sha256 cover it all)."""
    stream_usage_alert_ratio: float = Field(default=0.8, gt=0, le=1)
    """Above this share of a stream's byte limit: an error log and `/readyz` degraded."""
    stream_check_interval_s: float = Field(default=15.0, gt=0)
    """How often ingest checks the streams' usage."""
    nats_timeout_s: float = Field(default=5.0, gt=0)
    """One NATS request (a publish's ack, a stream lookup) at most."""
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Copies of every JetStream stream and key-value bucket (1..5): 3 on a 3-node cluster
    keeps storing with one node down; a single server refuses more than 1; an even count adds
    a copy and no tolerance (docs/operations.md, "NATS cluster")."""

    # Writer.
    writer_batch_max_readings: int = Field(default=1_000, ge=1)
    """Readings in one writer batch at most."""
    writer_batch_linger_ms: int = Field(default=200, ge=1)
    """How long the writer waits to fill a batch."""
    writer_ack_wait_s: float = Field(default=30.0, gt=0)
    """A READINGS message unacked for this long is redelivered."""
    writer_max_deliver: int = Field(default=10, ge=2)
    """Deliveries of a READINGS message before the writer dead-letters it, counted from the
    message's own delivery count (the consumer itself redelivers without limit)."""
    writer_retry_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
    """The writer's waits between redeliveries, comma-separated."""
    writer_metrics_port: int = 9102
    """The writer's Prometheus `/metrics` port (0: off)."""

    # Aggregator.
    aggregator_batch_max_messages: int = Field(default=100, ge=1)
    """PERSISTED messages the aggregator takes at once at most."""
    aggregator_ack_wait_s: float = Field(default=30.0, gt=0)
    """A PERSISTED message unacked for this long is redelivered."""
    aggregator_max_deliver: int = Field(default=10, ge=2)
    """Deliveries of a PERSISTED message before the aggregator dead-letters it."""
    aggregator_lock_timeout_s: float = Field(default=10.0, ge=0)
    """How long a recompute waits for a bucket's lock held by another copy."""
    aggregator_metrics_port: int = 9103
    """The aggregator's Prometheus `/metrics` port (0: off)."""

    # Retention of raw readings (powerflow_common.retention).
    raw_retention_days: int | None = Field(default=None, ge=1)
    """Raw readings older than this many days go (whole months on MariaDB/MySQL, batched
    deletes on SQLite) once their hours are rolled up; hours before the horizon are frozen in
    hourly_stats (docs/operations.md, "Retention and partitions"). Unset: kept for ever."""
    retention_interval_s: float = Field(default=3600.0, ge=0)
    """How often each aggregator runs the retention job (future partitions, then retention);
    0: never (run `powerflow retention` from cron instead)."""
    retention_delete_batch_rows: int = Field(default=5_000, ge=1)
    """Rows per SQLite delete transaction: short, so writers wait at most one batch."""

    # Energy rules.
    max_gap_s: float = Field(default=60.0, gt=0)
    """A longer gap between samples contributes no power-integrated energy (a counter's
    increase across it is booked as unallocated)."""
    counter_reset_tolerance_wh: float = Field(default=10.0, ge=0)
    """A counter drop larger than this is a reset (counts from 0); a smaller one is noise."""

    correction_announce_deadline_s: float = Field(default=10.0, gt=0)
    """How long an operator correction keeps retrying to announce the recompute of its hours
    before it reports stale totals (the value itself is committed)."""

    # API (services/api): limits, CORS, live tickets, query ranges.
    api_rate_limit_per_window: int = Field(default=1200, ge=1)
    """Requests per key per window (counted in Redis)."""
    api_rate_limit_window_s: int = Field(default=60, ge=1)
    """The rate limit's window."""
    api_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Browser origins allowed, comma-separated (empty: CORS closed)."""
    api_online_threshold_s: float = Field(default=60.0, gt=0)
    """A device heard from within this long is shown online."""
    api_ticket_ttl_s: int = Field(default=30, ge=1)
    """How long a live WebSocket ticket stays valid."""
    api_static_dir: Path | None = None
    """The built dashboard (unset: the API package's `static/`)."""
    api_raw_max_range_h: float = Field(default=48.0, gt=0)
    """The longest range of raw readings one request may ask for."""
    api_minute_max_range_days: float = Field(default=7.0, gt=0)
    """The longest range at 1-minute and 15-minute resolution one request may ask for."""
    api_readings_page_max: int = Field(default=5000, ge=1)
    """The largest `limit` of a device's readings series (`/devices/{code}/readings`)."""
    api_live_queue_size: int = Field(default=256, ge=1)
    """Live readings queued per WebSocket client; beyond it they are dropped (counted)."""
    organisation_timezone: str = "Asia/Seoul"
    """The calendar of the organisation and of devices without a site: where its days,
    weeks and months are cut."""
    api_redis_timeout_s: float = Field(default=1.0, gt=0)
    """One Redis request of the API at most."""

    # Reporter (services/reporter): one retry policy (dramatiq's), none in the SDK.
    anthropic_base_url: str | None = None
    """Claude's endpoint (unset: the SDK's default)."""
    anthropic_timeout_s: float = Field(default=120.0, gt=0)
    """One Claude request at most."""
    anthropic_max_tokens: int = Field(default=8000, ge=256)
    """Tokens of one narrative at most."""
    report_max_retries: int = Field(default=4, ge=0)
    """Retries of a failed report job (dramatiq's policy; the SDK retries nothing)."""
    report_min_backoff_s: float = Field(default=15.0, gt=0)
    """The first wait before a report job's retry."""
    report_max_backoff_s: float = Field(default=300.0, gt=0)
    """The longest wait before a report job's retry."""
    report_time_limit_s: float = Field(default=600.0, gt=0)
    """One report job at most."""
    report_reaper_interval_s: float = Field(default=60.0, gt=0)
    """How often the reporter looks for stale report jobs."""
    report_stale_after_s: float = Field(default=900.0, gt=0)
    """A queued or running report untouched for this long is queued again."""
    report_give_up_after_s: float = Field(default=6 * 3600.0, gt=0)
    """A report not done this long after it was requested fails."""
    report_schedule_enabled: bool = False
    """A monthly report per site, for the previous month."""
    report_schedule_language: Literal["en", "ko"] = "en"
    """The language of the scheduled monthly reports."""
    reporter_worker_threads: int = Field(default=2, ge=1)
    """Report jobs one reporter runs at once."""
    report_pdf_enabled: bool = True
    """false: HTML, Markdown and facts only (no WeasyPrint)."""

    # HTTP limits and internal credentials (docs/operations.md, "Limits").
    nats_user: str | None = None
    """This service's NATS user (deploy/nats/nats.conf has one per service); unset: the URL's
    own, or none."""
    nats_password: SecretStr | None = None
    """This service's NATS password."""
    redis_password: SecretStr | None = None
    """Redis `requirepass`, added to the URL (unset: the URL's own, or none)."""
    api_auth_failures_burst: int = Field(default=20, ge=1)
    """Failed authentications per client address before 429, counted in each API process
    before any database work: a burst, then `POWERFLOW_API_AUTH_FAILURES_PER_MINUTE`."""
    api_auth_failures_per_minute: float = Field(default=10.0, gt=0)
    """Failed authentications per client address a minute after the burst."""
    api_auth_tracked_addresses: int = Field(default=10_000, ge=100)
    """Client addresses tracked at once; the least recently failed are forgotten beyond it."""
    api_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    """Reverse proxies whose `X-Forwarded-For` names the client (IPs or CIDRs,
    comma-separated). Empty: the connecting address is the client's."""
    api_ingest_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """The largest body of `POST /ingest`."""
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """The largest body of every other request."""
    api_list_page_max: int = Field(default=1000, ge=1)
    """The largest page of `/devices` and `/readings/latest`."""
    api_live_max_per_key: int = Field(default=5, ge=1)
    """Live sockets open at once per key (per API process)."""
    api_live_key_check_s: float = Field(default=10.0, gt=0)
    """How often open sockets' keys are re-checked, so that a revoked key's sockets close."""
    api_reports_per_key: int = Field(default=20, ge=1)
    """Report requests per key per window (each runs the model and costs money)."""
    api_reports_window_s: int = Field(default=3600, ge=1)
    """The report requests' window."""
    api_broker_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """How long one broker admin step of an enrolment from the API may wait for the broker
    before the request answers 503."""

    # Baselines and savings (powerflow_common.baselines and savings; docs/architecture.md).
    baseline_min_days: int = Field(default=90, ge=14, le=3660)
    """A baseline period shorter than a year needs at least this many usable days (a whole day
    of kWh and an outdoor temperature)."""
    baseline_min_temperature_span_c: float = Field(default=10.0, ge=0, le=80)
    """... spanning at least this range of daily mean outdoor temperature (°C)."""
    baseline_min_usable_share: float = Field(default=0.8, gt=0, le=1)
    """The share of a baseline period's days that must be usable."""
    baseline_max_period_days: int = Field(default=1100, ge=31, le=3660)
    """The longest baseline or reporting period, in days."""
    savings_confidence: float = Field(default=0.9, gt=0.5, lt=1)
    """Confidence level of the savings band (ASHRAE Guideline 14 Annex B; 68 % is shown too)."""
    outdoor_min_hours_per_day: int = Field(default=18, ge=1, le=24)
    """Hours with a temperature an outdoor device's day needs to count."""
    weather_import_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """The largest weather CSV `powerflow weather import` reads (the API takes
    `POWERFLOW_API_MAX_BODY_BYTES`)."""

    # Alerts (services/alerts; README "Alerts", docs/operations.md "Alerts").
    alerts_metrics_port: int = 9106
    """The alerts worker's Prometheus `/metrics` port (0: off)."""
    rollups_max_age_days: float = Field(default=2.0, gt=0)
    """ROLLUPS (the aggregator's "these hours were rolled up", read by the alerts worker) keeps
    records this many days, dropping the oldest, whether or not an alerts worker reads it."""
    rollups_max_bytes: int = Field(default=128 * 1024**2, ge=STREAM_MIN_BYTES)
    """ROLLUPS keeps records up to this size, dropping the oldest."""
    alerts_batch_max_messages: int = Field(default=100, ge=1)
    """ROLLUPS messages the alerts worker fetches at once at most."""
    alerts_ack_wait_s: float = Field(default=30.0, gt=0)
    """A ROLLUPS message unacked for this long is redelivered."""
    alerts_max_deliver: int = Field(default=10, ge=2)
    """Deliveries of a ROLLUPS message before the alerts worker dead-letters it."""
    alerts_rules_refresh_s: float = Field(default=30.0, gt=0)
    """How often a worker re-reads the rules and devices: how soon a new or edited rule is
    judged."""
    alerts_rollup_grace_s: float = Field(default=300.0, ge=0)
    """A base-load night or a day is first judged this long after it ended (its last hours'
    late readings come in first), then again on each rollup."""
    alerts_live_queue_size: int = Field(default=10_000, ge=1)
    """Live reading batches waiting for evaluation; beyond it they are dropped and counted."""
    alerts_rules_max: int = Field(default=1000, ge=1)
    """Rules the API accepts in all (each worker judges every one on every reading of its
    devices); beyond it, creating one is refused with 409."""
    alerts_silence_check_s: float = Field(default=10.0, gt=0)
    """How often the silence timer looks at the devices' last readings (in memory)."""
    alerts_outbox_poll_s: float = Field(default=5.0, gt=0)
    """The notification outbox is looked at when this worker wrote an event, and at least this
    often."""
    alerts_outbox_batch: int = Field(default=50, ge=1, le=1000)
    """Notifications one sender claims at once at most."""
    alerts_delivery_claim_s: float = Field(default=60.0, gt=0)
    """A sender holds a notification this long; one whose sender died is taken over after."""
    alerts_delivery_timeout_s: float = Field(default=10.0, gt=0)
    """One delivery attempt (webhook request or SMTP session) at most."""
    alerts_delivery_backoff_base_s: float = Field(default=2.0, gt=0)
    """The first wait before a failed notification is retried (jittered, growing)."""
    alerts_delivery_backoff_cap_s: float = Field(default=600.0, gt=0)
    """The longest wait between retries of a notification."""
    alerts_webhook_url: SecretStr | None = None
    """The alert webhook receiver (with `POWERFLOW_ALERTS_WEBHOOK_SECRET`; both or neither).
    A secret (`_FILE`, masked whole in logs): receivers often take a token in the URL."""
    alerts_webhook_secret: SecretStr | None = None
    """The webhook's Standard Webhooks signing secret, `whsec_<base64>`."""
    alerts_smtp_host: str | None = None
    """The alert e-mail server (unset: no e-mail)."""
    alerts_smtp_port: int = Field(default=587, ge=1, le=65535)
    """The alert e-mail server's port."""
    alerts_smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    """`starttls` (587), `tls` (implicit, 465) or `none`."""
    alerts_smtp_user: str | None = None
    """The alert e-mail server's user."""
    alerts_smtp_password: SecretStr | None = None
    """The alert e-mail server's password."""
    alerts_email_from: str | None = None
    """The sender of alert e-mails."""
    alerts_email_to: Annotated[tuple[str, ...], NoDecode] = ()
    """The recipients of alert e-mails, comma-separated."""

    @field_validator("alerts_email_to", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit overrides, then *_FILE secrets, then the environment, then .env, then
        # renamed settings' old names, then the engines of a running `powerflow up`
        # (engines.json in the data folder).
        return (
            init_settings,
            SecretFileSource(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
            DeprecatedNameSource(settings_cls),
            EnginesFileSource(settings_cls),
        )

    @field_validator(
        "mqtt_topics", "api_cors_origins", "formats", "api_trusted_proxies", mode="before"
    )
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("writer_retry_backoff_s", mode="before")
    @classmethod
    def _split_floats(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    @field_validator("namespace", "ingest_instance")
    @classmethod
    def _name_safe(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(f"must match {NAMESPACE_PATTERN.pattern}")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return value  # not set: require_engines says so when a command needs it
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("mqtt", "mqtts"):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value

    @field_validator("broker_admin_url")
    @classmethod
    def _admin_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in BROKER_ADMIN_SCHEMES:
            raise ValueError(
                "must start with mqtt:// or mqtts:// (Mosquitto) or file:// (the embedded broker)"
            )
        return value

    def redis_connection_url(self) -> str:
        """The Redis URL with ``redis_password`` in it when set (the URL's own otherwise)."""
        return with_password(self.redis_url.get_secret_value(), self.redis_password)

    def secret_values(self) -> list[str]:
        """Every secret's value (a URL's password, not the URL), for the log redactor to mask."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                if name in WHOLE_URL_SECRETS and secret:
                    # A token may be anywhere in it (path, query): the URL, and its path
                    # and query as logged apart, are masked whole.
                    parts = urlsplit(secret)
                    found += [secret, parts.path, parts.query]
                if "://" not in secret:
                    found.append(secret)
                    continue
                password = urlsplit(secret).password or ""
                found += [password, unquote(password)]  # as written and as decoded
        return [v for v in dict.fromkeys(found) if v]

    @property
    def names(self) -> Names:
        """Stream, subject and consumer names in this namespace."""
        return Names(self.namespace)

    @property
    def mqtt_login_url(self) -> str:
        """``mqtt_url`` with ``mqtt_password`` in it when that is set (a secret; never log it)."""
        return with_password(self.mqtt_url.get_secret_value(), self.mqtt_password)

    @property
    def nats_servers(self) -> list[str]:
        """The NATS server URLs, split from the comma-separated setting."""
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]


@dataclass(frozen=True, slots=True)
class EngineSetting:
    """One engine a process connects to: its setting and how a person names it."""

    field: str
    label: str

    @property
    def variable(self) -> str:
        return f"{ENV_PREFIX}{self.field}".upper()


Engine = Literal["database", "nats", "redis", "mqtt"]
ENGINES: dict[Engine, EngineSetting] = {
    "database": EngineSetting("database_url", "database"),
    "nats": EngineSetting("nats_url", "NATS"),
    "redis": EngineSetting("redis_url", "Redis"),
    "mqtt": EngineSetting("mqtt_url", "MQTT broker"),
}


def engine_url(settings: Settings, engine: Engine) -> str:
    """The engine's URL as set (a secret; never log it), "" when not set."""
    value = getattr(settings, ENGINES[engine].field)
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def require_engines(settings: Settings, engines: tuple[Engine, ...]) -> Settings:
    """``settings`` if every engine named has a URL; else ConfigurationError saying what to do.

    A URL comes from the setting, else from a running ``powerflow up`` with the same data
    folder (EnginesFileSource); nothing falls back to a service that may not be there.
    """
    missing = [ENGINES[e] for e in engines if not engine_url(settings, e)]
    if not missing:
        return settings
    folder = settings.data_dir.resolve()
    stale = read_engines_file(settings.data_dir)
    why = (
        f" ({engines_path(folder)} is from pid {stale.pid}, which is no longer running)"
        if stale is not None and not stale.alive
        else ""
    )
    raise ConfigurationError(
        "; ".join(
            f"no {m.label}: set {m.variable} or start `powerflow up` with data folder {folder}"
            for m in missing
        )
        + why
    )


def load_settings(*, require: tuple[Engine, ...] = (), **overrides: object) -> Settings:
    """Read the environment (and ``.env``) into a frozen Settings; overrides win.

    ``require`` names the engines the caller connects to: each must have a URL (set, or from
    a running ``powerflow up``), else ConfigurationError names what is missing.
    """
    return require_engines(Settings(**overrides), require)  # type: ignore[arg-type]


def with_password(url: str, password: SecretStr | None) -> str:
    """``url`` with ``password`` as its userinfo password (the URL unchanged when None)."""
    if password is None:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(parts.username or "", safe="")
    secret = quote(password.get_secret_value(), safe="")
    return parts._replace(netloc=f"{user}:{secret}@{host}").geturl()


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs (each of a comma list: NATS's)."""
    if "," in url:
        return ",".join(redact_url(one) for one in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
