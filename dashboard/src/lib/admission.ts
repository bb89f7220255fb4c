// Devices nobody enrolled: the API keeps their readings but counts them in no total until an
// admin admits them (powerflow_common.admission). The dashboard only shows that state.

import type { Device, Role, Waiting } from '../api/types'

/** Waiting for admission: the API says so with a null admitted_at (absent: an older API). */
export function isWaiting(device: Pick<Device, 'admitted_at'>): boolean {
  return device.admitted_at === null
}

/** The waiting devices, most recently seen first, as the overview lists them. */
export function waitingOf<T extends Pick<Device, 'admitted_at' | 'last_seen_at' | 'code'>>(devices: readonly T[]): T[] {
  return devices
    .filter(isWaiting)
    .sort((a, b) => Date.parse(b.last_seen_at) - Date.parse(a.last_seen_at) || a.code.localeCompare(b.code))
}

/** Only an admin admits: admitting changes the organisation's totals and reports. */
export function canAdmit(role: Role | null): boolean {
  return role === 'admin'
}

/** How many wait, from the summary (exact) or else from a device list; 0 when none. */
export function waitingCount(waiting: Waiting | undefined, devices: readonly Pick<Device, 'admitted_at'>[] = []): number {
  return waiting?.count ?? devices.filter(isWaiting).length
}

/** The readings count as shown: "100000+" when the API stopped counting at its cap. */
export function readingsLabel(readings: number, capped: boolean, format: (n: number) => string): string {
  return capped ? `${format(readings)}+` : format(readings)
}
