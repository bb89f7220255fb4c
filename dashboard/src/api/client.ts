// A small fetch wrapper: the key as a Bearer header, problem+json errors as ApiError.

import type { Problem } from './types'

export const API_BASE = '/api/v1'

/** An answer that is not 2xx (``status`` > 0), or no answer at all (``status`` 0: API down). */
export class ApiError extends Error {
  readonly status: number
  readonly detail: string

  constructor(status: number, detail: string) {
    super(detail)
    this.name = 'ApiError'
    this.status = status
    this.detail = detail
  }

  get unreachable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504
  }
}

let currentKey: string | null = null
let onUnauthorized: (() => void) | null = null

export function setApiKey(key: string | null): void {
  currentKey = key
}

/** Called when the API answers 401 to a signed-in session (key revoked or wrong). */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler
}

export type Query = Record<string, string | number | boolean | null | undefined | readonly string[]>

export function buildUrl(path: string, query: Query = {}): string {
  const params = new URLSearchParams()
  for (const [name, value] of Object.entries(query)) {
    if (value == null) continue
    if (Array.isArray(value)) for (const item of value) params.append(name, String(item))
    else params.append(name, String(value))
  }
  const search = params.toString()
  return `${API_BASE}${path}${search ? `?${search}` : ''}`
}

interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  query?: Query
  body?: unknown
  key?: string | null
  signal?: AbortSignal
}

async function send(path: string, options: RequestOptions): Promise<Response> {
  const key = options.key === undefined ? currentKey : options.key
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (key) headers.Authorization = `Bearer ${key}`
  if (options.body !== undefined) headers['Content-Type'] = 'application/json'
  let response: Response
  try {
    response = await fetch(buildUrl(path, options.query), {
      method: options.method ?? 'GET',
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      cache: 'no-store',
    })
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error
    throw new ApiError(0, 'The API did not answer.')
  }
  if (!response.ok) {
    let detail = response.statusText || `HTTP ${response.status}`
    try {
      const problem = (await response.json()) as Problem
      detail = problem.detail ?? problem.title ?? detail
    } catch {
      // not problem+json (a proxy's error page): keep the status text
    }
    if (response.status === 401 && options.key === undefined && currentKey && onUnauthorized) onUnauthorized()
    throw new ApiError(response.status, detail)
  }
  return response
}

export async function apiJson<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const response = await send(path, options)
  if (response.status === 204) return undefined as T
  return (await response.json()) as T
}

/** One page of a paged list and ``X-Total-Count`` (NaN when a proxy dropped the header). */
export async function apiPage<T>(path: string, options: RequestOptions = {}): Promise<{ items: T[]; total: number }> {
  const response = await send(path, options)
  const items = (await response.json()) as T[]
  return { items, total: Number(response.headers.get('X-Total-Count') ?? Number.NaN) }
}

export async function apiText(path: string, options: RequestOptions = {}): Promise<string> {
  return (await send(path, options)).text()
}

export async function apiBlob(path: string, options: RequestOptions = {}): Promise<Blob> {
  return (await send(path, options)).blob()
}
