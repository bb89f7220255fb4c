import { describe, expect, it } from 'vitest'
import type { Bill, CostLines, CostSummary } from '../src/api/types'
import { costFigures, formatMoney } from '../src/lib/cost'

const lines = (total: number): CostLines => ({
  kwh: 0,
  kwh_by_band: {},
  energy_by_band: {},
  energy: 0,
  addons: {},
  subtotal: 0,
  fund: 0,
  vat: 0,
  total,
})

const bill = (total: number, demandKw: number | null = 160): Bill => ({
  site_id: 1,
  month: '2026-05',
  start: '2026-04-30T15:00:00Z',
  end: '2026-05-31T15:00:00Z',
  complete: false,
  currency: 'KRW',
  tariff_name: 'kepco-general-b-high-a-ii',
  tariff_label: 'KEPCO',
  tariff_valid_from: '2026-06-01',
  tariff_source: 's',
  contract_power_kw: 400,
  demand:
    demandKw == null
      ? null
      : {
          kw: demandKw,
          basis: 'ratchet',
          floor_kw: 120,
          evidence_month: '2026-01',
          evidence_kw: demandKw,
          evidence_quarter_start: '2026-01-14T02:00:00Z',
          current_month_peak_kw: 120,
          current_month_peak_quarter_start: null,
        },
  demand_charge: 0,
  energy: lines(0),
  energy_charge: 0,
  addons: {},
  fixed_charge: 0,
  electricity_charge: 0,
  fund: 0,
  vat: 0,
  total,
  rounding: 'kepco',
})

describe('money', () => {
  it('formats won without decimals and pounds with two', () => {
    expect(formatMoney(1_455_200, 'KRW', 'en')).toBe('₩1,455,200')
    expect(formatMoney(1_455_200, 'KRW', 'ko')).toBe('₩1,455,200')
    expect(formatMoney(12.5, 'GBP', 'en')).toBe('£12.50')
    expect(formatMoney(null, 'KRW', 'en')).toBe('–')
    expect(formatMoney(Number.NaN, 'KRW', 'en')).toBe('–')
  })

  it('keeps an unknown currency code beside the number', () => {
    expect(formatMoney(3.5, 'XYZW', 'en')).toBe('3.5 XYZW')
  })
})

describe('cost figures', () => {
  const summary = (soFar: number, forecast: number, demandKw: number | null = 160): CostSummary => ({
    site_id: 1,
    currency: 'KRW',
    timezone: 'Asia/Seoul',
    today: lines(12_345.6),
    month_so_far: bill(soFar, demandKw),
    forecast: { bill: bill(forecast, demandKw), method: 'm', days_elapsed: 3, days_remaining: {}, projected_kwh: 0 },
  })

  it('takes today, the bill so far and the forecast from the API', () => {
    const figures = costFigures(summary(500_000, 2_000_000))
    expect(figures).toMatchObject({ today: 12_345.6, monthSoFar: 500_000, forecast: 2_000_000, currency: 'KRW' })
    expect(figures.progress).toBe(0.25)
    expect(figures.billedDemandKw).toBe(160)
    expect(figures.demandBasis).toBe('ratchet')
  })

  it('bounds the progress and survives a month without demand charge', () => {
    expect(costFigures(summary(10, 0, null)).progress).toBe(0)
    expect(costFigures(summary(30, 20, null)).progress).toBe(1)
    expect(costFigures(summary(30, 20, null)).billedDemandKw).toBeNull()
  })
})
