// Alerts as the dashboard shows them: the API keeps their state (powerflow_common.alerts_store);
// these helpers only decide labels, who may act, and mute end times.

import type { Alert, Role } from '../api/types'

export type AlertStatus = 'open' | 'acknowledged' | 'muted' | 'cleared'

/** Operators and admins acknowledge and mute; viewers only read. */
export function canActOnAlerts(role: Role | null): boolean {
  return role === 'operator' || role === 'admin'
}

/** One status for the badge: cleared wins, then muted (until a future time), then acknowledged. */
export function alertStatus(alert: Pick<Alert, 'open' | 'acknowledged_at' | 'muted_until'>, nowMs: number): AlertStatus {
  if (!alert.open) return 'cleared'
  if (alert.muted_until !== null && Date.parse(alert.muted_until) > nowMs) return 'muted'
  if (alert.acknowledged_at !== null) return 'acknowledged'
  return 'open'
}

/** The mute choices offered, in hours (the API accepts at most 90 days). */
export const MUTE_HOURS = [1, 8, 24, 24 * 7] as const

/** The ISO instant ``hours`` after ``nowMs``. */
export function muteUntil(hours: number, nowMs: number): string {
  return new Date(nowMs + hours * 3_600_000).toISOString()
}

/** "device 12" / "site 3" from the API's subject ("device:12"). */
export function subjectParts(subject: string): { scope: string; id: string } {
  const [scope = '', id = ''] = subject.split(':', 2)
  return { scope, id }
}

/** The evidence as short "name: value" lines, numbers rounded, at most ``max`` of them. */
export function evidenceLines(evidence: Record<string, unknown>, max = 6): string[] {
  return Object.entries(evidence)
    .filter(([, value]) => value !== null && value !== undefined && typeof value !== 'object')
    .slice(0, max)
    .map(([key, value]) => `${key}: ${typeof value === 'number' ? Number(value.toFixed(3)) : String(value)}`)
}

/** Whether another page follows ``shown`` alerts of ``total`` (NaN total: one page only). */
export function hasMore(shown: number, total: number): boolean {
  return Number.isFinite(total) && shown < total
}
