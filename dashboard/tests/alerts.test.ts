import { describe, expect, it } from 'vitest'
import { alertStatus, canActOnAlerts, evidenceLines, hasMore, MUTE_HOURS, muteUntil, subjectParts } from '../src/lib/alerts'
import { translate } from '../src/i18n'
import { en } from '../src/i18n/en'

const NOW = Date.parse('2026-11-29T12:00:00Z')
const alert = (open: boolean, acknowledged: string | null, muted: string | null) => ({
  open,
  acknowledged_at: acknowledged,
  muted_until: muted,
})

describe('alerts', () => {
  it('shows cleared first, then a mute still running, then an acknowledgement', () => {
    expect(alertStatus(alert(false, '2026-11-29T10:00:00Z', '2026-11-30T00:00:00Z'), NOW)).toBe('cleared')
    expect(alertStatus(alert(true, '2026-11-29T10:00:00Z', '2026-11-30T00:00:00Z'), NOW)).toBe('muted')
    // A mute that ended is no mute.
    expect(alertStatus(alert(true, '2026-11-29T10:00:00Z', '2026-11-29T11:00:00Z'), NOW)).toBe('acknowledged')
    expect(alertStatus(alert(true, null, null), NOW)).toBe('open')
  })

  it('lets operators and admins act, viewers only read', () => {
    expect(canActOnAlerts('operator')).toBe(true)
    expect(canActOnAlerts('admin')).toBe(true)
    expect(canActOnAlerts('viewer')).toBe(false)
    expect(canActOnAlerts(null)).toBe(false)
  })

  it('mutes for whole hours from now, never beyond the API limit of 90 days', () => {
    expect(muteUntil(8, NOW)).toBe('2026-11-29T20:00:00.000Z')
    expect(Math.max(...MUTE_HOURS)).toBeLessThanOrEqual(90 * 24)
  })

  it('reads subjects and shortens evidence to plain values', () => {
    expect(subjectParts('device:12')).toEqual({ scope: 'device', id: '12' })
    expect(subjectParts('site:3')).toEqual({ scope: 'site', id: '3' })
    const lines = evidenceLines({ value_w: 300.123456, median_w: 101, nested: { a: 1 }, since: null, night_of: '2026-11-29' })
    expect(lines).toEqual(['value_w: 300.123', 'median_w: 101', 'night_of: 2026-11-29'])
    expect(evidenceLines({ a: 1, b: 2, c: 3 }, 2)).toHaveLength(2)
  })

  it('pages while fewer are shown than the total says', () => {
    expect(hasMore(50, 120)).toBe(true)
    expect(hasMore(120, 120)).toBe(false)
    expect(hasMore(50, Number.NaN)).toBe(false)
  })

  it('names every rule kind in both languages', () => {
    for (const kind of ['silence', 'power_above', 'power_below', 'base_load_jump', 'daily_kwh_above', 'daily_kwh_below']) {
      const key = `alerts.kind.${kind}` as keyof typeof en
      expect(key in en, kind).toBe(true)
      expect(translate('ko', key)).not.toBe(translate('en', key))
    }
    expect(translate('ko', 'alerts.muteHours', { hours: 8 })).toBe('8시간')
  })
})
