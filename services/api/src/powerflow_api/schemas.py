"""Request and response bodies (msgspec); every quantity names its unit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from powerflow_common.admission import WaitingDevice
from powerflow_common.bounds import MAX_ROW_ID, MIN_ROW_ID

MeterRole = Literal["main", "sub", "standalone"]
Resolution = Literal["raw", "1m", "15m", "1h", "1d"]
StatsPeriod = Literal["hour", "day", "week", "month"]
EnrolmentState = Literal["enrolled", "revoked", "not_enrolled"]

Name = Annotated[str, Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, Meta(max_length=128)]
Region = Annotated[str, Meta(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")]
Timezone = Annotated[str, Meta(min_length=1, max_length=64)]
FloorArea = Annotated[float, Meta(gt=0, le=1e9)]
RowId = Annotated[int, Meta(ge=MIN_ROW_ID, le=MAX_ROW_ID)]


class Problem(Struct, omit_defaults=True):
    """RFC 9457 problem details (served as application/problem+json)."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


class Device(Struct):
    """A device, how recently it reported and what it draws now."""

    id: int
    code: str
    name: str | None
    site_id: int | None
    location: str | None
    meter_role: MeterRole
    payload_format: str
    bidirectional: bool
    first_seen_at: datetime
    last_seen_at: datetime
    online: bool
    power_w: float | None  # from the latest reading
    # Adds to its site's (or the unassigned devices') total now: powerflow_common.totals.
    counted: bool = False
    # None: waiting for admission (first seen on an open listener or over HTTP): its
    # readings are kept but change no total until an admin admits it.
    admitted_at: datetime | None = None
    admitted_by: str | None = None
    # Broker credentials (docs/devices.md): "enrolled" (it has its own account and topics),
    # "revoked" (its account was removed; its readings stay), "not_enrolled" (never had one).
    enrolment: EnrolmentState = "not_enrolled"
    enrolled_at: datetime | None = None
    revoked_at: datetime | None = None
    legacy_topic: bool = False  # may also publish on the shared, unprovable power/measurement


class DeviceUpdate(Struct, forbid_unknown_fields=True):
    """Fields to change; an absent field stays as it is, null clears it."""

    name: Name | UnsetType | None = UNSET
    site_id: RowId | UnsetType | None = UNSET
    location: ShortText | UnsetType | None = UNSET
    meter_role: MeterRole | UnsetType = UNSET
    # A site or role change counts from now on; an operator may date it back (a restatement:
    # later recorded changes are replaced). Never in the future.
    effective_from: datetime | UnsetType = UNSET


class Admission(Struct):
    """What POST /devices/{code}/admission did: the device, and whether it was waiting."""

    device: Device
    newly_admitted: bool


FormatName = Annotated[str, Meta(min_length=1, max_length=32)]
# More than every format powerflow knows; the names themselves are checked against them.
MAX_ENROLMENT_FORMATS = 8


class EnrolmentRequest(Struct, forbid_unknown_fields=True):
    """What to enrol a device for: the payload formats it publishes (the first is its own)
    and whether it may also use the shared legacy topic (unprovable: docs/devices.md)."""

    formats: Annotated[list[FormatName], Meta(min_length=1, max_length=MAX_ENROLMENT_FORMATS)] = (
        msgspec.field(default_factory=lambda: ["original"])
    )
    legacy: bool = False


class DeviceSetupText(Struct):
    """What to put on the device for one of its formats (it holds the password)."""

    format: str
    title: str
    text: str


class EnrolmentCreated(Struct):
    """``powerflow devices enroll --json``'s object, plus the setup texts. Shown once: the
    password is stored only by the broker, hashed, and nowhere else."""

    code: str
    username: str
    password: str
    client_id: str
    topic: str
    topics: list[str]
    formats: list[str]
    legacy: bool
    host: str
    port: int
    tls_port: int | None
    mqtt_uri: str
    created: bool  # a new device (else enrolled again: the old password stopped working)
    setup: list[DeviceSetupText]
    warnings: list[str]


class RevocationResult(Struct):
    """What DELETE /devices/{code}/enrolment did; the device as it is now (None: none)."""

    code: str
    account_removed: bool  # False: it had no broker account (revoked before, or never)
    revoked_at: datetime | None
    device: Device | None


class Site(Struct):
    id: int
    name: str
    timezone: str
    region: str
    floor_area_m2: float | None
    created_at: datetime


class SiteCreate(Struct, forbid_unknown_fields=True):
    """A new site; the timezone must be an IANA zone with whole-hour offsets."""

    name: Name
    timezone: Timezone = "Asia/Seoul"
    region: Region = "KR"
    floor_area_m2: FloorArea | None = None


class SiteUpdate(Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    timezone: Timezone | UnsetType = UNSET
    region: Region | UnsetType = UNSET
    floor_area_m2: FloorArea | UnsetType | None = UNSET


class ReadingPoint(Struct, omit_defaults=True):
    """A raw reading (``power_w`` ...) or a bucket (``samples``, ``power_avg_w`` ...) at ``ts``."""

    ts: datetime
    power_w: float | None = None
    energy_wh: float | None = None
    energy_export_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    brightness_lux: float | None = None
    samples: int | None = None
    power_avg_w: float | None = None
    power_min_w: float | None = None
    power_max_w: float | None = None
    temperature_avg_c: float | None = None
    humidity_avg_pct: float | None = None
    brightness_avg_lux: float | None = None
    energy_kwh: float | None = None


class ReadingsPage(Struct):
    device_code: str
    resolution: Resolution
    start: datetime
    end: datetime
    items: list[ReadingPoint]
    next_cursor: str | None


class LatestReading(Struct):
    device_code: str
    online: bool
    reading: ReadingPoint | None


class Factor(Struct):
    """The emission factor a CO2 figure used, and where it comes from."""

    id: int
    factor_set: str
    region: str
    kg_co2e_per_kwh: float
    source: str
    method: str


class StatsBucket(Struct):
    """One hour/day/week/month, cut in the scope's timezone."""

    start: datetime  # local time with its UTC offset
    end: datetime
    hours: int  # hourly buckets with data
    energy_kwh: float
    export_kwh: float
    unallocated_kwh: float
    co2_location_kg: float
    co2_market_kg: float
    power_avg_w: float | None
    power_max_w: float | None
    temperature_avg_c: float | None
    humidity_avg_pct: float | None
    brightness_avg_lux: float | None
    coverage: float  # mean coverage of the hours with data, 0..1


class StatsTotals(Struct):
    energy_kwh: float
    export_kwh: float
    unallocated_kwh: float
    co2_location_kg: float
    co2_market_kg: float
    contracted_renewable_kwh: float
    power_max_w: float | None


class StatsSeries(Struct):
    scope: Literal["device", "site", "organisation"]
    scope_ref: str | None
    period: StatsPeriod
    timezone: str
    start: datetime
    end: datetime
    devices: list[str]  # the device codes counted (main meters, never sub-meters on top)
    factors: list[Factor]
    market_note: str
    totals: StatsTotals
    buckets: list[StatsBucket]


class PeriodFigures(Struct):
    start: datetime
    end: datetime
    energy_kwh: float  # allocated to hours, as the statistics' energy_kwh
    co2_location_kg: float
    co2_market_kg: float  # after each site's renewable contracts (see docs/energy.md)


class Comparison(Struct):
    current: PeriodFigures
    previous: PeriodFigures  # the same elapsed span of the previous period
    change_pct: float | None  # energy versus the previous span; None when it was 0


class Waiting(Struct):
    """Devices waiting for admission: how many, and the most recently seen of them."""

    count: int
    devices: list[WaitingDevice]


class Summary(Struct):
    scope: Literal["site", "organisation"]
    scope_ref: str | None
    timezone: str
    now_w: float  # sum of the counted devices' latest power, online devices only
    devices_online: int  # admitted devices only; waiting ones are in ``waiting``
    devices_total: int
    today: Comparison
    this_month: Comparison
    factors: list[Factor]
    waiting: Waiting = msgspec.field(default_factory=lambda: Waiting(0, []))


class Ticket(Struct):
    ticket: str
    expires_in_s: int
    url: str


class Health(Struct):
    status: str


class Readiness(Struct):
    status: Literal["ready", "degraded", "unavailable"]
    database: bool
    nats: bool
    redis: bool
    detail: dict[str, str]


encoder = msgspec.json.Encoder()


CorrectionReason = Annotated[str, Meta(min_length=1, max_length=255)]


class CorrectionCreate(Struct, forbid_unknown_fields=True):
    """New values for measurement columns of one stored reading, and why (operator)."""

    values: dict[str, float | None]  # e.g. {"power_w": 1600.0}; null is refused
    reason: CorrectionReason


class Correction(Struct):
    """One audit row: one column of one reading, changed by someone, for a reason."""

    id: int
    device_code: str
    ts: datetime  # the reading's timestamp, UTC
    column: str
    old_value: float | None  # null: the column was empty
    new_value: float
    reason: str
    corrected_by: str  # the API key's name, or the person named on the command line
    corrected_at: datetime
    totals_republished_at: datetime | None  # null: the hours' totals may still be stale


class CorrectionResult(Struct):
    """What a correction changed, which hours it recomputes and whether that was announced."""

    device_code: str
    ts: datetime
    changed: list[Correction]
    unchanged: list[str]  # columns that already held the asked value
    hours: list[datetime]  # UTC hours whose totals are recomputed
    totals_republished: bool
    detail: str


class CorrectionsPage(Struct):
    """A device's corrections, newest first; pass next_before_id as before_id for more."""

    device_code: str
    items: list[Correction]
    next_before_id: int | None


# --- Tariffs and cost (powerflow_common.tariffs, powerflow_common.costs) ------------------------

TariffName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
SourceText = Annotated[str, Meta(min_length=1, max_length=512)]
ContractPower = Annotated[float, Meta(ge=0, le=10_000_000)]
ComponentKindName = Literal["per_kwh", "percent_of_bill", "vat"]


class TariffVersion(Struct):
    """One version of a named tariff, valid for local days [valid_from, valid_to)."""

    id: int
    name: str
    label: str
    valid_from: date
    valid_to: date | None
    currency: str
    source: str
    definition: dict[str, Any]  # powerflow_common.tariffs.TariffDefinition


class TariffCreate(Struct, forbid_unknown_fields=True):
    """A new version of a tariff (a new name starts a new tariff)."""

    name: TariffName
    label: Name
    valid_from: date
    source: SourceText  # where the figures come from, and their date
    definition: dict[str, Any]
    valid_to: date | None = None


class TariffComponentOut(Struct):
    id: int
    component_set: str
    name: str
    kind: ComponentKindName
    rate: float  # per kWh, or percent
    valid_from: date
    valid_to: date | None
    source: str


class TariffComponentCreate(Struct, forbid_unknown_fields=True):
    component_set: Annotated[str, Meta(min_length=1, max_length=32)]
    name: TariffName
    kind: ComponentKindName
    rate: Annotated[float, Meta(ge=-1e6, le=1e6)]
    valid_from: date
    source: SourceText
    valid_to: date | None = None


class SiteTariffAssign(Struct, forbid_unknown_fields=True):
    """Put a site on a tariff from the first day of a local month on."""

    tariff_name: TariffName
    contract_power_kw: ContractPower
    valid_from: date


class SiteTariffOut(Struct):
    site_id: int
    tariff_name: str
    contract_power_kw: float
    valid_from: date
    recorded_at: datetime
    recorded_by: str | None


class CostLines(Struct):
    """Exact energy-related cost: kWh and money by time band, per-kWh add-ons, fund and VAT."""

    kwh: float
    kwh_by_band: dict[str, float]
    energy_by_band: dict[str, float]
    energy: float
    addons: dict[str, float]
    subtotal: float  # energy + add-ons
    fund: float
    vat: float
    total: float


class CostBucketOut(Struct):
    start: datetime
    end: datetime
    energy_kwh: float  # the statistics' energy_kwh + unallocated_kwh of the bucket
    cost: CostLines | None  # null: no tariff for these hours


class CostSeries(Struct):
    site_id: int
    period: StatsPeriod
    timezone: str
    currency: str | None
    start: datetime
    end: datetime
    uncosted_kwh: float  # kWh of hours before the site's first tariff
    totals: CostLines | None
    buckets: list[CostBucketOut]
    note: str


class BilledDemandOut(Struct):
    kw: float
    basis: Literal["current_month", "ratchet", "contract_floor", "contract_power"]
    floor_kw: float
    evidence_month: str | None  # "YYYY-MM" of the peak that set it
    evidence_kw: float | None
    evidence_quarter_start: datetime | None  # the 15-minute interval that set it (UTC)
    current_month_peak_kw: float | None
    current_month_peak_quarter_start: datetime | None


class BillOut(Struct):
    site_id: int
    month: str
    start: datetime
    end: datetime  # the month's end, or the instant the bill so far runs to
    complete: bool
    currency: str
    tariff_name: str
    tariff_label: str
    tariff_valid_from: date
    tariff_source: str
    contract_power_kw: float
    demand: BilledDemandOut | None
    demand_charge: float
    energy: CostLines
    energy_charge: float
    addons: dict[str, float]
    fixed_charge: float
    electricity_charge: float
    fund: float
    vat: float
    total: float
    rounding: str


class ForecastOut(Struct):
    bill: BillOut  # the month's projected bill
    method: str
    days_elapsed: int
    days_remaining: dict[str, int]
    projected_kwh: float


class CostSummary(Struct):
    """The overview's money: today's cost, this month's bill so far, the month-end forecast."""

    site_id: int
    currency: str
    timezone: str
    today: CostLines
    month_so_far: BillOut
    forecast: ForecastOut


# --- Alerts ---------------------------------------------------------------------

AlertRuleKind = Literal[
    "silence", "power_above", "power_below", "base_load_jump", "daily_kwh_above", "daily_kwh_below"
]
AlertScope = Literal["device", "site"]
AlertParams = Annotated[dict[str, float | int], Meta(max_length=8)]


class AlertRule(Struct):
    id: int
    name: str
    kind: str
    scope: str
    device_id: int | None
    site_id: int | None
    params: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    created_by: str | None


class AlertRuleCreate(Struct, forbid_unknown_fields=True):
    """A rule: its kind's parameters (README "Alerts"), on one device or one site."""

    name: Name
    kind: AlertRuleKind
    scope: AlertScope
    params: AlertParams
    device_id: RowId | None = None
    site_id: RowId | None = None
    enabled: bool = True


class AlertRuleUpdate(Struct, forbid_unknown_fields=True):
    name: Name | None = None
    params: AlertParams | None = None
    enabled: bool | None = None


class Alert(Struct):
    id: int
    rule_id: int
    rule_name: str
    kind: str
    subject: str  # "device:<id>" or "site:<id>"
    open: bool
    raised_at: datetime
    evidence: dict[str, Any]
    cleared_at: datetime | None
    clear_evidence: dict[str, Any] | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    muted_until: datetime | None


class AlertMute(Struct, forbid_unknown_fields=True):
    """Mute until this instant (at most 90 days ahead); null unmutes."""

    until: datetime | None
