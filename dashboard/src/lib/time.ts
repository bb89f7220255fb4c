// Calendar arithmetic in a named IANA timezone, with Intl only (no date library).
// Days are cut in the site's timezone, as the API and reports do.

export const MINUTE_MS = 60_000
export const HOUR_MS = 60 * MINUTE_MS
export const DAY_MS = 24 * HOUR_MS

export interface LocalParts {
  year: number
  month: number // 1..12
  day: number
  hour: number
  minute: number
  second: number
}

const partFormatters = new Map<string, Intl.DateTimeFormat>()

function partFormatter(timeZone: string): Intl.DateTimeFormat {
  let formatter = partFormatters.get(timeZone)
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    partFormatters.set(timeZone, formatter)
  }
  return formatter
}

/** The wall-clock fields of an instant in a timezone. */
export function localParts(instantMs: number, timeZone: string): LocalParts {
  const fields: Record<string, number> = {}
  for (const part of partFormatter(timeZone).formatToParts(new Date(instantMs))) {
    if (part.type !== 'literal') fields[part.type] = Number(part.value)
  }
  return {
    year: fields.year ?? 1970,
    month: fields.month ?? 1,
    day: fields.day ?? 1,
    hour: (fields.hour ?? 0) % 24,
    minute: fields.minute ?? 0,
    second: fields.second ?? 0,
  }
}

/** Local time minus UTC at an instant, in milliseconds (Seoul: +9 h). */
export function utcOffsetMs(instantMs: number, timeZone: string): number {
  const p = localParts(instantMs, timeZone)
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second)
  return asUtc - Math.floor(instantMs / 1000) * 1000
}

/** The instant at which a local wall-clock time occurs (the earlier one around DST). */
export function zonedTimeToUtcMs(
  year: number,
  month: number,
  day: number,
  timeZone: string,
  hour = 0,
  minute = 0,
): number {
  const wall = Date.UTC(year, month - 1, day, hour, minute)
  let guess = wall - utcOffsetMs(wall, timeZone)
  // One correction settles it when the offset differs between the guess and the answer.
  guess = wall - utcOffsetMs(guess, timeZone)
  return guess
}

/** Start (UTC ms) of the local day that contains ``instantMs``. */
export function startOfLocalDayMs(instantMs: number, timeZone: string): number {
  const p = localParts(instantMs, timeZone)
  return zonedTimeToUtcMs(p.year, p.month, p.day, timeZone)
}

/** Start of the local day ``days`` after the local day that starts at ``dayStartMs``. */
export function addLocalDaysMs(dayStartMs: number, days: number, timeZone: string): number {
  // Noon of the day keeps clear of DST edges; the calendar step is done on UTC fields.
  const p = localParts(dayStartMs + 12 * HOUR_MS, timeZone)
  const next = new Date(Date.UTC(p.year, p.month - 1, p.day + days))
  return zonedTimeToUtcMs(next.getUTCFullYear(), next.getUTCMonth() + 1, next.getUTCDate(), timeZone)
}

/** ``YYYY-MM-DD`` of the local day containing an instant. */
export function localDateIso(instantMs: number, timeZone: string): string {
  const p = localParts(instantMs, timeZone)
  return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`
}

/** Start (UTC ms) of a local date given as ``YYYY-MM-DD``; NaN when malformed. */
export function localDateStartMs(isoDate: string, timeZone: string): number {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoDate)
  if (!match) return Number.NaN
  return zonedTimeToUtcMs(Number(match[1]), Number(match[2]), Number(match[3]), timeZone)
}

/** The first day of the local month containing an instant, and of the month before it. */
export function localMonthBounds(instantMs: number, timeZone: string): { startIso: string; previousIso: string } {
  const p = localParts(instantMs, timeZone)
  const pad = (n: number) => String(n).padStart(2, '0')
  const prevYear = p.month === 1 ? p.year - 1 : p.year
  const prevMonth = p.month === 1 ? 12 : p.month - 1
  return { startIso: `${p.year}-${pad(p.month)}-01`, previousIso: `${prevYear}-${pad(prevMonth)}-01` }
}

/** True when ``timeZone`` is an IANA name this browser knows. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone })
    return true
  } catch {
    return false
  }
}
