import { describe, expect, it } from 'vitest'
import type { EnrolmentCreated } from '../src/api/types'
import { translate } from '../src/i18n'
import {
  canEnrol,
  canRevoke,
  codeProblem,
  copyText,
  credentialsText,
  ENROL_FORMATS,
  enrolmentOf,
  enrolmentRequest,
  setupFor,
} from '../src/lib/enrolment'

const created = (overrides: Partial<EnrolmentCreated> = {}): EnrolmentCreated => ({
  code: 'plug-1',
  username: 'device-plug-1',
  password: 's3cret-password-32-characters-xx',
  client_id: 'device-plug-1',
  topic: 'power/plug-1/measurement',
  topics: ['power/plug-1/measurement'],
  formats: ['original'],
  legacy: false,
  host: 'broker.example',
  port: 1883,
  tls_port: 8883,
  mqtt_uri: 'mqtts://broker.example:8883',
  created: true,
  setup: [{ format: 'original', title: 'powerflow firmware', text: '{"mqtt_password": "s3cret"}' }],
  warnings: [],
  ...overrides,
})

describe('enrolment', () => {
  it('lets only an admin enrol and revoke', () => {
    expect(canEnrol('admin')).toBe(true)
    expect(canEnrol('operator')).toBe(false)
    expect(canEnrol('viewer')).toBe(false)
    expect(canEnrol(null)).toBe(false)
  })

  it('checks the code as the API will, before sending it', () => {
    expect(codeProblem('')).toBe('empty')
    expect(codeProblem('   ')).toBe('empty')
    expect(codeProblem('A4:CF:12:9B:00:01')).toBeNull()
    expect(codeProblem(' plug-1 ')).toBeNull() // trimmed
    expect(codeProblem('a/b')).toBe('invalid') // a topic level of its own: no "/"
    expect(codeProblem('#')).toBe('invalid')
    expect(codeProblem('x'.repeat(65))).toBe('invalid')
    expect(codeProblem('x'.repeat(64))).toBeNull()
    for (const reserved of ['power', 'tele', 'emon', 'status', 'events']) expect(codeProblem(reserved)).toBe('reserved')
  })

  it('asks for the chosen format and legacy topic', () => {
    expect(enrolmentRequest('tasmota', false)).toEqual({ formats: ['tasmota'], legacy: false })
    expect(enrolmentRequest('original', true)).toEqual({ formats: ['original'], legacy: true })
    expect(ENROL_FORMATS[0]).toBe('original') // the form's default: the project's firmware
  })

  it('names the enrolment state, from the API or from its dates', () => {
    expect(enrolmentOf({ enrolment: 'enrolled' })).toBe('enrolled')
    expect(enrolmentOf({ enrolment: 'revoked', enrolled_at: '2026-01-01T00:00:00Z' })).toBe('revoked')
    expect(enrolmentOf({ enrolled_at: '2026-01-01T00:00:00Z', revoked_at: null })).toBe('enrolled')
    expect(enrolmentOf({ enrolled_at: '2026-01-01T00:00:00Z', revoked_at: '2026-01-02T00:00:00Z' })).toBe('revoked')
    expect(enrolmentOf({ enrolled_at: null, revoked_at: null })).toBe('not_enrolled')
    expect(enrolmentOf({})).toBeNull() // an older API says nothing: show nothing
  })

  it('offers revoking only for an enrolled device', () => {
    expect(canRevoke({ enrolment: 'enrolled' })).toBe(true)
    expect(canRevoke({ enrolment: 'revoked' })).toBe(false)
    expect(canRevoke({ enrolment: 'not_enrolled' })).toBe(false)
    expect(canRevoke({})).toBe(false)
  })

  it('puts everything a device needs into the credentials text', () => {
    const text = credentialsText(created())
    expect(text).toContain('broker: mqtts://broker.example:8883 (plain: mqtt://broker.example:1883)')
    expect(text).toContain('username: device-plug-1')
    expect(text).toContain('password: s3cret-password-32-characters-xx')
    expect(text).toContain('client id: device-plug-1')
    expect(text).toContain('topic: power/plug-1/measurement')
    expect(credentialsText(created({ tls_port: null, mqtt_uri: 'mqtt://b:1883' }))).toContain('broker: mqtt://b:1883\n')
  })

  it('shows the settings of the device type chosen', () => {
    const two = created({
      formats: ['tasmota', 'original'],
      setup: [
        { format: 'tasmota', title: 'Tasmota', text: 'Backlog MqttHost b' },
        { format: 'original', title: 'firmware', text: '{}' },
      ],
    })
    expect(setupFor(two)?.title).toBe('Tasmota')
    expect(setupFor(two, 'original')?.text).toBe('{}')
    expect(setupFor(created({ setup: [] }))).toBeNull()
  })

  it('says when the browser refuses to copy, so the text is copied by hand', async () => {
    const written: string[] = []
    expect(await copyText('x', { writeText: async (t: string) => void written.push(t) })).toBe(true)
    expect(written).toEqual(['x'])
    expect(await copyText('x', { writeText: () => Promise.reject(new Error('not allowed')) })).toBe(false)
    expect(await copyText('x', undefined)).toBe(false)
  })

  it('says in both languages that the password is shown once', () => {
    expect(translate('en', 'enrol.shownOnce')).toContain('Shown only now')
    expect(translate('ko', 'enrol.shownOnce')).toContain('한 번만')
    expect(translate('en', 'enrol.revokeConfirm', { code: 'plug-1' })).toContain('Revoke plug-1?')
    expect(translate('ko', 'enrol.revokeConfirm', { code: 'plug-1' })).toContain('plug-1')
  })
})
