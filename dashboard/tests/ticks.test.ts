import { describe, expect, it } from 'vitest'
import { isLocalMidnight, timeTicks } from '../src/lib/ticks'
import { DAY_MS, HOUR_MS, localParts, MINUTE_MS } from '../src/lib/time'

describe('time axis ticks', () => {
  it('puts the last ten minutes on whole minutes', () => {
    const max = Date.UTC(2026, 2, 1, 7, 46, 23)
    const ticks = timeTicks(max - 10 * MINUTE_MS, max, 'Asia/Seoul')
    expect(ticks.length).toBeGreaterThanOrEqual(3)
    expect(ticks.length).toBeLessThanOrEqual(7)
    for (const t of ticks) expect(t % (2 * MINUTE_MS)).toBe(0)
  })

  it('cuts 24 hours on round local hours, midnight in Seoul included', () => {
    const max = Date.UTC(2026, 2, 1, 7, 46)
    const ticks = timeTicks(max - DAY_MS, max, 'Asia/Seoul')
    for (const t of ticks) expect(localParts(t, 'Asia/Seoul').hour % 6).toBe(0)
    expect(ticks.some((t) => isLocalMidnight(t, 'Asia/Seoul'))).toBe(true)
  })

  it('uses local midnights for a month, not UTC ones', () => {
    const max = Date.UTC(2026, 2, 31, 12)
    const ticks = timeTicks(max - 30 * DAY_MS, max, 'Asia/Seoul')
    expect(ticks.length).toBeLessThanOrEqual(7)
    for (const t of ticks) {
      expect(isLocalMidnight(t, 'Asia/Seoul')).toBe(true)
      expect(t % DAY_MS).toBe(15 * HOUR_MS) // 00:00 KST is 15:00 UTC
    }
  })

  it('uses the first of months for a year', () => {
    const max = Date.UTC(2026, 10, 26)
    const ticks = timeTicks(max - 365 * DAY_MS, max, 'Asia/Seoul')
    expect(ticks.length).toBeGreaterThan(2)
    expect(ticks.length).toBeLessThanOrEqual(7)
    for (const t of ticks) expect(localParts(t, 'Asia/Seoul').day).toBe(1)
  })

  it('draws nothing for an empty range', () => {
    expect(timeTicks(5, 5, 'UTC')).toEqual([])
  })
})
