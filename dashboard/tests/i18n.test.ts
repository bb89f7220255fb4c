import { describe, expect, it } from 'vitest'
import { en } from '../src/i18n/en'
import { ko } from '../src/i18n/ko'
import { translate } from '../src/i18n'

describe('i18n', () => {
  it('has every label in Korean, with the same placeholders', () => {
    expect(Object.keys(ko).sort()).toEqual(Object.keys(en).sort())
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      const names = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort()
      expect(names(ko[key]), key).toEqual(names(en[key]))
    }
  })

  it('fills placeholders in the chosen language', () => {
    expect(translate('en', 'overview.devicesOnline', { online: 2, total: 3 })).toBe('2 of 3 online')
    expect(translate('ko', 'overview.devicesOnline', { online: 2, total: 3 })).toBe('3대 중 2대 온라인')
    expect(translate('ko', 'nav.overview')).toBe('개요')
  })
})
