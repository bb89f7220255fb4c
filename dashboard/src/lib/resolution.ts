// Which resolution to ask the API for, given a time range.

import { DAY_MS, HOUR_MS, MINUTE_MS } from './time'

export type Resolution = 'raw' | '1m' | '15m' | '1h' | '1d'
export type RangeKey = '1h' | '24h' | '7d' | '30d' | '1y' | 'custom'

export const RANGE_KEYS: readonly RangeKey[] = ['1h', '24h', '7d', '30d', '1y', 'custom']

export const RANGE_SPAN_MS: Record<Exclude<RangeKey, 'custom'>, number> = {
  '1h': HOUR_MS,
  '24h': DAY_MS,
  '7d': 7 * DAY_MS,
  '30d': 30 * DAY_MS,
  '1y': 365 * DAY_MS,
}

/** The API's limits (docs/api.md): raw up to 48 h, 1m/15m up to 7 days. */
export interface ResolutionLimits {
  rawMaxRangeMs: number
  minuteMaxRangeMs: number
  /** Devices report every 5 s by default. */
  rawIntervalMs: number
  /** The most points worth drawing on one chart. */
  maxPoints: number
}

export const DEFAULT_LIMITS: ResolutionLimits = {
  rawMaxRangeMs: 48 * HOUR_MS,
  minuteMaxRangeMs: 7 * DAY_MS,
  rawIntervalMs: 5_000,
  maxPoints: 1_500,
}

const STEP_MS: Record<Resolution, (limits: ResolutionLimits) => number> = {
  raw: (limits) => limits.rawIntervalMs,
  '1m': () => MINUTE_MS,
  '15m': () => 15 * MINUTE_MS,
  '1h': () => HOUR_MS,
  '1d': () => DAY_MS,
}

export function resolutionStepMs(resolution: Resolution, limits = DEFAULT_LIMITS): number {
  return STEP_MS[resolution](limits)
}

/** The finest resolution the API allows for the span that still fits ``maxPoints``. */
export function chooseResolution(spanMs: number, limits: ResolutionLimits = DEFAULT_LIMITS): Resolution {
  const candidates: Resolution[] = ['raw', '1m', '15m', '1h', '1d']
  for (const resolution of candidates) {
    if (resolution === 'raw' && spanMs > limits.rawMaxRangeMs) continue
    if ((resolution === '1m' || resolution === '15m') && spanMs > limits.minuteMaxRangeMs) continue
    if (spanMs / resolutionStepMs(resolution, limits) <= limits.maxPoints) return resolution
  }
  return '1d'
}

/** True when the resolution's buckets come from hourly statistics and carry energy_kwh. */
export function hasEnergy(resolution: Resolution): boolean {
  return resolution === '1h' || resolution === '1d'
}
