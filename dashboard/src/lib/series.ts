// Shaping API answers into what the charts and tiles draw.

import { changePct } from './format'
import { addLocalDaysMs, startOfLocalDayMs } from './time'

export interface Point {
  xMs: number
  y: number
}

/** The fields a reading point may carry: raw readings or buckets (docs/api.md). */
export interface ReadingLike {
  ts: string
  power_w?: number | null
  power_avg_w?: number | null
  power_min_w?: number | null
  power_max_w?: number | null
  energy_kwh?: number | null
  temperature_c?: number | null
  temperature_avg_c?: number | null
  humidity_pct?: number | null
  humidity_avg_pct?: number | null
  brightness_lux?: number | null
  brightness_avg_lux?: number | null
}

export type Measure = 'power' | 'energy' | 'temperature' | 'humidity' | 'brightness'

/** The value of a measure in a raw reading or a bucket (raw field first, then the average). */
export function measureOf(point: ReadingLike, measure: Measure): number | null {
  switch (measure) {
    case 'power':
      return point.power_w ?? point.power_avg_w ?? null
    case 'energy':
      return point.energy_kwh ?? null
    case 'temperature':
      return point.temperature_c ?? point.temperature_avg_c ?? null
    case 'humidity':
      return point.humidity_pct ?? point.humidity_avg_pct ?? null
    case 'brightness':
      return point.brightness_lux ?? point.brightness_avg_lux ?? null
  }
}

/** Points of one measure, oldest first, skipping readings without it. */
export function seriesOf(items: readonly ReadingLike[], measure: Measure): Point[] {
  const points: Point[] = []
  for (const item of items) {
    const y = measureOf(item, measure)
    const xMs = Date.parse(item.ts)
    if (y != null && Number.isFinite(xMs)) points.push({ xMs, y })
  }
  return points.sort((a, b) => a.xMs - b.xMs)
}

/** Pairs (temperature, power) of the readings that carry both, for a scatter plot. */
export function powerTemperaturePairs(items: readonly ReadingLike[]): { x: number; y: number }[] {
  const pairs: { x: number; y: number }[] = []
  for (const item of items) {
    const temperature = measureOf(item, 'temperature')
    const power = measureOf(item, 'power')
    if (temperature != null && power != null) pairs.push({ x: temperature, y: power })
  }
  return pairs
}

/** Add a live point, keep the series sorted, and drop what fell out of the window. */
export function appendToWindow(points: readonly Point[], point: Point, nowMs: number, windowMs: number): Point[] {
  const from = nowMs - windowMs
  const kept = points.filter((p) => p.xMs >= from && p.xMs !== point.xMs)
  if (point.xMs >= from) kept.push(point)
  return kept.sort((a, b) => a.xMs - b.xMs)
}

/** An hourly (or daily) statistics bucket, reduced to what the tiles add up. */
export interface EnergyBucket {
  startMs: number
  energyKwh: number
  co2Kg: number
}

export interface DayComparison {
  todayKwh: number
  todayCo2Kg: number
  /** Yesterday over the same elapsed span as today so far (hour buckets). */
  yesterdayKwh: number
  yesterdayCo2Kg: number
  changePct: number | null
}

/**
 * Today so far versus the same span of yesterday, from hourly buckets, with days cut in
 * the site's timezone. A bucket belongs to the span in which it starts.
 */
export function todayVersusYesterday(buckets: readonly EnergyBucket[], nowMs: number, timeZone: string): DayComparison {
  const todayStart = startOfLocalDayMs(nowMs, timeZone)
  const yesterdayStart = addLocalDaysMs(todayStart, -1, timeZone)
  const elapsed = nowMs - todayStart
  let todayKwh = 0
  let todayCo2Kg = 0
  let yesterdayKwh = 0
  let yesterdayCo2Kg = 0
  for (const bucket of buckets) {
    if (bucket.startMs >= todayStart && bucket.startMs <= nowMs) {
      todayKwh += bucket.energyKwh
      todayCo2Kg += bucket.co2Kg
    } else if (bucket.startMs >= yesterdayStart && bucket.startMs - yesterdayStart <= elapsed && bucket.startMs < todayStart) {
      yesterdayKwh += bucket.energyKwh
      yesterdayCo2Kg += bucket.co2Kg
    }
  }
  return { todayKwh, todayCo2Kg, yesterdayKwh, yesterdayCo2Kg, changePct: changePct(todayKwh, yesterdayKwh) }
}

/** Whether a device counts as online: seen within the threshold (the API's default is 60 s). */
export function isOnline(lastSeenMs: number | null, nowMs: number, thresholdMs = 60_000): boolean {
  return lastSeenMs != null && nowMs - lastSeenMs <= thresholdMs
}

