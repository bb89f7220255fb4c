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

// Alerts (issue 15): GET /alerts, POST /alerts/{id}/acknowledge, POST /alerts/{id}/mute.
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
