// Who is signed in: the API key (kept in localStorage) and its role.

import { reactive, readonly } from 'vue'
import { ApiError, setApiKey, setUnauthorizedHandler } from './api/client'
import { detectRole, probeKey } from './api/endpoints'
import type { Role } from './api/types'

const KEY_STORAGE = 'powerflow.apiKey'
const ROLE_ORDER: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 }

interface SessionState {
  key: string | null
  role: Role | null
  /** False when the API has no /me and the role was probed ("operator" may be an admin). */
  roleExact: boolean
  /** Set when the stored key stopped working (revoked) and the user was signed out. */
  expired: boolean
  /** The stored key could not be checked because the API did not answer. */
  checking: boolean
}

const state = reactive<SessionState>({ key: null, role: null, roleExact: true, expired: false, checking: false })

export const session = readonly(state)

export function hasRole(role: Role): boolean {
  return state.role != null && ROLE_ORDER[state.role] >= ROLE_ORDER[role]
}

/** Check a key against the API, learn its role, and keep it. Throws ApiError. */
export async function signIn(key: string): Promise<Role> {
  const trimmed = key.trim()
  if (!trimmed) throw new ApiError(401, 'empty')
  // Any read proves the key; a device key (ingest only) gets 403 here.
  await probeKey(trimmed)
  const { role, exact } = await detectRole(trimmed)
  setApiKey(trimmed)
  state.key = trimmed
  state.role = role
  state.roleExact = exact
  state.expired = false
  localStorage.setItem(KEY_STORAGE, trimmed)
  return role
}

export function signOut(expired = false): void {
  setApiKey(null)
  state.key = null
  state.role = null
  state.expired = expired
  localStorage.removeItem(KEY_STORAGE)
}

/** Restore the stored key at start-up (its role is asked again: it may have changed). */
export async function restoreSession(): Promise<void> {
  setUnauthorizedHandler(() => signOut(true))
  const stored = localStorage.getItem(KEY_STORAGE)
  if (!stored) return
  setApiKey(stored)
  state.key = stored
  state.checking = true
  try {
    const { role, exact } = await detectRole(stored)
    state.role = role
    state.roleExact = exact
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut(true)
    else state.role = 'viewer' // API down: show what a viewer may see; pages say the API is away
  } finally {
    state.checking = false
  }
}
