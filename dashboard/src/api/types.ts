// The API's bodies (services/api/src/powerflow_api/schemas.py, docs/api.md, docs/reports.md).

import type { Resolution } from '../lib/resolution'
import type { ReadingLike } from '../lib/series'

export type Role = 'viewer' | 'operator' | 'admin'
export type MeterRole = 'main' | 'sub' | 'standalone'

export interface Device {
  id: number
  code: string
  name: string | null
  site_id: number | null
  location: string | null
  meter_role: MeterRole
  payload_format: string
  bidirectional: boolean
  first_seen_at: string
  last_seen_at: string
  online: boolean
  power_w: number | null
  counted: boolean // adds to its site's total now (the API decides, powerflow_common.totals)
  /** null: waiting for admission (first seen on an open listener); counted in no total. */
  admitted_at?: string | null
  admitted_by?: string | null
  /** Broker credentials: its own account and topics, revoked, or never given (absent: older API). */
  enrolment?: EnrolmentState
  enrolled_at?: string | null
  revoked_at?: string | null
  /** May also publish on the shared power/measurement, which proves nothing about the sender. */
  legacy_topic?: boolean
}

export type EnrolmentState = 'enrolled' | 'revoked' | 'not_enrolled'

/** POST /devices/{code}/enrolment (admin): the formats it publishes, the first its own. */
export interface EnrolmentRequest {
  formats: string[]
  legacy: boolean
}

/** What to put on the device for one format (holds the password). */
export interface DeviceSetupText {
  format: string
  title: string
  text: string
}

/** The answer to an enrolment: `powerflow devices enroll --json`'s object, shown once. */
export interface EnrolmentCreated {
  code: string
  username: string
  password: string
  client_id: string
  topic: string
  topics: string[]
  formats: string[]
  legacy: boolean
  host: string
  port: number
  tls_port: number | null
  mqtt_uri: string
  created: boolean
  setup: DeviceSetupText[]
  warnings: string[]
}

/** DELETE /devices/{code}/enrolment (admin). */
export interface RevocationResult {
  code: string
  account_removed: boolean
  revoked_at: string | null
  device: Device | null
}

/** A device waiting for admission, as the overview summary lists it. */
export interface WaitingDevice {
  code: string
  site_id: number | null
  payload_format: string
  first_seen_at: string
  last_seen_at: string
  readings: number
  readings_capped: boolean
}

export interface Waiting {
  count: number
  devices: WaitingDevice[]
}

/** POST /devices/{code}/admission (admin). */
export interface Admission {
  device: Device
  newly_admitted: boolean
}

export interface DeviceUpdate {
  name?: string | null
  site_id?: number | null
  location?: string | null
  meter_role?: MeterRole
}

export interface Site {
  id: number
  name: string
  timezone: string
  region: string
  floor_area_m2: number | null
  created_at: string
}

export interface ReadingPoint extends ReadingLike {
  samples?: number
  energy_wh?: number
  voltage_v?: number
  current_a?: number
}

export interface ReadingsPage {
  device_code: string
  resolution: Resolution
  start: string
  end: string
  items: ReadingPoint[]
  next_cursor: string | null
}

export interface Factor {
  id: number
  factor_set: string
  region: string
  kg_co2e_per_kwh: number
  source: string
  method: string
}

export interface StatsBucket {
  start: string
  end: string
  hours: number
  energy_kwh: number
  export_kwh: number
  unallocated_kwh: number
  co2_location_kg: number
  co2_market_kg: number
  power_avg_w: number | null
  power_max_w: number | null
  temperature_avg_c: number | null
  humidity_avg_pct: number | null
  brightness_avg_lux: number | null
  coverage: number
}

export interface StatsSeries {
  scope: 'device' | 'site' | 'organisation'
  scope_ref: string | null
  period: 'hour' | 'day' | 'week' | 'month'
  timezone: string
  start: string
  end: string
  devices: string[]
  factors: Factor[]
  market_note: string
  totals: {
    energy_kwh: number
    export_kwh: number
    unallocated_kwh: number
    co2_location_kg: number
    co2_market_kg: number
    contracted_renewable_kwh: number
    power_max_w: number | null
  }
  buckets: StatsBucket[]
}

export interface PeriodFigures {
  start: string
  end: string
  energy_kwh: number
  co2_location_kg: number
  co2_market_kg: number // after each site's renewable contracts
}

export interface Comparison {
  current: PeriodFigures
  previous: PeriodFigures
  change_pct: number | null
}

export interface Summary {
  scope: 'site' | 'organisation'
  scope_ref: string | null
  timezone: string
  now_w: number
  devices_online: number
  devices_total: number
  today: Comparison
  this_month: Comparison
  factors: Factor[]
  waiting?: Waiting
}

export interface Ticket {
  ticket: string
  expires_in_s: number
  url: string
}

/** One validated canonical reading as the live socket sends it. */
export interface LiveReading {
  device_code: string
  ts: string
  power_w?: number | null
  energy_wh?: number | null
  temperature_c?: number | null
  humidity_pct?: number | null
  brightness_lux?: number | null
}

export type ReportStatus = 'queued' | 'running' | 'done' | 'failed'
export type ReportFileKind = 'html' | 'pdf' | 'markdown' | 'facts'

export interface Report {
  id: string
  status: ReportStatus
  created_at: string
  updated_at: string
  period_start: string
  period_end: string
  scope: 'organisation' | 'site' | 'devices'
  scope_ref: { timezone?: string; site_id?: number; device_ids?: number[] } | null
  language: 'en' | 'ko'
  model: string | null
  input_tokens: number | null
  output_tokens: number | null
  error: string | null
  files: ReportFileKind[]
}

export interface ReportRequest {
  period_start: string // local date, YYYY-MM-DD
  period_end: string // exclusive
  scope: 'organisation' | 'site'
  site_id?: number
  language: 'en' | 'ko'
}

/** RFC 9457 problem details. */
export interface Problem {
  title?: string
  status?: number
  detail?: string
  errors?: { key?: string; message?: string }[]
}

// --- Tariffs and cost (GET /cost/sites/{id}/summary) ---------------------------------------

/** Exact energy-related cost: kWh and money by time band, per-kWh add-ons, fund and VAT. */
export interface CostLines {
  kwh: number
  kwh_by_band: Record<string, number>
  energy_by_band: Record<string, number>
  energy: number
  addons: Record<string, number>
  subtotal: number
  fund: number
  vat: number
  total: number
}

export interface BilledDemand {
  kw: number
  basis: 'current_month' | 'ratchet' | 'contract_floor' | 'contract_power'
  floor_kw: number
  evidence_month: string | null
  evidence_kw: number | null
  evidence_quarter_start: string | null
  current_month_peak_kw: number | null
  current_month_peak_quarter_start: string | null
}

export interface Bill {
  site_id: number
  month: string
  start: string
  end: string
  complete: boolean
  currency: string
  tariff_name: string
  tariff_label: string
  tariff_valid_from: string
  tariff_source: string
  contract_power_kw: number
  demand: BilledDemand | null
  demand_charge: number
  energy: CostLines
  energy_charge: number
  addons: Record<string, number>
  fixed_charge: number
  electricity_charge: number
  fund: number
  vat: number
  total: number
  rounding: string
}

export interface CostForecast {
  bill: Bill
  method: string
  days_elapsed: number
  days_remaining: Record<string, number>
  projected_kwh: number
}

export interface CostSummary {
  site_id: number
  currency: string
  timezone: string
  today: CostLines
  month_so_far: Bill
  forecast: CostForecast
}

// --- Baselines and savings (controllers/baselines.py, savings_schemas.py) ---------------------

export type TemperatureSource = 'device' | 'weather'
export type ModelKind = 'mean' | '3p_heating' | '3p_cooling' | '4p' | '5p'

export interface Coefficient {
  name: string
  value: number
  std_error: number
  t_stat: number | null
}

export interface FitLimit {
  cv_rmse_max_pct: number
  nmbe_max_abs_pct: number
  basis: string
}

export interface FitStats {
  n_days: number
  n_params: number
  mean_kwh: number
  rmse_kwh: number
  cv_rmse_pct: number | null
  nmbe_pct: number | null
  r_squared: number
  autocorrelation_lag1: number
  monthly_n: number
  monthly_cv_rmse_pct: number | null
  monthly_nmbe_pct: number | null
  meets_daily_limits: boolean
  meets_monthly_limits: boolean | null
  meets_guideline_14: boolean
}

export interface FitDay {
  day: string
  temperature_c: number
  actual_kwh: number
  predicted_kwh: number
}

export interface Baseline {
  id: number
  site_id: number
  period_start: string
  period_end: string
  temperature_source: TemperatureSource
  model_kind: ModelKind
  intercept_kwh: number
  heating_slope_kwh_per_c: number
  cooling_slope_kwh_per_c: number
  heating_change_point_c: number | null
  cooling_change_point_c: number | null
  coefficients: Coefficient[]
  stats: FitStats
  limits: { daily: FitLimit; monthly: FitLimit }
  temperature_min_c: number
  temperature_max_c: number
  sufficiency: string
  fitted_at: string
  fitted_by: string | null
  fit_days?: FitDay[] | null
}

export interface BaselineFitRequest {
  start: string
  end: string
  temperature_source?: TemperatureSource | null
}

export interface SavingsDay {
  day: string
  temperature_c: number
  actual_kwh: number
  predicted_kwh: number
  savings_kwh: number
  cusum_kwh: number
  extrapolated: boolean
}

export interface SavingsResult {
  site_id: number
  baseline_id: number
  model_kind: ModelKind
  temperature_source: TemperatureSource
  start: string
  end: string
  confidence: number
  baseline_kwh: number
  actual_kwh: number
  savings_kwh: number
  savings_pct: number | null
  uncertainty_kwh: number | null
  uncertainty_pct: number | null
  fractional_uncertainty_pct: number | null
  fractional_uncertainty_68_pct: number | null
  meets_guideline_14_uncertainty: boolean
  n_baseline: number
  n_effective: number
  m_reporting: number
  t_value: number
  extrapolated_days: number
  days_missing: number
  overlaps_baseline: boolean
  days: SavingsDay[]
}

// Alerts: GET /alerts, POST /alerts/{id}/acknowledge, POST /alerts/{id}/mute.
export type AlertState = 'open' | 'cleared' | 'all'

export interface Alert {
  id: number
  rule_id: number
  rule_name: string
  kind: string
  subject: string // "device:<id>" or "site:<id>"
  open: boolean
  raised_at: string
  evidence: Record<string, unknown>
  cleared_at: string | null
  clear_evidence: Record<string, unknown> | null
  acknowledged_at: string | null
  acknowledged_by: string | null
  muted_until: string | null
}
