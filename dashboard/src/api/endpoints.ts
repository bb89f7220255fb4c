// The endpoints the dashboard uses, typed.

import { apiBlob, apiJson, apiPage, apiText, ApiError } from './client'
import type { Resolution } from '../lib/resolution'
import type {
  Admission,
  Baseline,
  BaselineFitRequest,
  SavingsResult,
  Alert,
  AlertState,
  Device,
  DeviceUpdate,
  EnrolmentCreated,
  EnrolmentRequest,
  CostSummary,
  ReadingPoint,
  ReadingsPage,
  Report,
  ReportFileKind,
  ReportRequest,
  RevocationResult,
  Role,
  Site,
  StatsSeries,
  Summary,
  Ticket,
} from './types'

/**
 * Every device: ``GET /devices`` is paged (limit/offset, at most api_list_page_max a page;
 * ``X-Total-Count`` says how many), so follow the pages. Bounded: a fleet that changes while
 * we page cannot keep us looping.
 */
export async function listDevices(signal?: AbortSignal, key?: string): Promise<Device[]> {
  const devices: Device[] = []
  for (let pages = 0; pages < MAX_DEVICE_PAGES; pages++) {
    const { items, total } = await apiPage<Device>('/devices', {
      query: { offset: devices.length },
      signal,
      ...(key === undefined ? {} : { key }),
    })
    devices.push(...items)
    // The last page: shorter than asked, or the total reached (or unknown: one page only).
    if (items.length === 0 || !(devices.length < total)) break
  }
  return devices
}

/** A million devices at the default page size; beyond it the list is cut, never endless. */
const MAX_DEVICE_PAGES = 1000

/** Whether a key may read (one device at most, not the fleet): signing in checks this. */
export const probeKey = (key: string) => apiJson<Device[]>('/devices', { query: { limit: 1 }, key })
export const getDevice = (code: string) => apiJson<Device>(`/devices/${encodeURIComponent(code)}`)
export const updateDevice = (code: string, update: DeviceUpdate) =>
  apiJson<Device>(`/devices/${encodeURIComponent(code)}`, { method: 'PATCH', body: update })
export const admitDevice = (code: string) =>
  apiJson<Admission>(`/devices/${encodeURIComponent(code)}/admission`, { method: 'POST' })
/** Enrol (admin): broker credentials of its own, in the answer only (shown once). */
export const enrolDevice = (code: string, request: EnrolmentRequest) =>
  apiJson<EnrolmentCreated>(`/devices/${encodeURIComponent(code)}/enrolment`, { method: 'POST', body: request })
/** Revoke (admin): the broker account goes, a connected device is disconnected at once. */
export const revokeEnrolment = (code: string) =>
  apiJson<RevocationResult>(`/devices/${encodeURIComponent(code)}/enrolment`, { method: 'DELETE' })
export const listSites = () => apiJson<Site[]>('/sites')

export const getSummary = (siteId: number | null) =>
  apiJson<Summary>('/stats/summary', { query: { site_id: siteId ?? undefined } })

export const getDeviceStats = (code: string, period: StatsSeries['period'], startIso: string, endIso: string) =>
  apiJson<StatsSeries>(`/stats/devices/${encodeURIComponent(code)}`, {
    query: { period, start: startIso, end: endIso },
  })

export const createTicket = () => apiJson<Ticket>('/live/ticket', { method: 'POST' })

/** Every page of a device's readings in [start, end), up to ``maxPoints``. */
export async function fetchReadings(
  code: string,
  startIso: string,
  endIso: string,
  resolution: Resolution,
  maxPoints = 20_000,
  signal?: AbortSignal,
): Promise<ReadingPoint[]> {
  const items: ReadingPoint[] = []
  let cursor: string | null = null
  do {
    const page: ReadingsPage = await apiJson<ReadingsPage>(`/devices/${encodeURIComponent(code)}/readings`, {
      query: { start: startIso, end: endIso, resolution, limit: 5000, cursor: cursor ?? undefined },
      signal,
    })
    items.push(...page.items)
    cursor = page.next_cursor
  } while (cursor && items.length < maxPoints)
  return items
}

/** The role of a key, from ``GET /api/v1/me``; a device key (ingest only) cannot sign in. */
export async function detectRole(key: string): Promise<{ role: Role; exact: boolean }> {
  const me = await apiJson<{ role?: string }>('/me', { key })
  if (me.role === 'viewer' || me.role === 'operator' || me.role === 'admin') return { role: me.role, exact: true }
  throw new ApiError(403, 'This key can only send readings (a device key); sign in with a viewer, operator or admin key.')
}

// Reports (docs/reports.md). An older server without them answers 404.

export async function listReports(): Promise<Report[]> {
  const answer = await apiJson<Report[] | { items?: Report[]; reports?: Report[] }>('/reports', { query: { limit: 50 } })
  if (Array.isArray(answer)) return answer
  return answer.items ?? answer.reports ?? []
}

export const getReport = (id: string) => apiJson<Report>(`/reports/${encodeURIComponent(id)}`)

export const requestReport = (request: ReportRequest) =>
  apiJson<Report | { id: string }>('/reports', { method: 'POST', body: request })

const reportFilePath = (id: string, kind: ReportFileKind) => `/reports/${encodeURIComponent(id)}/${kind}`

export const getReportHtml = (id: string) => apiText(reportFilePath(id, 'html'))
export const getReportPdf = (id: string) => apiBlob(reportFilePath(id, 'pdf'))

// --- Tariffs and cost ----------------------------------------------------------------------

/** Today's cost, this month's bill so far and the forecast; null when the site has no tariff. */
export async function getCostSummary(siteId: number): Promise<CostSummary | null> {
  try {
    return await apiJson<CostSummary>(`/cost/sites/${siteId}/summary`)
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null
    throw e
  }
}

// --- Baselines and savings ------------------------------------------------------------------
export const listBaselines = (siteId: number) => apiJson<Baseline[]>(`/sites/${siteId}/baselines`)
/** One baseline with its days (actual and predicted kWh, outdoor temperature). */
export const getBaseline = (id: number) => apiJson<Baseline>(`/baselines/${id}`)
/** Fit (operator): 422 with the reason when the data are insufficient or not outdoor. */
export const fitBaseline = (siteId: number, request: BaselineFitRequest) =>
  apiJson<Baseline>(`/sites/${siteId}/baselines`, { method: 'POST', body: request })
export const getSavings = (siteId: number, start: string, end: string, baselineId?: number) =>
  apiJson<SavingsResult>(`/sites/${siteId}/savings`, {
    query: { start, end, ...(baselineId === undefined ? {} : { baseline_id: baselineId }) },
  })

// Alerts (README "Alerts"). Newest first, a page at a time.

export const ALERTS_PAGE = 50

export const listAlerts = (state: AlertState, offset = 0) =>
  apiPage<Alert>('/alerts', { query: { state, limit: ALERTS_PAGE, offset } })

export const acknowledgeAlert = (id: number) =>
  apiJson<Alert>(`/alerts/${id}/acknowledge`, { method: 'POST' })

export const muteAlert = (id: number, until: string | null) =>
  apiJson<Alert>(`/alerts/${id}/mute`, { method: 'POST', body: { until } })
