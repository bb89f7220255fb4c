import { describe, expect, it } from 'vitest'
import {
  addLocalDaysMs,
  HOUR_MS,
  localDateIso,
  localDateStartMs,
  startOfLocalDayMs,
  utcOffsetMs,
} from '../src/lib/time'
import { appendToWindow, todayVersusYesterday, type EnergyBucket } from '../src/lib/series'

describe('timezone cut', () => {
  it('cuts days at local midnight in Seoul (UTC+9)', () => {
    const instant = Date.UTC(2026, 2, 1, 15, 30) // 00:30 on 2 March in Seoul
    expect(startOfLocalDayMs(instant, 'Asia/Seoul')).toBe(Date.UTC(2026, 2, 1, 15, 0))
    expect(localDateIso(instant, 'Asia/Seoul')).toBe('2026-03-02')
    expect(localDateIso(instant, 'UTC')).toBe('2026-03-01')
    expect(utcOffsetMs(instant, 'Asia/Seoul')).toBe(9 * HOUR_MS)
  })

  it('steps over a DST change: a local day of 23 hours', () => {
    const march29 = localDateStartMs('2026-03-29', 'Europe/Berlin')
    expect(march29).toBe(Date.UTC(2026, 2, 28, 23, 0))
    const march30 = addLocalDaysMs(march29, 1, 'Europe/Berlin')
    expect(march30 - march29).toBe(23 * HOUR_MS)
    expect(localDateIso(march30, 'Europe/Berlin')).toBe('2026-03-30')
  })

  it('parses local dates and refuses malformed ones', () => {
    expect(localDateStartMs('2026-01-01', 'Asia/Seoul')).toBe(Date.UTC(2025, 11, 31, 15, 0))
    expect(localDateStartMs('2026/01/01', 'Asia/Seoul')).toBeNaN()
  })
})

describe('today versus yesterday', () => {
  const tz = 'Asia/Seoul'
  const todayStart = Date.UTC(2026, 2, 1, 15, 0) // 2 March, 00:00 KST
  const hour = (offsetH: number, kwh: number): EnergyBucket => ({
    startMs: todayStart + offsetH * HOUR_MS,
    energyKwh: kwh,
    co2Kg: kwh * 0.478,
  })

  it('compares today so far with the same span of yesterday', () => {
    const now = todayStart + 2.5 * HOUR_MS // 02:30 local
    const buckets = [
      hour(-24, 1), // yesterday 00:00
      hour(-23, 1), // yesterday 01:00
      hour(-22, 1), // yesterday 02:00 (the hour now in progress today)
      hour(-21, 5), // yesterday 03:00: later than now's span, not compared
      hour(-1, 9), // yesterday 23:00: not compared
      hour(0, 2),
      hour(1, 2),
      hour(2, 0.5),
    ]
    const result = todayVersusYesterday(buckets, now, tz)
    expect(result.todayKwh).toBeCloseTo(4.5)
    expect(result.yesterdayKwh).toBeCloseTo(3)
    expect(result.changePct).toBeCloseTo(50)
    expect(result.todayCo2Kg).toBeCloseTo(4.5 * 0.478)
  })

  it('has no change to show when yesterday had nothing', () => {
    const result = todayVersusYesterday([hour(0, 1)], todayStart + HOUR_MS, tz)
    expect(result.changePct).toBeNull()
  })

  it('puts a bucket just before local midnight into yesterday, not today', () => {
    const result = todayVersusYesterday([hour(-1, 7)], todayStart + 23.9 * HOUR_MS, tz)
    expect(result.todayKwh).toBe(0)
    expect(result.yesterdayKwh).toBe(7)
  })
})

describe('live window', () => {
  it('keeps the last ten minutes, sorted, without duplicates', () => {
    const now = 1_000_000_000
    const window = 10 * 60_000
    let points = [{ xMs: now - window - 1, y: 1 }, { xMs: now - 5_000, y: 2 }]
    points = appendToWindow(points, { xMs: now - 10_000, y: 3 }, now, window)
    points = appendToWindow(points, { xMs: now - 5_000, y: 4 }, now, window)
    expect(points).toEqual([
      { xMs: now - 10_000, y: 3 },
      { xMs: now - 5_000, y: 4 },
    ])
  })
})
