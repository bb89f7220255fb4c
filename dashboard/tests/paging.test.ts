import { afterEach, describe, expect, it, vi } from 'vitest'
import { listDevices } from '../src/api/endpoints'

/** A fake API serving ``total`` devices, ``pageSize`` a page, as GET /devices does. */
function serve(total: number, pageSize: number, header = true): string[] {
  const asked: string[] = []
  vi.stubGlobal('fetch', async (url: string) => {
    asked.push(url)
    const offset = Number(new URL(url, 'http://x').searchParams.get('offset') ?? 0)
    const count = Math.max(0, Math.min(pageSize, total - offset))
    const items = Array.from({ length: count }, (_, i) => ({ code: `d-${offset + i}` }))
    const headers: Record<string, string> = header ? { 'X-Total-Count': String(total) } : {}
    return new Response(JSON.stringify(items), { status: 200, headers })
  })
  return asked
}

afterEach(() => vi.unstubAllGlobals())

describe('listDevices', () => {
  it('follows the pages until the total', async () => {
    const asked = serve(7, 3)
    const devices = await listDevices()
    expect(devices.map((d) => d.code)).toEqual(['d-0', 'd-1', 'd-2', 'd-3', 'd-4', 'd-5', 'd-6'])
    expect(asked).toHaveLength(3)
    expect(asked[2]).toContain('offset=6')
  })

  it('asks once for a fleet that fits in a page', async () => {
    const asked = serve(2, 1000)
    expect(await listDevices()).toHaveLength(2)
    expect(asked).toHaveLength(1)
  })

  it('stops after one page when a proxy dropped the total', async () => {
    const asked = serve(7, 3, false)
    expect(await listDevices()).toHaveLength(3)
    expect(asked).toHaveLength(1)
  })
})
