// Time-axis ticks on the site's wall clock: whole minutes, hours, local midnights, months.

import { addLocalDaysMs, DAY_MS, HOUR_MS, localParts, MINUTE_MS, startOfLocalDayMs, utcOffsetMs, zonedTimeToUtcMs } from './time'

const SUB_DAY_STEPS_MS = [
  MINUTE_MS,
  2 * MINUTE_MS,
  5 * MINUTE_MS,
  10 * MINUTE_MS,
  15 * MINUTE_MS,
  30 * MINUTE_MS,
  HOUR_MS,
  2 * HOUR_MS,
  3 * HOUR_MS,
  6 * HOUR_MS,
  12 * HOUR_MS,
]
const DAY_STEPS = [1, 2, 7, 14]
const MONTH_STEPS = [1, 2, 3, 6, 12]

/** At most ``maxTicks`` instants in [min, max] that fall on round local times. */
export function timeTicks(minMs: number, maxMs: number, timeZone: string, maxTicks = 7): number[] {
  const span = maxMs - minMs
  if (!(span > 0) || !Number.isFinite(span)) return []
  const ticks: number[] = []
  for (const step of SUB_DAY_STEPS_MS) {
    if (span / step > maxTicks) continue
    const offset = utcOffsetMs(minMs, timeZone)
    for (let t = Math.ceil((minMs + offset) / step) * step - offset; t <= maxMs; t += step) ticks.push(t)
    return ticks
  }
  for (const days of DAY_STEPS) {
    if (span / (days * DAY_MS) > maxTicks) continue
    let t = startOfLocalDayMs(minMs, timeZone)
    if (t < minMs) t = addLocalDaysMs(t, 1, timeZone)
    for (; t <= maxMs; t = addLocalDaysMs(t, days, timeZone)) ticks.push(t)
    return ticks
  }
  const months = MONTH_STEPS.find((n) => span / (n * 30.44 * DAY_MS) <= maxTicks) ?? 24
  const first = localParts(minMs, timeZone)
  let year = first.year
  let month = first.month
  let t = zonedTimeToUtcMs(year, month, 1, timeZone)
  while (t <= maxMs) {
    if (t >= minMs && (month - 1) % months === 0) ticks.push(t)
    month += 1
    if (month > 12) {
      month = 1
      year += 1
    }
    t = zonedTimeToUtcMs(year, month, 1, timeZone)
  }
  return ticks
}

/** True when an instant is a local midnight. */
export function isLocalMidnight(instantMs: number, timeZone: string): boolean {
  return startOfLocalDayMs(instantMs, timeZone) === instantMs
}
