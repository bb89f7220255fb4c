// A small i18n: a reactive locale (remembered in localStorage) and t(key, params).

import { computed, ref } from 'vue'
import type { Locale } from '../lib/format'
import { en, type MessageKey } from './en'
import { ko } from './ko'

export type { MessageKey }

const LOCALE_STORAGE = 'powerflow.locale'
const MESSAGES: Record<Locale, Record<MessageKey, string>> = { en, ko }

function initialLocale(): Locale {
  const stored = typeof localStorage === 'undefined' ? null : localStorage.getItem(LOCALE_STORAGE)
  if (stored === 'en' || stored === 'ko') return stored
  const browser = typeof navigator === 'undefined' ? '' : navigator.language
  return browser.toLowerCase().startsWith('ko') ? 'ko' : 'en'
}

export const locale = ref<Locale>(initialLocale())

export function setLocale(next: Locale): void {
  locale.value = next
  localStorage.setItem(LOCALE_STORAGE, next)
  document.documentElement.lang = next
}

export function translate(lang: Locale, key: MessageKey, params: Record<string, string | number> = {}): string {
  return MESSAGES[lang][key].replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole,
  )
}

/** Translate in the current locale (reactive inside templates and computed values). */
export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  return translate(locale.value, key, params)
}

export const isKorean = computed(() => locale.value === 'ko')
