"""SQLAlchemy 2 typed models; column names carry their units (SQL users rely on them)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime

DEVICE_CODE_COLLATION = "utf8mb4_bin"
# A 64-bit generated id: SQLite numbers only an ``INTEGER PRIMARY KEY`` (64-bit already) itself.
BIGINT_ID = BigInteger().with_variant(Integer(), "sqlite")
DEVICE_CODE_LENGTH = 64


def device_code_type() -> String:
    """Device codes compare exactly: utf8mb4_bin on MySQL, SQLite's default BINARY elsewhere
    (SQLite knows no MySQL collation name)."""
    return String(DEVICE_CODE_LENGTH).with_variant(
        String(DEVICE_CODE_LENGTH, collation=DEVICE_CODE_COLLATION), "mysql", "mariadb"
    )


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC ``DATETIME(3)`` in the database."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=3))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every powerflow table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        float: Float(precision=53),
    }


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    region: Mapped[str] = mapped_column(String(16), default="KR")
    floor_area_m2: Mapped[float | None]
    created_at: Mapped[datetime]


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Compared exactly, whatever the database's default collation (migration 0003); MAC-like
    # codes are stored in their canonical form (validation.canonical_device_code).
    code: Mapped[str] = mapped_column(device_code_type(), unique=True)
    name: Mapped[str | None] = mapped_column(String(128))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    location: Mapped[str | None] = mapped_column(String(128))
    payload_format: Mapped[str] = mapped_column(String(32), default="original")
    meter_role: Mapped[str] = mapped_column(String(16), default="standalone")
    bidirectional: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    # Counted towards totals and reports only once admitted (migration 0006); a device first
    # seen on an open listener waits, its readings kept, until an operator admits it.
    admitted_at: Mapped[datetime | None]
    admitted_by: Mapped[str | None] = mapped_column(String(128))
    # Broker credentials (username and client id ``device-<code>``) given and taken back.
    enrolled_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # May publish on the prototype's shared topic, where the payload alone names the device.
    legacy_topic: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class DeviceSite(Base):
    """Where a device sat from ``valid_from`` on: each hour belongs to the placement of its start.

    ``devices.site_id`` and ``devices.meter_role`` stay the current placement (the latest row).
    """

    __tablename__ = "device_sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("sites.id", ondelete="SET NULL"), index=True
    )
    meter_role: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[datetime]
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (UniqueConstraint("device_id", "valid_from", name="uq_device_site_from"),)


class ReadingRow(Base):
    """The original ``power_readings``; no foreign key so that it can be partitioned by month."""

    __tablename__ = "readings"

    device_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    power_w: Mapped[float | None]
    energy_wh: Mapped[float | None]
    energy_export_wh: Mapped[float | None]
    voltage_v: Mapped[float | None]
    current_a: Mapped[float | None]
    temperature_c: Mapped[float | None]
    humidity_pct: Mapped[float | None]
    brightness_lux: Mapped[float | None]
    seq: Mapped[int | None] = mapped_column(BigInteger)
    firmware: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]


class _PeriodStatColumns:
    """The columns an hour and a quarter hour both carry (hourly_stats, quarter_hour_stats).

    One list so that the two tables cannot drift apart: the aggregator writes both from one
    computation and the totals read either. Declarative places a mixin's columns after the
    table's own keys, which is the column order migrations 0001 and 0009 created.
    """

    samples: Mapped[int] = mapped_column(Integer, default=0)
    coverage: Mapped[float] = mapped_column(default=0.0)
    energy_kwh: Mapped[float] = mapped_column(default=0.0)
    export_kwh: Mapped[float] = mapped_column(default=0.0)
    unallocated_kwh: Mapped[float] = mapped_column(default=0.0)
    unallocated_export_kwh: Mapped[float] = mapped_column(default=0.0)
    power_avg_w: Mapped[float | None]
    power_min_w: Mapped[float | None]
    power_max_w: Mapped[float | None]
    temperature_avg_c: Mapped[float | None]
    humidity_avg_pct: Mapped[float | None]
    brightness_avg_lux: Mapped[float | None]
    co2_kg: Mapped[float] = mapped_column(default=0.0)
    emission_factor_id: Mapped[int | None] = mapped_column(ForeignKey("emission_factors.id"))
    factor_set: Mapped[str | None] = mapped_column(String(32))
    energy_source: Mapped[str | None] = mapped_column(String(16))
    flags: Mapped[str | None] = mapped_column(String(255))
    computed_at: Mapped[datetime]


class HourlyStat(_PeriodStatColumns, Base):
    __tablename__ = "hourly_stats"

    device_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hour_start: Mapped[datetime] = mapped_column(primary_key=True)

    __table_args__ = (Index("ix_hourly_stats_hour_start", "hour_start"),)


class QuarterHourStat(_PeriodStatColumns, Base):
    """hourly_stats by the quarter hour, kept by the aggregator with the hour (same rules).

    ``hour_start`` is the hour the quarter belongs to: totals place a quarter where they
    place its hour (powerflow_common.totals), and an hour's recompute replaces its quarters.
    """

    __tablename__ = "quarter_hour_stats"

    device_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    quarter_start: Mapped[datetime] = mapped_column(primary_key=True)
    hour_start: Mapped[datetime]


class DailySiteStat(Base):
    """One site's local day as the totals sum it from hourly_stats (a cache; daily_site.py).

    Sums, not averages, so weeks and months add up from days: ``*_x_samples`` and
    ``*_samples`` are the environment averages' numerator and weight.
    """

    __tablename__ = "daily_site_stats"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # in the site's timezone
    day_start: Mapped[datetime]  # UTC instant of the local midnight
    day_end: Mapped[datetime]
    hours: Mapped[int] = mapped_column(Integer, default=0)
    device_hours: Mapped[int] = mapped_column(Integer, default=0)
    energy_kwh: Mapped[float] = mapped_column(default=0.0)
    export_kwh: Mapped[float] = mapped_column(default=0.0)
    unallocated_kwh: Mapped[float] = mapped_column(default=0.0)
    co2_kg: Mapped[float] = mapped_column(default=0.0)
    coverage_sum: Mapped[float] = mapped_column(default=0.0)
    demand_sum_w: Mapped[float] = mapped_column(default=0.0)
    demand_hours: Mapped[int] = mapped_column(Integer, default=0)
    demand_max_w: Mapped[float | None]
    sample_max_w: Mapped[float | None]
    temperature_c_x_samples: Mapped[float] = mapped_column(default=0.0)
    temperature_samples: Mapped[float] = mapped_column(default=0.0)
    humidity_pct_x_samples: Mapped[float] = mapped_column(default=0.0)
    humidity_samples: Mapped[float] = mapped_column(default=0.0)
    brightness_lux_x_samples: Mapped[float] = mapped_column(default=0.0)
    brightness_samples: Mapped[float] = mapped_column(default=0.0)
    emission_factor_ids: Mapped[str | None] = mapped_column(String(255))  # "3,7"
    computed_at: Mapped[datetime]


class DailySiteState(Base):
    """Whether a site's daily_site_stats may be served: built for these totals' inputs.

    ``fingerprint`` hashes what the days depend on besides hourly_stats (the site's device
    spans: roles, membership, admission; its timezone). No row, or another fingerprint than
    the inputs have now: the days are not served and are rebuilt.
    """

    __tablename__ = "daily_site_state"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    built_at: Mapped[datetime]


class EmissionFactorRow(Base):
    __tablename__ = "emission_factors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    factor_set: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    kg_co2e_per_kwh: Mapped[float]
    source: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(16), default="location")

    __table_args__ = (
        UniqueConstraint("factor_set", "region", "method", "valid_from", name="uq_factor_period"),
    )


class RenewableContract(Base):
    __tablename__ = "renewable_contracts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    energy_kwh: Mapped[float]
    instrument: Mapped[str] = mapped_column(String(32))  # REC, PPA, green_tariff
    note: Mapped[str | None] = mapped_column(String(255))


class EsgReport(Base):
    __tablename__ = "esg_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), index=True)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    scope: Mapped[str] = mapped_column(String(16))
    scope_ref: Mapped[Any | None] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(8))
    model: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    grounding: Mapped[Any | None] = mapped_column(JSON)
    facts: Mapped[Any | None] = mapped_column(JSON)
    html_path: Mapped[str | None] = mapped_column(String(512))
    pdf_path: Mapped[str | None] = mapped_column(String(512))
    markdown_path: Mapped[str | None] = mapped_column(String(512))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiKeyDevice(Base):
    """A device a ``device`` key may post readings for (migration 0007).

    The code, not the device row: a key may be made for a device before its first reading
    creates the row. Codes are canonical (validation.canonical_device_code) and compare exactly.
    """

    __tablename__ = "api_key_devices"

    key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    device_code: Mapped[str] = mapped_column(device_code_type(), primary_key=True)


class ReadingCorrection(Base):
    """One operator correction of one stored measurement: who, when, why and the old value.

    ``old_value`` is NULL when the column was empty; ``totals_republished_at`` is NULL until
    the touched hours' recompute was acknowledged by JetStream (until then totals are stale).
    """

    __tablename__ = "reading_corrections"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"))
    ts: Mapped[datetime]
    column_name: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[float | None]
    new_value: Mapped[float]
    reason: Mapped[str] = mapped_column(String(255))
    corrected_by: Mapped[str] = mapped_column(String(128))
    corrected_at: Mapped[datetime]
    totals_republished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_reading_corrections_device_corrected", "device_id", "corrected_at"),
        Index("ix_reading_corrections_device_ts", "device_id", "ts"),
    )


class RetentionState(Base):
    """The raw horizon (migration 0008): one row, ``id`` 1.

    Buckets starting before ``raw_horizon`` are frozen (powerflow_common.retention): their raw
    readings may be gone, so their stats are never recomputed from raw nor deleted. NULL: no
    retention has run, nothing is frozen. Only the retention job moves it, and only forward.
    """

    __tablename__ = "retention_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    raw_horizon: Mapped[datetime | None]
    updated_at: Mapped[datetime]


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


# Core tables, for SQL that is clearer without the ORM (bulk upserts, aggregates).
SITES = _table(Site)
DEVICES = _table(Device)
DEVICE_SITES = _table(DeviceSite)
READINGS = _table(ReadingRow)
HOURLY_STATS = _table(HourlyStat)
QUARTER_HOUR_STATS = _table(QuarterHourStat)
DAILY_SITE_STATS = _table(DailySiteStat)
DAILY_SITE_STATE = _table(DailySiteState)
EMISSION_FACTORS = _table(EmissionFactorRow)
RENEWABLE_CONTRACTS = _table(RenewableContract)
ESG_REPORTS = _table(EsgReport)
API_KEYS = _table(ApiKey)
API_KEY_DEVICES = _table(ApiKeyDevice)
READING_CORRECTIONS = _table(ReadingCorrection)
RETENTION_STATE = _table(RetentionState)


# --- Tariffs and cost (migration 0010, powerflow_common.tariffs) --------------------------------


class TariffRow(Base):
    """One version of a named tariff, valid for local days [valid_from, valid_to).

    ``definition`` is a ``powerflow_common.tariffs.TariffDefinition`` as JSON.
    """

    __tablename__ = "tariffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(128))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    definition: Mapped[Any] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("name", "valid_from", name="uq_tariff_version"),)


class TariffComponentRow(Base):
    """A versioned add-on of a component set (per kWh, percent of the bill, or VAT)."""

    __tablename__ = "tariff_components"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    component_set: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    rate: Mapped[float]
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(512))

    __table_args__ = (
        UniqueConstraint("component_set", "name", "valid_from", name="uq_component_version"),
    )


class SiteTariff(Base):
    """A site's tariff and contract power from the local month starting ``valid_from`` on."""

    __tablename__ = "site_tariffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    tariff_name: Mapped[str] = mapped_column(String(64))
    contract_power_kw: Mapped[float]
    valid_from: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (UniqueConstraint("site_id", "valid_from", name="uq_site_tariff_from"),)


TARIFFS = _table(TariffRow)
TARIFF_COMPONENTS = _table(TariffComponentRow)
SITE_TARIFFS = _table(SiteTariff)
# --- Baselines and savings (migration 0012) ----------------------------------------


class OutdoorSensor(Base):
    """A device whose temperature readings are its site's outdoor series (baselines.py).

    A mark of its own, not a meter role: the role says how a device's energy counts, and an
    outdoor node may meter something too (outdoor lighting) while its sensor is outdoors.
    """

    __tablename__ = "outdoor_sensors"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    marked_at: Mapped[datetime]
    marked_by: Mapped[str | None] = mapped_column(String(128))


class OutdoorTemperatureDay(Base):
    """An imported daily mean outdoor temperature of a site (a weather station's CSV)."""

    __tablename__ = "outdoor_temperature_days"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # in the site's timezone
    temperature_mean_c: Mapped[float]
    source: Mapped[str] = mapped_column(String(64))  # "kma-asos:108"
    imported_at: Mapped[datetime]


class Baseline(Base):
    """A fitted daily baseline model of a site, fixed so that savings reports cite it."""

    __tablename__ = "baselines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    period_start: Mapped[date] = mapped_column(Date)  # local days, inclusive
    period_end: Mapped[date] = mapped_column(Date)
    temperature_source: Mapped[str] = mapped_column(String(16))  # device or weather
    model_kind: Mapped[str] = mapped_column(String(16))
    coefficients: Mapped[Any] = mapped_column(JSON)
    stats: Mapped[Any] = mapped_column(JSON)
    fitted_at: Mapped[datetime]
    fitted_by: Mapped[str | None] = mapped_column(String(128))


OUTDOOR_SENSORS = _table(OutdoorSensor)
OUTDOOR_TEMPERATURE_DAYS = _table(OutdoorTemperatureDay)
BASELINES = _table(Baseline)
# --- Alerts (migration 0011; powerflow_common.alert_rules, services/alerts) --------


class AlertRule(Base):
    """One alert rule: a kind (alert_rules.KINDS), a scope (a device or a site), parameters.

    Deleting a rule deletes its alerts and their undelivered events; disable it to keep them.
    """

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(8))  # "device" or "site"
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(128))


class Alert(Base):
    """An alert of one rule on one subject (``device:<id>``, ``site:<id>``), open until cleared.

    ``open_subject`` is the subject while the alert is open and NULL once cleared: the unique
    key (rule_id, open_subject) lets one open alert per rule and subject exist, so two worker
    copies (or a restarted one) that both see the condition insert once; NULLs never collide.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))
    open_subject: Mapped[str | None] = mapped_column(String(64))
    raised_at: Mapped[datetime]
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    cleared_at: Mapped[datetime | None]
    clear_evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    muted_until: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("rule_id", "open_subject", name="uq_alerts_open"),
        Index("ix_alerts_raised", "raised_at"),
        Index("ix_alerts_rule_subject", "rule_id", "subject"),
    )


class AlertEvent(Base):
    """The outbox: one notification (raised or cleared) of one alert for one channel.

    Written in the transaction that raises or clears the alert, so a restart never loses an
    undelivered event; ``event_id`` is the same for every attempt (receivers deduplicate on
    it). ``next_attempt_at`` is also the claim: a sender moves it ahead before sending.
    """

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # "webhook" or "email"
    alert_id: Mapped[int] = mapped_column(
        BIGINT_ID, ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    transition: Mapped[str] = mapped_column(String(16))  # "raised" or "cleared"
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        UniqueConstraint("event_id", "channel", name="uq_alert_events_event_channel"),
        Index("ix_alert_events_due", "delivered_at", "next_attempt_at"),
    )


ALERT_RULES = _table(AlertRule)
ALERTS = _table(Alert)
ALERT_EVENTS = _table(AlertEvent)
