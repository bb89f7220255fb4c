// Enrolling devices from the dashboard (POST/DELETE /api/v1/devices/{code}/enrolment): the
// API does the work (powerflow_common.enrolment, as `powerflow devices enroll`); these pure
// helpers check the form before sending, name the state, and shape what is shown once.

import type { Device, EnrolmentCreated, EnrolmentRequest, EnrolmentState, Role } from '../api/types'

/** The payload formats a device can be enrolled for (powerflow_common.formats.registry). */
export const ENROL_FORMATS = ['original', 'tasmota', 'shelly', 'esphome', 'emonhub'] as const
export type EnrolFormat = (typeof ENROL_FORMATS)[number]

// powerflow_common.validation.DEVICE_CODE_PATTERN: a code is one topic level of its own.
const CODE_PATTERN = /^[A-Za-z0-9_:-]{1,64}$/
// powerflow_common.enrolment.RESERVED_CODES: topic levels other formats give a meaning to.
const RESERVED_CODES = new Set(['power', 'tele', 'emon', 'status', 'events'])

/** Only an admin enrols and revokes: credentials decide who may write the totals. */
export function canEnrol(role: Role | null): boolean {
  return role === 'admin'
}

export type CodeProblem = 'empty' | 'invalid' | 'reserved'

/** What is wrong with a code typed in the form (null: nothing); the API checks it again. */
export function codeProblem(code: string): CodeProblem | null {
  const trimmed = code.trim()
  if (!trimmed) return 'empty'
  if (!CODE_PATTERN.test(trimmed)) return 'invalid'
  if (RESERVED_CODES.has(trimmed)) return 'reserved'
  return null
}

/** The request body for the form's choice: one format (its own), legacy or not. */
export function enrolmentRequest(format: EnrolFormat, legacy: boolean): EnrolmentRequest {
  return { formats: [format], legacy }
}

/** The device's enrolment; an API without the field (older) says nothing: null. */
export function enrolmentOf(device: Pick<Device, 'enrolment' | 'enrolled_at' | 'revoked_at'>): EnrolmentState | null {
  if (device.enrolment) return device.enrolment
  if (device.revoked_at) return 'revoked'
  if (device.enrolled_at) return 'enrolled'
  return device.enrolled_at === undefined ? null : 'not_enrolled'
}

/** Revoking makes sense only for an enrolled device (a revoked one has no account left). */
export function canRevoke(device: Pick<Device, 'enrolment' | 'enrolled_at' | 'revoked_at'>): boolean {
  return enrolmentOf(device) === 'enrolled'
}

/** Credentials as lines to copy at once (the broker address, account, password, topic). */
export function credentialsText(created: EnrolmentCreated): string {
  return [
    `broker: ${created.mqtt_uri}` + (created.tls_port === null ? '' : ` (plain: mqtt://${created.host}:${created.port})`),
    `username: ${created.username}`,
    `password: ${created.password}`,
    `client id: ${created.client_id}`,
    `topic: ${created.topic}`,
  ].join('\n')
}

/** The settings text for a format the device was enrolled with (the first when not given). */
export function setupFor(created: EnrolmentCreated, format?: string): EnrolmentCreated['setup'][number] | null {
  const wanted = format ?? created.formats[0]
  return created.setup.find((s) => s.format === wanted) ?? created.setup[0] ?? null
}

/**
 * Copy to the clipboard; false when the browser refuses (the Clipboard API needs HTTPS or
 * localhost): the text stays on screen, selectable, for copying by hand.
 */
export async function copyText(text: string, clipboard: Pick<Clipboard, 'writeText'> | undefined = globalThis.navigator?.clipboard): Promise<boolean> {
  if (!clipboard) return false
  try {
    await clipboard.writeText(text)
    return true
  } catch {
    return false
  }
}
