// Numbers, units and dates for people, with Intl in the chosen locale and timezone.

export type Locale = 'en' | 'ko'

const INTL_LOCALE: Record<Locale, string> = { en: 'en-US', ko: 'ko-KR' }

export function intlLocale(locale: Locale): string {
  return INTL_LOCALE[locale]
}

const numberFormats = new Map<string, Intl.NumberFormat>()

export function formatNumber(value: number, locale: Locale, maxFractionDigits = 1, minFractionDigits = 0): string {
  const key = `${locale}|${minFractionDigits}|${maxFractionDigits}`
  let format = numberFormats.get(key)
  if (!format) {
    format = new Intl.NumberFormat(INTL_LOCALE[locale], {
      minimumFractionDigits: minFractionDigits,
      maximumFractionDigits: maxFractionDigits,
    })
    numberFormats.set(key, format)
  }
  return format.format(Object.is(value, -0) ? 0 : value)
}

export interface Quantity {
  value: string
  unit: string
}

export function joinQuantity(q: Quantity): string {
  return `${q.value} ${q.unit}`
}

/** Power: W below 1 kW, kW below 1 MW, then MW. */
export function powerQuantity(powerW: number, locale: Locale): Quantity {
  const abs = Math.abs(powerW)
  if (abs < 1_000) return { value: formatNumber(powerW, locale, abs < 10 ? 1 : 0), unit: 'W' }
  if (abs < 1_000_000) return { value: formatNumber(powerW / 1_000, locale, 2), unit: 'kW' }
  return { value: formatNumber(powerW / 1_000_000, locale, 2), unit: 'MW' }
}

export function formatPower(powerW: number | null | undefined, locale: Locale): string {
  return powerW == null || !Number.isFinite(powerW) ? '–' : joinQuantity(powerQuantity(powerW, locale))
}

/** Energy: kWh with 3 decimals below 1, 2 below 100, whole above; MWh from 10,000 kWh. */
export function energyQuantity(energyKwh: number, locale: Locale): Quantity {
  const abs = Math.abs(energyKwh)
  if (abs >= 10_000) return { value: formatNumber(energyKwh / 1_000, locale, 2), unit: 'MWh' }
  const digits = abs < 1 ? 3 : abs < 100 ? 2 : 0
  return { value: formatNumber(energyKwh, locale, digits), unit: 'kWh' }
}

export function formatEnergy(energyKwh: number | null | undefined, locale: Locale): string {
  return energyKwh == null || !Number.isFinite(energyKwh) ? '–' : joinQuantity(energyQuantity(energyKwh, locale))
}

/** CO2: kg below one tonne (2 decimals below 10 kg), then tonnes. */
export function co2Quantity(co2Kg: number, locale: Locale): Quantity {
  const abs = Math.abs(co2Kg)
  if (abs >= 1_000) return { value: formatNumber(co2Kg / 1_000, locale, 2), unit: 't CO₂' }
  return { value: formatNumber(co2Kg, locale, abs < 10 ? 2 : 1), unit: 'kg CO₂' }
}

export function formatCo2(co2Kg: number | null | undefined, locale: Locale): string {
  return co2Kg == null || !Number.isFinite(co2Kg) ? '–' : joinQuantity(co2Quantity(co2Kg, locale))
}

export function formatTemperature(temperatureC: number | null | undefined, locale: Locale): string {
  return temperatureC == null ? '–' : `${formatNumber(temperatureC, locale, 1)} °C`
}

export function formatHumidity(humidityPct: number | null | undefined, locale: Locale): string {
  return humidityPct == null ? '–' : `${formatNumber(humidityPct, locale, 0)} %`
}

export function formatBrightness(brightnessLux: number | null | undefined, locale: Locale): string {
  return brightnessLux == null ? '–' : `${formatNumber(brightnessLux, locale, 0)} lx`
}

/** A signed change in percent ("+12.5 %", "−3 %"); "–" when there is nothing to compare. */
export function formatChangePct(changePct: number | null | undefined, locale: Locale): string {
  if (changePct == null || !Number.isFinite(changePct)) return '–'
  const rounded = Math.round(changePct * 10) / 10
  const sign = rounded > 0 ? '+' : rounded < 0 ? '−' : '±'
  return `${sign}${formatNumber(Math.abs(rounded), locale, 1)} %`
}

/** Percent change of ``current`` against ``previous``; null when previous is 0 or missing. */
export function changePct(current: number, previous: number | null | undefined): number | null {
  if (previous == null || previous === 0) return null
  return ((current - previous) / previous) * 100
}

type DateStyle = 'time' | 'timeSeconds' | 'dateTime' | 'date' | 'dayMonth' | 'monthYear' | 'axisShort'

const DATE_OPTIONS: Record<DateStyle, Intl.DateTimeFormatOptions> = {
  time: { hour: '2-digit', minute: '2-digit' },
  timeSeconds: { hour: '2-digit', minute: '2-digit', second: '2-digit' },
  dateTime: { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' },
  date: { year: 'numeric', month: 'short', day: 'numeric' },
  dayMonth: { month: 'short', day: 'numeric' },
  monthYear: { year: 'numeric', month: 'short' },
  axisShort: { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' },
}

const dateFormats = new Map<string, Intl.DateTimeFormat>()

/** An instant as the site's wall clock, in the chosen language. */
export function formatDate(instantMs: number, locale: Locale, timeZone: string, style: DateStyle = 'dateTime'): string {
  if (!Number.isFinite(instantMs)) return '–'
  const key = `${locale}|${timeZone}|${style}`
  let format = dateFormats.get(key)
  if (!format) {
    format = new Intl.DateTimeFormat(INTL_LOCALE[locale], { ...DATE_OPTIONS[style], timeZone, hourCycle: 'h23' })
    dateFormats.set(key, format)
  }
  return format.format(new Date(instantMs))
}

/** "3 minutes ago" / "3분 전". */
export function formatAgo(instantMs: number, nowMs: number, locale: Locale): string {
  const seconds = Math.round((instantMs - nowMs) / 1000)
  const format = new Intl.RelativeTimeFormat(INTL_LOCALE[locale], { numeric: 'auto' })
  const abs = Math.abs(seconds)
  if (abs < 60) return format.format(seconds, 'second')
  if (abs < 3_600) return format.format(Math.round(seconds / 60), 'minute')
  if (abs < 86_400) return format.format(Math.round(seconds / 3_600), 'hour')
  return format.format(Math.round(seconds / 86_400), 'day')
}

/** Axis tick label for a time axis: time of day for short spans, dates for longer ones. */
export function axisLabel(instantMs: number, spanMs: number, locale: Locale, timeZone: string): string {
  if (spanMs <= 2 * 3_600_000) return formatDate(instantMs, locale, timeZone, 'time')
  if (spanMs <= 2 * 86_400_000) return formatDate(instantMs, locale, timeZone, 'time')
  if (spanMs <= 90 * 86_400_000) return formatDate(instantMs, locale, timeZone, 'dayMonth')
  return formatDate(instantMs, locale, timeZone, 'monthYear')
}
