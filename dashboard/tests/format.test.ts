import { describe, expect, it } from 'vitest'
import {
  changePct,
  formatAgo,
  formatChangePct,
  formatCo2,
  formatDate,
  formatEnergy,
  formatPower,
} from '../src/lib/format'

describe('units', () => {
  it('formats power in W, kW and MW', () => {
    expect(formatPower(0, 'en')).toBe('0 W')
    expect(formatPower(4.25, 'en')).toBe('4.3 W')
    expect(formatPower(512.4, 'en')).toBe('512 W')
    expect(formatPower(1150.5, 'en')).toBe('1.15 kW')
    expect(formatPower(2_500_000, 'en')).toBe('2.5 MW')
    expect(formatPower(null, 'en')).toBe('–')
  })

  it('formats energy in kWh and MWh', () => {
    expect(formatEnergy(0.0421, 'en')).toBe('0.042 kWh')
    expect(formatEnergy(1.1505, 'en')).toBe('1.15 kWh')
    expect(formatEnergy(1234.4, 'en')).toBe('1,234 kWh')
    expect(formatEnergy(12_345, 'ko')).toBe('12.35 MWh')
  })

  it('formats CO2 in kg and tonnes', () => {
    expect(formatCo2(0.5499, 'en')).toBe('0.55 kg CO₂')
    expect(formatCo2(47.81, 'en')).toBe('47.8 kg CO₂')
    expect(formatCo2(4781, 'en')).toBe('4.78 t CO₂')
  })

  it('uses the locale for grouping', () => {
    expect(formatEnergy(1234.4, 'ko')).toBe('1,234 kWh')
    expect(formatPower(999, 'ko')).toBe('999 W')
  })

  it('signs changes and refuses to divide by nothing', () => {
    expect(changePct(110, 100)).toBeCloseTo(10)
    expect(changePct(5, 0)).toBeNull()
    expect(formatChangePct(12.345, 'en')).toBe('+12.3 %')
    expect(formatChangePct(-3, 'en')).toBe('−3 %')
    expect(formatChangePct(0.01, 'en')).toBe('±0 %')
    expect(formatChangePct(null, 'en')).toBe('–')
  })
})

describe('dates', () => {
  const instant = Date.UTC(2026, 2, 1, 15, 30) // 2026-03-01 15:30 UTC = 2026-03-02 00:30 KST

  it('shows the site timezone, not the browser one', () => {
    expect(formatDate(instant, 'en', 'Asia/Seoul', 'time')).toBe('00:30')
    expect(formatDate(instant, 'en', 'Europe/Berlin', 'time')).toBe('16:30')
    expect(formatDate(instant, 'en', 'Asia/Seoul', 'date')).toBe('Mar 2, 2026')
    expect(formatDate(instant, 'ko', 'Asia/Seoul', 'date')).toBe('2026년 3월 2일')
  })

  it('says how long ago in the chosen language', () => {
    expect(formatAgo(instant - 3 * 60_000, instant, 'en')).toBe('3 minutes ago')
    expect(formatAgo(instant - 3 * 60_000, instant, 'ko')).toBe('3분 전')
  })
})
