// Money for people: amounts in the tariff's currency, and the overview's three cost figures.
// Every figure comes from the API (powerflow_common.tariffs decides); nothing is re-priced here.

import type { CostSummary } from '../api/types'
import { intlLocale, type Locale } from './format'

const moneyFormats = new Map<string, Intl.NumberFormat>()

/**
 * An amount in its ISO 4217 currency, with that currency's own minor digits (KRW: none,
 * GBP/USD: 2). Not finite or null: a dash.
 */
export function formatMoney(amount: number | null | undefined, currency: string, locale: Locale): string {
  if (amount == null || !Number.isFinite(amount)) return '–'
  const key = `${locale}|${currency}`
  let format = moneyFormats.get(key)
  if (!format) {
    try {
      format = new Intl.NumberFormat(intlLocale(locale), { style: 'currency', currency })
    } catch {
      // not an ISO 4217 code: the number and the code as given
      format = new Intl.NumberFormat(intlLocale(locale), { maximumFractionDigits: 2 })
      const plain = format
      return `${plain.format(amount)} ${currency}`
    }
    moneyFormats.set(key, format)
  }
  return format.format(Object.is(amount, -0) ? 0 : amount)
}

export interface CostFigures {
  today: number
  monthSoFar: number
  forecast: number
  currency: string
  /** The forecast's share of the month already billed so far (0..1), for a progress bar. */
  progress: number
  billedDemandKw: number | null
  demandBasis: string | null
}

/** The overview's cost cards from a summary: today, the bill so far, the month-end forecast. */
export function costFigures(summary: CostSummary): CostFigures {
  const forecast = summary.forecast.bill.total
  const soFar = summary.month_so_far.total
  return {
    today: summary.today.total,
    monthSoFar: soFar,
    forecast,
    currency: summary.currency,
    progress: forecast > 0 ? Math.min(1, Math.max(0, soFar / forecast)) : 0,
    billedDemandKw: summary.month_so_far.demand?.kw ?? null,
    demandBasis: summary.month_so_far.demand?.basis ?? null,
  }
}
