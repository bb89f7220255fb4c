// Live readings over the WebSocket: a fresh single-use ticket per connection, reconnects
// with backoff. The key never goes into the socket's URL; the ticket does (by design).

import { ref, type Ref } from 'vue'
import { ApiError } from './client'
import { createTicket } from './endpoints'
import type { LiveReading } from './types'

export type LiveStatus = 'connecting' | 'live' | 'offline'

export interface LiveFeed {
  status: Ref<LiveStatus>
  close(): void
}

export function liveSocketUrl(ticketUrl: string, location: Pick<Location, 'protocol' | 'host'>): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}${ticketUrl}`
}

/** Open the live feed; ``onReading`` gets each reading as it arrives. */
export function openLiveFeed(onReading: (reading: LiveReading) => void, devices: string[] = []): LiveFeed {
  const status = ref<LiveStatus>('connecting')
  let socket: WebSocket | null = null
  let closed = false
  let retryMs = 1_000
  let timer: ReturnType<typeof setTimeout> | null = null

  const scheduleReconnect = () => {
    if (closed) return
    status.value = 'offline'
    timer = setTimeout(connect, retryMs)
    retryMs = Math.min(retryMs * 2, 15_000)
  }

  async function connect(): Promise<void> {
    if (closed) return
    status.value = 'connecting'
    let ticketUrl: string
    try {
      ticketUrl = (await createTicket()).url
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        closed = true
        status.value = 'offline'
        return
      }
      scheduleReconnect()
      return
    }
    if (closed) return
    const filter = devices.length ? `&device=${devices.map(encodeURIComponent).join(',')}` : ''
    socket = new WebSocket(liveSocketUrl(ticketUrl, window.location) + filter)
    socket.onopen = () => {
      status.value = 'live'
      retryMs = 1_000
    }
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== 'string') return
      try {
        const reading = JSON.parse(event.data) as LiveReading
        if (reading && typeof reading.device_code === 'string') onReading(reading)
      } catch {
        // not JSON: ignore
      }
    }
    socket.onclose = () => {
      socket = null
      scheduleReconnect()
    }
  }

  void connect()
  return {
    status,
    close() {
      closed = true
      if (timer) clearTimeout(timer)
      socket?.close()
      socket = null
    },
  }
}
