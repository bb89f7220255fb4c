import { describe, expect, it } from 'vitest'
import { chooseResolution, DEFAULT_LIMITS, hasEnergy, RANGE_SPAN_MS } from '../src/lib/resolution'
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../src/lib/time'

describe('chooseResolution', () => {
  it('picks a fitting resolution for each preset range', () => {
    expect(chooseResolution(RANGE_SPAN_MS['1h'])).toBe('raw')
    expect(chooseResolution(RANGE_SPAN_MS['24h'])).toBe('1m')
    expect(chooseResolution(RANGE_SPAN_MS['7d'])).toBe('15m')
    expect(chooseResolution(RANGE_SPAN_MS['30d'])).toBe('1h')
    expect(chooseResolution(RANGE_SPAN_MS['1y'])).toBe('1d')
  })

  it('never asks for raw readings beyond the API limit of 48 h', () => {
    const loose = { ...DEFAULT_LIMITS, maxPoints: 1e9 }
    expect(chooseResolution(48 * HOUR_MS, loose)).toBe('raw')
    expect(chooseResolution(48 * HOUR_MS + 1, loose)).toBe('1m')
  })

  it('never asks for minute buckets beyond the API limit of 7 days', () => {
    const loose = { ...DEFAULT_LIMITS, maxPoints: 1e9 }
    expect(chooseResolution(7 * DAY_MS, loose)).toBe('1m')
    expect(chooseResolution(7 * DAY_MS + MINUTE_MS, loose)).toBe('1h')
  })

  it('keeps custom ranges within the drawable number of points', () => {
    expect(chooseResolution(90 * MINUTE_MS)).toBe('raw') // 1,080 points of 5 s
    expect(chooseResolution(3 * HOUR_MS)).toBe('1m')
    expect(chooseResolution(3 * DAY_MS)).toBe('15m')
    expect(chooseResolution(62 * DAY_MS)).toBe('1h')
    expect(chooseResolution(63 * DAY_MS)).toBe('1d')
    expect(chooseResolution(10 * 365 * DAY_MS)).toBe('1d')
  })

  it('knows which resolutions carry energy', () => {
    expect(hasEnergy('1h')).toBe(true)
    expect(hasEnergy('1d')).toBe(true)
    expect(hasEnergy('raw')).toBe(false)
    expect(hasEnergy('15m')).toBe(false)
  })
})
