import { describe, expect, it } from 'vitest'
import { canAdmit, isWaiting, readingsLabel, waitingCount, waitingOf } from '../src/lib/admission'
import { translate } from '../src/i18n'

const device = (code: string, admittedAt: string | null | undefined, lastSeen: string) => ({
  code,
  admitted_at: admittedAt,
  last_seen_at: lastSeen,
})

describe('admission', () => {
  it('calls a device waiting only when the API says admitted_at is null', () => {
    expect(isWaiting(device('a', null, '2026-01-01T00:00:00Z'))).toBe(true)
    expect(isWaiting(device('b', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'))).toBe(false)
    // An API without admission (older) sends no field: nothing is shown as waiting.
    expect(isWaiting(device('c', undefined, '2026-01-01T00:00:00Z'))).toBe(false)
  })

  it('lists waiting devices most recently seen first', () => {
    const list = [
      device('old', null, '2026-01-01T00:00:00Z'),
      device('admitted', '2026-01-01T00:00:00Z', '2026-01-03T00:00:00Z'),
      device('new', null, '2026-01-02T00:00:00Z'),
      device('also-new', null, '2026-01-02T00:00:00Z'),
    ]
    expect(waitingOf(list).map((d) => d.code)).toEqual(['also-new', 'new', 'old'])
  })

  it('lets only an admin admit', () => {
    expect(canAdmit('admin')).toBe(true)
    expect(canAdmit('operator')).toBe(false)
    expect(canAdmit('viewer')).toBe(false)
    expect(canAdmit(null)).toBe(false)
  })

  it('takes the count from the summary, else from the devices', () => {
    expect(waitingCount({ count: 42, devices: [] })).toBe(42)
    expect(waitingCount(undefined, [{ admitted_at: null }, { admitted_at: 'x' }])).toBe(1)
    expect(waitingCount(undefined)).toBe(0)
  })

  it('marks a capped readings count', () => {
    const plain = (n: number) => String(n)
    expect(readingsLabel(100000, true, plain)).toBe('100000+')
    expect(readingsLabel(12, false, plain)).toBe('12')
  })

  it('says in both languages that waiting devices count in no total', () => {
    expect(translate('en', 'admission.notice', { count: 2 })).toContain('not counted')
    expect(translate('ko', 'admission.title', { count: 3 })).toBe('승인 대기 중 (3)')
  })
})
