// Baselines and savings shaped for the charts (powerflow_common.baselines computes them).

import type { Baseline, FitDay, SavingsDay } from '../api/types'
import type { Point } from './series'
import { localDateStartMs } from './time'

/** The model's daily kWh at an outdoor temperature (the API's change-point formula). */
export function predictKwh(b: Baseline, temperatureC: number): number {
  let kwh = b.intercept_kwh
  if (b.heating_change_point_c !== null) kwh += b.heating_slope_kwh_per_c * Math.max(b.heating_change_point_c - temperatureC, 0)
  if (b.cooling_change_point_c !== null) kwh += b.cooling_slope_kwh_per_c * Math.max(temperatureC - b.cooling_change_point_c, 0)
  return kwh
}

/**
 * The fitted line over [fromC, toC]: its ends and its change points between them (the model
 * is straight in between), sorted by temperature.
 */
export function fittedLine(b: Baseline, fromC: number, toC: number): { x: number; y: number }[] {
  const xs = [fromC, toC, b.heating_change_point_c, b.cooling_change_point_c]
    .filter((x): x is number => x !== null && x >= fromC && x <= toC)
  return [...new Set(xs)].sort((a, c) => a - c).map((x) => ({ x, y: predictKwh(b, x) }))
}

export type Verdict = 'pass' | 'fail' | 'unknown'

/** Whether a figure (CV(RMSE) or NMBE, in %) lies within a Guideline 14 limit (absolute). */
export function withinLimit(valuePct: number | null | undefined, maxAbsPct: number): Verdict {
  if (valuePct === null || valuePct === undefined || !Number.isFinite(valuePct)) return 'unknown'
  return Math.abs(valuePct) <= maxAbsPct ? 'pass' : 'fail'
}

/** Days as chart points at their local midnight; days that do not parse are left out. */
export function dayPoints<T extends { day: string }>(days: readonly T[], value: (d: T) => number, timeZone: string): Point[] {
  return days
    .map((d) => ({ xMs: localDateStartMs(d.day, timeZone), y: value(d) }))
    .filter((p) => Number.isFinite(p.xMs) && Number.isFinite(p.y))
}

export const actualPoints = (days: readonly (FitDay | SavingsDay)[], tz: string) => dayPoints(days, (d) => d.actual_kwh, tz)
export const predictedPoints = (days: readonly (FitDay | SavingsDay)[], tz: string) => dayPoints(days, (d) => d.predicted_kwh, tz)
export const cusumPoints = (days: readonly SavingsDay[], tz: string) => dayPoints(days, (d) => d.cusum_kwh, tz)

/** kWh against outdoor °C, for the scatter chart. */
export function kwhTemperaturePairs(days: readonly FitDay[]): { x: number; y: number }[] {
  return days.map((d) => ({ x: d.temperature_c, y: d.actual_kwh }))
}

/** The day after a local date (``YYYY-MM-DD``), for a reporting period after the baseline. */
export function nextDayIso(isoDate: string): string {
  const [y, m, d] = isoDate.split('-').map(Number)
  const next = new Date(Date.UTC(y ?? 1970, (m ?? 1) - 1, (d ?? 1) + 1))
  return next.toISOString().slice(0, 10)
}
