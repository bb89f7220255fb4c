"""One frozen, typed settings object from ``POWERFLOW_*`` environment variables and ``.env``.

Build it in ``main()`` with :func:`load_settings`, never at import time.
"""

from __future__ import annotations

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
FILE_SUFFIX = "_FILE"  # the Docker/Kubernetes convention: POWERFLOW_REDIS_PASSWORD_FILE=/run/...
# A secret file is a few hundred bytes; anything bigger is the wrong file, not a secret.
SECRET_FILE_MAX_BYTES = 64 * 1024


def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _env_names(name: str, field: FieldInfo) -> list[str]:
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


class SecretFileSource(PydanticBaseSettingsSource):
    """Every secret setting from ``<VARIABLE>_FILE`` (a path), as Docker and Kubernetes mount them.

    Read from the environment and ``.env``. Setting both ``POWERFLOW_X`` and
    ``POWERFLOW_X_FILE`` (in either) is an error (which one wins would be a guess), as is a
    file that cannot be read.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def _dotenv(self) -> dict[str, str | None]:
        env_file = self.config.get("env_file")
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            return dotenv_values(env_file, encoding=self.config.get("env_file_encoding"))
        return {}

    def __call__(self) -> dict[str, Any]:
        # The environment over .env, as for every other setting (a _FILE line in .env works).
        environ = {k.upper(): v for k, v in self._dotenv().items() if v is not None}
        environ.update({k.upper(): v for k, v in os.environ.items()})
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not _is_secret(field):
                continue
            for variable in _env_names(name, field):
                path = environ.get(variable + FILE_SUFFIX)
                if path is None:
                    continue
                direct = [v for v in _env_names(name, field) if v in environ]
                if direct:
                    raise ConfigurationError(
                        f"both {direct[0]} and {variable}{FILE_SUFFIX} are set; "
                        "set only one (the _FILE one for a mounted secret)"
                    )
                # Keyed as the environment source keys it: by alias when the field has one.
                key = name if field.validation_alias is None else _env_names(name, field)[0]
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
    )

    # The data folder (relative to the current directory unless absolute): the embedded
    # engines' stores, the SQLite database and engines.json of a running `powerflow up`.
    data_dir: Path = DEFAULT_DATA_DIR

    # Connections (names fixed by DESIGN.md). Empty means not set: then the URL of a running
    # `powerflow up` with the same data folder (its engines.json), else the command needing
    # it refuses to start (require_engines). No default points at a machine's own services.
    database_url: SecretStr = SecretStr("")
    mqtt_url: SecretStr = SecretStr("")
    # Replaces the password in mqtt_url when set: the URL can sit in plain configuration and
    # the password in a secret (POWERFLOW_MQTT_PASSWORD_FILE). ingest's username is its MQTT
    # client id (the broker enforces use_username_as_clientid); see ingest's startup check.
    mqtt_password: SecretStr | None = None
    # The CA that signed the broker's certificate, pinned for mqtts:// (None: the system's CAs).
    mqtt_ca_file: str | None = None
    # The broker's account admin (device enrolment). Mosquitto's dynamic security:
    # mqtt://powerflow-admin:PASSWORD@host:port (broker_admin_password replaces its password);
    # the embedded broker (nats-server's MQTT listener): file:///<data_dir>/mqtt, its folder.
    broker_admin_url: SecretStr | None = None
    broker_admin_password: SecretStr | None = None
    # None: the topic patterns of the enabled payload formats.
    mqtt_topics: Annotated[tuple[str, ...] | None, NoDecode] = None
    nats_url: str = ""
    namespace: str = ""
    redis_url: SecretStr = SecretStr("")
    emission_region: str = "KR"
    factor_set: str = "original"
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "POWERFLOW_ANTHROPIC_API_KEY"),
    )
    anthropic_model: str = "claude-sonnet-5-5"
    reports_dir: Path = Path("./var/reports")
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Where every process's Prometheus /metrics listens (0.0.0.0 in containers).
    metrics_host: str = "127.0.0.1"

    # Device enrolment (``powerflow devices enroll``): the broker address devices are told,
    # which is often not the one powerflow's own processes use (mqtt_url may be 127.0.0.1 or
    # a cluster-internal name). None: mqtt_url's host and port. The TLS port is printed (and
    # the firmware's config.json uses mqtts://) only when set, i.e. when the broker has a
    # TLS listener (8883 in the shipped configuration).
    device_mqtt_host: str | None = None
    device_mqtt_port: int | None = Field(default=None, ge=1, le=65_535)
    device_mqtt_tls_port: int | None = Field(default=None, ge=1, le=65_535)

    # Logging.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    # Payload formats ingest decodes (original, tasmota, shelly, esphome, emonhub).
    formats: Annotated[tuple[str, ...], NoDecode] = (
        "original",
        "tasmota",
        "shelly",
        "esphome",
        "emonhub",
    )
    # Timezone of a device clock without an offset (Tasmota) when its device has no site.
    default_timezone: str = "Asia/Seoul"

    # Validation of the original device format.
    max_power_w: float = Field(default=100_000.0, gt=0)
    max_future_s: float = Field(default=300.0, ge=0)

    # Ingest: MQTT session and micro-batching.
    ingest_instance: str = "0"
    # MQTT version ingest speaks: "5" (Mosquitto) or "3.1.1", the only one nats-server's MQTT
    # listener (the embedded broker) and amqtt accept. 3.1.1 has no session expiry and no
    # Receive Maximum: the session persists with clean_session=False and the broker's own
    # in-flight limit (the embedded broker's max_ack_pending) bounds what is unacked.
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, gt=0)
    mqtt_receive_maximum: int = Field(default=10_000, ge=20, le=65_535)
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    ingest_batch_max_messages: int = Field(default=500, ge=1)
    ingest_batch_linger_ms: int = Field(default=20, ge=0)
    ingest_max_publishes_in_flight: int = Field(default=32, ge=1)
    ingest_metrics_port: int = 9101
    # Many ingest bridges (docs/operations.md, "Many ingest bridges"): K fixed MQTT client ids
    # ("slots", powerflow-ingest-0 .. K-1, each a broker account and a persistent session
    # with its share of the topic filters); running instances hold leases on them in a
    # JetStream key-value bucket. 1: one session with every topic, today's
    # powerflow-ingest-0, and a second instance is a standby. A scaled deployment sets K
    # above the instances it runs (4 for 2 replicas) and never lowers it without draining
    # the removed slots' sessions (their queues would be stranded).
    ingest_slots: int = Field(default=1, ge=1, le=256)
    # A lease not renewed for this long expires and a survivor adopts the slot; the holder
    # renews every quarter of it and drops (disconnects) a slot it could not renew in time.
    # Shorter: faster adoption; a NATS hiccup longer than it makes instances let go.
    ingest_lease_ttl_s: float = Field(default=10.0, ge=2.0, le=3600.0)
    # Broker health ($SYS drop counter): how long after subscribing ingest waits for the
    # broker's retained counters before saying the broker publishes none (Mosquitto sends
    # them at once; 30 s leaves room for a slow link), and how long /readyz stays degraded
    # after the broker was seen dropping messages.
    broker_sys_wait_s: float = Field(default=30.0, gt=0)
    broker_drop_alarm_window_s: float = Field(default=3600.0, gt=0)

    # JetStream.
    # 0: no age limit. READINGS and PERSISTED free what their consumer acked; an age limit
    # there would only delete a backlog nobody has read yet (a writer down for that long).
    readings_max_age_days: int = Field(default=0, ge=0)
    rejected_max_age_days: int = Field(default=30, ge=1)
    persisted_max_age_days: int = Field(default=0, ge=0)
    duplicate_window_s: int = Field(default=120, ge=1)
    # Byte limits of the streams. READINGS and PERSISTED are work queues (what the consumer
    # acked is freed), so these bound a backlog, not history: at the limit ingest (or the
    # writer) holds its acks until space is freed. 1 GiB holds days of a small fleet's
    # readings with the writer away (docs/operations.md). Each is at least 1 MiB, NATS's
    # largest message, or a full-size message could never be stored.
    readings_max_bytes: int = Field(default=1024**3, ge=STREAM_MIN_BYTES)
    persisted_max_bytes: int = Field(default=256 * 1024**2, ge=STREAM_MIN_BYTES)
    # REJECTED drops its oldest records at the limit (counted and logged by ingest).
    rejected_max_bytes: int = Field(default=256 * 1024**2, ge=STREAM_MIN_BYTES)
    # Raw bytes of a bad message kept in its REJECTED record (size and sha256 cover it all).
    rejected_payload_max_bytes: int = Field(default=64 * 1024, ge=0, le=512 * 1024)
    # Above this share of a stream's byte limit: a loud log and /readyz "degraded".
    stream_usage_alert_ratio: float = Field(default=0.8, gt=0, le=1)
    stream_check_interval_s: float = Field(default=15.0, gt=0)
    nats_timeout_s: float = Field(default=5.0, gt=0)
    # Copies of every stream and key-value bucket on a JetStream cluster (docs/operations.md
    # "NATS cluster"): 3 keeps storing with one node down. A single server refuses more than 1.
    # NATS's own ceiling is 5; an even count adds a copy and no tolerance (quorum is a majority).
    stream_replicas: int = Field(default=1, ge=1, le=5)

    # Writer.
    writer_batch_max_readings: int = Field(default=1_000, ge=1)
    writer_batch_linger_ms: int = Field(default=200, ge=1)
    writer_ack_wait_s: float = Field(default=30.0, gt=0)
    # Deliveries of a READINGS message before the writer dead-letters it, counted from the
    # message's own delivery count (the consumer itself redelivers without limit).
    writer_max_deliver: int = Field(default=10, ge=2)
    writer_retry_backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
    writer_metrics_port: int = 9102

    # Aggregator.
    aggregator_batch_max_messages: int = Field(default=100, ge=1)
    aggregator_ack_wait_s: float = Field(default=30.0, gt=0)
    # Deliveries of a PERSISTED message before the aggregator dead-letters it (as the writer).
    aggregator_max_deliver: int = Field(default=10, ge=2)
    aggregator_lock_timeout_s: float = Field(default=10.0, ge=0)
    aggregator_metrics_port: int = 9103

    # Retention of raw readings (powerflow_common.retention, docs/operations.md "Retention and
    # partitions"). None keeps them for ever; N drops whole months (MySQL/MariaDB) or deletes
    # in batches (SQLite) once older than N days and rolled up. Hours before the horizon are
    # frozen: kept in hourly_stats, never recomputed from raw.
    raw_retention_days: int | None = Field(default=None, ge=1)
    # How often each aggregator runs the job (future partitions, then retention); 0: never
    # (run `powerflow retention` from cron instead).
    retention_interval_s: float = Field(default=3600.0, ge=0)
    # Rows per SQLite delete transaction: short, so writers wait at most one batch.
    retention_delete_batch_rows: int = Field(default=5_000, ge=1)

    # Energy rules.
    max_gap_s: float = Field(default=60.0, gt=0)
    counter_reset_tolerance_wh: float = Field(default=10.0, ge=0)

    # Operator corrections: how long a correction keeps retrying to announce the recompute of
    # its hours (PERSISTED) before it reports stale totals (the value itself is committed).
    correction_announce_deadline_s: float = Field(default=10.0, gt=0)

    # API (services/api): limits, CORS, live tickets, query ranges.
    api_rate_limit_per_window: int = Field(default=1200, ge=1)  # requests per key per window
    api_rate_limit_window_s: int = Field(default=60, ge=1)
    api_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()  # empty: CORS closed
    api_online_threshold_s: float = Field(default=60.0, gt=0)
    api_ticket_ttl_s: int = Field(default=30, ge=1)
    api_static_dir: Path | None = None  # the built dashboard; None: the package's static/
    api_raw_max_range_h: float = Field(default=48.0, gt=0)
    api_minute_max_range_days: float = Field(default=7.0, gt=0)  # 1m and 15m resolutions
    api_page_size_max: int = Field(default=5000, ge=1)
    api_live_queue_size: int = Field(default=256, ge=1)  # per WebSocket client, then dropped
    api_timezone: str = "Asia/Seoul"  # organisation-wide and site-less devices' calendar
    api_redis_timeout_s: float = Field(default=1.0, gt=0)

    # Reporter (services/reporter): one retry policy (dramatiq's), none in the SDK.
    anthropic_base_url: str | None = None  # None: the SDK's default endpoint
    anthropic_timeout_s: float = Field(default=120.0, gt=0)
    anthropic_max_tokens: int = Field(default=8000, ge=256)
    report_max_retries: int = Field(default=4, ge=0)
    report_min_backoff_s: float = Field(default=15.0, gt=0)
    report_max_backoff_s: float = Field(default=300.0, gt=0)
    report_time_limit_s: float = Field(default=600.0, gt=0)
    report_reaper_interval_s: float = Field(default=60.0, gt=0)
    report_stale_after_s: float = Field(default=900.0, gt=0)  # untouched queued/running: requeue
    report_give_up_after_s: float = Field(default=6 * 3600.0, gt=0)  # since creation: fail
    report_schedule_enabled: bool = False  # monthly report per site, for the previous month
    report_schedule_language: Literal["en", "ko"] = "en"
    reporter_worker_threads: int = Field(default=2, ge=1)
    report_pdf_enabled: bool = True  # false: HTML, Markdown and facts only (no WeasyPrint)

    # --- Step 9 (HTTP limits, internal credentials); docs/operations.md "Limits" ---
    # Internal services' credentials; every SecretStr also reads POWERFLOW_<NAME>_FILE.
    nats_user: str | None = None  # None: the URL's own userinfo, or none
    nats_password: SecretStr | None = None
    redis_password: SecretStr | None = None  # None: the URL's own password, or none
    # Failed authentication per client address, counted in each API process before any
    # database work: a burst, then this many a minute. A person mistyping a key never sees it.
    api_auth_failures_burst: int = Field(default=20, ge=1)
    api_auth_failures_per_minute: float = Field(default=10.0, gt=0)
    # Addresses tracked at once; the least recently failed are forgotten beyond it.
    api_auth_tracked_addresses: int = Field(default=10_000, ge=100)
    # Reverse proxies whose X-Forwarded-For names the client (IPs or CIDRs, comma-separated).
    # Empty: the connecting address is the client's, and a proxy's clients share its limit.
    api_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Request bodies: ingest batches (MAX_ITEMS readings) and everything else.
    api_ingest_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Devices and latest readings per page (GET /devices, /readings/latest).
    api_list_page_max: int = Field(default=1000, ge=1)
    # Live sockets open at once per key (per API process), and how often open sockets'
    # keys are re-checked so that a revoked key's sockets close.
    api_live_max_per_key: int = Field(default=5, ge=1)
    api_live_key_check_s: float = Field(default=10.0, gt=0)
    # Reports requested per key in a fixed window (each runs the model and costs money).
    api_reports_per_key: int = Field(default=20, ge=1)
    api_reports_window_s: int = Field(default=3600, ge=1)
    # Enrolment from the API (the dashboard): how long one broker admin step may wait for the
    # broker (connect, each dynamic-security command) before the request answers 503.
    api_broker_timeout_s: float = Field(default=5.0, gt=0, le=60)

    # --- Alerts (issue 15): services/alerts; README "Alerts", docs/operations.md "Alerts" ---
    alerts_metrics_port: int = 9106
    # The ROLLUPS stream (the aggregator's "these hours were rolled up"): a record, kept
    # (discard-old) this long and up to this size whether or not an alerts worker reads it.
    rollups_max_age_days: float = Field(default=2.0, gt=0)
    rollups_max_bytes: int = Field(default=128 * 1024**2, ge=STREAM_MIN_BYTES)
    alerts_batch_max_messages: int = Field(default=100, ge=1)
    alerts_ack_wait_s: float = Field(default=30.0, gt=0)
    alerts_max_deliver: int = Field(default=10, ge=2)
    # How often a worker re-reads the rules and devices (rules are edited through the API).
    alerts_rules_refresh_s: float = Field(default=30.0, gt=0)
    # A base-load night or a day is judged this long after it ended (its last hours' late
    # readings and every device's last recompute come in first), then again on each rollup.
    alerts_rollup_grace_s: float = Field(default=300.0, ge=0)
    # Live reading batches waiting for evaluation; beyond it they are dropped and counted.
    alerts_live_queue_size: int = Field(default=10_000, ge=1)
    # Rules the API accepts in all (each worker judges every one on every reading of its
    # devices): beyond it, creating one is refused with 409.
    alerts_rules_max: int = Field(default=1000, ge=1)
    # How often the silence timer looks at the devices' last readings (in memory, no query).
    alerts_silence_check_s: float = Field(default=10.0, gt=0)
    # The outbox: looked at when this worker wrote an event, and at least this often.
    alerts_outbox_poll_s: float = Field(default=5.0, gt=0)
    alerts_outbox_batch: int = Field(default=50, ge=1, le=1000)
    # A sender claims an event for this long; a copy that died holding it is taken over after.
    alerts_delivery_claim_s: float = Field(default=60.0, gt=0)
    alerts_delivery_timeout_s: float = Field(default=10.0, gt=0)
    alerts_delivery_backoff_base_s: float = Field(default=2.0, gt=0)
    alerts_delivery_backoff_cap_s: float = Field(default=600.0, gt=0)
    # Webhook (Standard Webhooks): the receiver's URL and the shared secret, "whsec_<base64>".
    alerts_webhook_url: str | None = None
    alerts_webhook_secret: SecretStr | None = None
    # E-mail over SMTP (aiosmtplib). tls: "starttls" (587), "tls" (implicit, 465) or "none".
    alerts_smtp_host: str | None = None
    alerts_smtp_port: int = Field(default=587, ge=1, le=65535)
    alerts_smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    alerts_smtp_user: str | None = None
    alerts_smtp_password: SecretStr | None = None
    alerts_email_from: str | None = None
    alerts_email_to: Annotated[tuple[str, ...], NoDecode] = ()

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
        # the engines of a running `powerflow up` (engines.json in the data folder).
        return (
            init_settings,
            SecretFileSource(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
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
