import { describe, expect, it } from 'vitest'
import type { Baseline, SavingsDay } from '../src/api/types'
import { cusumPoints, fittedLine, nextDayIso, predictKwh, withinLimit } from '../src/lib/savings'
import { en } from '../src/i18n/en'
import { ko } from '../src/i18n/ko'

// A 5P model: 300 kWh, 9 kWh/°C below 14 °C, 12 kWh/°C above 22 °C.
const model = {
  intercept_kwh: 300,
  heating_slope_kwh_per_c: 9,
  cooling_slope_kwh_per_c: 12,
  heating_change_point_c: 14,
  cooling_change_point_c: 22,
} as Baseline

describe('baseline model', () => {
  it('predicts by the change-point formula', () => {
    expect(predictKwh(model, 4)).toBe(390) // 300 + 9 x 10
    expect(predictKwh(model, 18)).toBe(300) // the dead band
    expect(predictKwh(model, 30)).toBe(396) // 300 + 12 x 8
  })

  it('draws the fitted line through its change points only', () => {
    expect(fittedLine(model, 0, 30)).toEqual([
      { x: 0, y: 426 },
      { x: 14, y: 300 },
      { x: 22, y: 300 },
      { x: 30, y: 396 },
    ])
    // A change point outside the data's range is not drawn.
    expect(fittedLine(model, 15, 20)).toEqual([{ x: 15, y: 300 }, { x: 20, y: 300 }])
    const mean = { ...model, heating_change_point_c: null, cooling_change_point_c: null }
    expect(fittedLine(mean, -5, 30)).toEqual([{ x: -5, y: 300 }, { x: 30, y: 300 }])
  })
})

describe('Guideline 14 limits', () => {
  it('passes a figure within the limit whatever its sign, and knows when it cannot say', () => {
    expect(withinLimit(12.3, 30)).toBe('pass')
    expect(withinLimit(-11, 10)).toBe('fail')
    expect(withinLimit(30, 30)).toBe('pass')
    expect(withinLimit(null, 15)).toBe('unknown')
  })
})

describe('savings series', () => {
  it('puts each day at its local midnight and skips what does not parse', () => {
    const days = [
      { day: '2025-07-01', cusum_kwh: 30 },
      { day: 'not a day', cusum_kwh: 40 },
      { day: '2025-07-02', cusum_kwh: 65 },
    ] as SavingsDay[]
    expect(cusumPoints(days, 'Asia/Seoul')).toEqual([
      { xMs: Date.parse('2025-06-30T15:00:00Z'), y: 30 },
      { xMs: Date.parse('2025-07-01T15:00:00Z'), y: 65 },
    ])
  })

  it('starts a reporting period the day after the baseline', () => {
    expect(nextDayIso('2025-06-28')).toBe('2025-06-29')
    expect(nextDayIso('2024-12-31')).toBe('2025-01-01')
    expect(nextDayIso('2024-02-28')).toBe('2024-02-29')
  })

  it('names the page in both languages', () => {
    expect(en['nav.savings']).toBe('Savings')
    expect(ko['nav.savings']).toBe('절감')
  })
})
