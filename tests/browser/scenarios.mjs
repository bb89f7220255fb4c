// Browser scenarios for the dashboard, run in Debian's headless Chromium by playwright-core.
// Driven by test_dashboard.py: `node scenarios.mjs <scenario>` with settings in the environment.
// Prints one JSON object per line ({"event": ...}); the last is {"event": "done", ...}.
// Every wait is a condition with a deadline, never a fixed sleep.

import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(join(here, '..', '..', 'dashboard', 'package.json'))
const { chromium } = require('playwright-core')

const env = process.env
const BASE_URL = env.PF_BASE_URL ?? 'http://127.0.0.1:8000'
const KEY = env.PF_KEY ?? ''
const SCREENSHOT_DIR = env.PF_SCREENSHOT_DIR ?? ''
const DEVICES = (env.PF_DEVICES ?? '').split(',').filter(Boolean)
const TIMEOUT_MS = Number(env.PF_TIMEOUT_MS ?? 20000)

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`)
}

async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'pf-chromium-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: env.PF_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 860 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'Europe/Berlin', // not the site's zone: the page must use the site's, not the browser's
  })
  context.setDefaultTimeout(TIMEOUT_MS)
  const page = context.pages()[0] ?? (await context.newPage())
  const problems = []
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`))
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`)
  })
  const close = async () => {
    await context.close()
    rmSync(userDataDir, { recursive: true, force: true })
  }
  return { context, page, problems, close }
}

/** Open the dashboard already signed in (the key as the sign-in form stores it). */
async function openSignedIn(page, path = '/', { key = KEY, locale = 'en' } = {}) {
  await page.addInitScript(
    ([k, l]) => {
      if (window.top !== window) return // not inside the sandboxed report frame
      if (!sessionStorage.getItem('pf-test-init')) {
        localStorage.setItem('powerflow.apiKey', k)
        localStorage.setItem('powerflow.locale', l)
        sessionStorage.setItem('pf-test-init', '1')
      }
    },
    [key, locale],
  )
  await page.goto(`${BASE_URL}/#${path}`)
}

async function waitLive(page) {
  await page.locator('[data-test="live-status"][data-status="live"]').first().waitFor()
}

/** Live, the last-10-minutes chart filled, and today's figures on the simulated devices' tiles. */
async function waitSettled(page) {
  await waitLive(page)
  await page.waitForFunction(
    (n) => Number(document.querySelector('[data-test="live-chart"] [data-test="chart"]')?.dataset.points ?? 0) >= n,
    DEVICES.length * 3,
  )
  await page.waitForFunction(
    (codes) =>
      codes.every((code) => {
        const today = document.querySelector(`[data-test="device-tile"][data-device="${code}"] [data-test="tile-today"]`)
        return today && today.textContent.trim() !== '–'
      }),
    DEVICES,
  )
}

async function canvasInk(page, selector) {
  // Pixels a chart actually drew (non-transparent), so "a chart" means more than a <canvas>.
  return page.locator(selector).evaluate((canvas) => {
    const context = canvas.getContext('2d')
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height)
    let inked = 0
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked += 1
    return inked
  })
}

const scenarios = {
  /** Every device has a tile; the admin sees the Devices link; screenshot of the overview. */
  async overview({ page }) {
    await openSignedIn(page, '/')
    for (const code of DEVICES) await page.locator(`[data-test="device-tile"][data-device="${code}"]`).waitFor()
    await waitLive(page)
    const tiles = await page.locator('[data-test="device-tile"]').evaluateAll((els) => els.map((e) => e.dataset.device))
    const devicesLink = await page.locator('[data-test="nav-devices"]').count()
    await waitSettled(page)
    if (SCREENSHOT_DIR) {
      await page.screenshot({ path: join(SCREENSHOT_DIR, 'overview.png'), fullPage: true })
      await page.setViewportSize({ width: 390, height: 844 })
      await page.screenshot({ path: join(SCREENSHOT_DIR, 'overview-phone.png'), fullPage: false })
    }
    return { tiles, devicesLink }
  },

  /** A reading published over MQTT appears on the page (Python publishes after "ready"). */
  async live({ page }) {
    const probe = env.PF_PROBE_DEVICE
    const expected = env.PF_PROBE_TEXT
    await openSignedIn(page, '/')
    await page.locator('[data-test="device-tile"]').first().waitFor()
    await waitLive(page)
    emit('ready')
    const started = Date.now()
    const power = page.locator(`[data-test="device-tile"][data-device="${probe}"] [data-test="tile-power"]`)
    await power.filter({ hasText: expected }).waitFor({ timeout: Number(env.PF_PROBE_TIMEOUT_MS ?? 10000) })
    return { seenAfterMs: Date.now() - started, text: (await power.textContent())?.trim() }
  },

  /** The device page draws the power chart for 24 h. */
  async device24h({ page }) {
    const code = DEVICES[0]
    await openSignedIn(page, `/devices/${code}`)
    await page.locator('[data-test="device-title"]').waitFor()
    await page.locator('[data-test="range-picker"] [data-range="24h"]').click()
    const chart = page.locator('[data-test="power-chart"] [data-test="chart"]')
    await page.waitForFunction(
      () => Number(document.querySelector('[data-test="power-chart"] [data-test="chart"]')?.dataset.points ?? 0) > 0,
    )
    const points = Number(await chart.getAttribute('data-points'))
    const pressed = await page.locator('[data-test="range-picker"] [data-range="24h"]').getAttribute('aria-pressed')
    const ink = await canvasInk(page, '[data-test="power-chart"] canvas')
    const climate = await page.locator('[data-test="temperature-chart"] [data-test="chart"]').getAttribute('data-points')
    const scatter = await page.locator('[data-test="scatter"]').getAttribute('data-points')
    if (SCREENSHOT_DIR) await page.screenshot({ path: join(SCREENSHOT_DIR, 'device.png'), fullPage: true })
    return { points, pressed, ink, climatePoints: Number(climate), scatterPoints: Number(scatter) }
  },

  /** Request a report, watch it reach "done", open it inline; screenshot. */
  async report({ page }) {
    await openSignedIn(page, '/reports')
    await page.locator('[data-test="report-form"]').waitFor()
    await page.locator('[data-test="report-submit"]').click()
    await page.locator('[data-test="report-requested"]').waitFor()
    const row = page.locator('[data-test="report-row"]').first()
    await row.waitFor()
    const statuses = new Set()
    const deadline = Date.now() + Number(env.PF_REPORT_TIMEOUT_MS ?? 90000)
    let status = await row.getAttribute('data-status')
    while (status !== 'done') {
      statuses.add(status)
      if (status === 'failed') throw new Error(`report failed: ${await row.textContent()}`)
      if (Date.now() > deadline) throw new Error(`report not done in time; last status ${status}`)
      await page.waitForFunction(
        (previous) => document.querySelector('[data-test="report-row"]')?.dataset.status !== previous,
        status,
        { timeout: Math.max(1000, deadline - Date.now()) },
      )
      status = await row.getAttribute('data-status')
    }
    statuses.add(status)
    await row.locator('[data-test="report-open"]').click()
    // The frame is sandboxed (no same-origin): read it through Playwright, not the page.
    const frame = page.frameLocator('[data-test="report-frame"]')
    await frame.locator('body', { hasText: 'kWh' }).waitFor()
    const reportText = await frame.locator('body').innerText()
    const hasPdf = (await row.locator('[data-test="report-pdf"]').count()) > 0
    if (SCREENSHOT_DIR) {
      // The list with its "Done" row and the top of the report, in one view.
      await page.setViewportSize({ width: 1280, height: 1240 })
      await page.evaluate(() => window.scrollTo(0, 0))
      await page.screenshot({ path: join(SCREENSHOT_DIR, 'report.png'), fullPage: false })
    }
    return { statuses: [...statuses], reportChars: reportText.length, kwhInReport: /kWh/.test(reportText), hasPdf }
  },

  /** Without reports in the API, the Reports page says so kindly instead of failing. */
  async reportsUnavailable({ page }) {
    // An older API, without the report endpoints, answers 404 on /api/v1/reports.
    await page.route('**/api/v1/reports**', (route) =>
      route.fulfill({
        status: 404,
        contentType: 'application/problem+json',
        body: JSON.stringify({ title: 'Not Found', status: 404, detail: 'Not Found' }),
      }),
    )
    await openSignedIn(page, '/reports')
    await page.locator('[data-test="reports-unavailable"]').waitFor()
    return { unavailable: await page.locator('[data-test="reports-unavailable"]').count() }
  },

  /** Switching to Korean changes the labels, and the choice is remembered. */
  async korean({ page }) {
    await openSignedIn(page, '/', { locale: 'en' })
    const overview = page.locator('[data-test="nav-overview"]')
    await overview.waitFor()
    const before = (await overview.textContent())?.trim()
    await page.locator('[data-test="language-toggle"]').click()
    await page.locator('[data-test="nav-overview"]', { hasText: '개요' }).waitFor()
    const after = (await overview.textContent())?.trim()
    const reports = (await page.locator('[data-test="nav-reports"]').textContent())?.trim()
    const htmlLang = await page.evaluate(() => document.documentElement.lang)
    await page.reload()
    await page.locator('[data-test="nav-overview"]', { hasText: '개요' }).waitFor()
    const afterReload = (await page.locator('[data-test="nav-overview"]').textContent())?.trim()
    if (SCREENSHOT_DIR) {
      await waitSettled(page)
      await page.screenshot({ path: join(SCREENSHOT_DIR, 'overview-ko.png'), fullPage: false })
    }
    return { before, after, reports, htmlLang, afterReload }
  },

  /** A viewer signs in with the form and cannot reach the Devices admin page. */
  async viewer({ page }) {
    await page.goto(`${BASE_URL}/`)
    await page.locator('[data-test="sign-in"]').waitFor()
    await page.locator('[data-test="api-key"]').fill(KEY)
    await page.locator('[data-test="sign-in-submit"]').click()
    await page.locator('[data-test="device-tiles"], [data-test="state-empty"]').first().waitFor()
    const role = (await page.locator('[data-test="role"]').textContent())?.trim()
    const devicesLink = await page.locator('[data-test="nav-devices"]').count()
    await page.goto(`${BASE_URL}/#/admin/devices`)
    await page.locator('[data-test="denied"]').waitFor()
    const adminShown = await page.locator('[data-test="devices-admin"]').count()
    const url = page.url()
    await page.goto(`${BASE_URL}/#/reports`)
    // This API has reports: the viewer is told who may request one (never "unavailable").
    await page.locator('[data-test="report-viewer-note"]').waitFor()
    const requestForm = await page.locator('[data-test="report-form"]').count()
    return { role, devicesLink, adminShown, url, requestForm }
  },

  /** Clear states: no devices yet (an empty list), and an API that does not answer. */
  async states({ page }) {
    // (the list is paged: /devices?limit=...&offset=...)
    await page.route('**/api/v1/devices*', (route) => route.fulfill({ json: [] }))
    // No live socket either: the simulated fleet's live readings would bring tiles back.
    await page.route('**/api/v1/live/ticket', (route) => route.abort('connectionrefused'))
    await openSignedIn(page, '/')
    const empty = page.locator('[data-test="state-empty"]')
    await empty.waitFor()
    const emptyText = (await empty.textContent())?.trim()
    await page.unroute('**/api/v1/devices*')
    await page.unroute('**/api/v1/live/ticket')
    await page.route('**/api/v1/**', (route) => route.abort('connectionrefused'))
    await page.reload()
    const error = page.locator('[data-test="state-error"]')
    await error.waitFor()
    const errorText = (await error.textContent())?.trim()
    await page.unroute('**/api/v1/**')
    await error.getByRole('button').click()
    await page.locator('[data-test="device-tiles"]').waitFor()
    return { emptyText, errorText, recovered: true }
  },

  /** An operator renames a device and gives it a location on the Devices page; the overview shows it. */
  async adminRename({ page }) {
    const code = DEVICES[DEVICES.length - 1]
    const name = env.PF_NEW_NAME ?? 'Server rack'
    await openSignedIn(page, '/admin/devices')
    const row = page.locator(`[data-test="admin-row"][data-device="${code}"]`)
    await row.waitFor()
    const lastSeen = (await row.locator('td').nth(5).textContent())?.trim()
    await row.locator('[data-test="admin-name"]').fill(name)
    await row.locator('input').nth(1).fill('Basement')
    await row.locator('[data-test="admin-save"]').click()
    await row.locator('[data-test="admin-saved"]').waitFor()
    if (SCREENSHOT_DIR) await page.screenshot({ path: join(SCREENSHOT_DIR, 'devices-admin.png'), fullPage: false })
    await page.locator('[data-test="nav-overview"]').click()
    const tile = page.locator(`[data-test="device-tile"][data-device="${code}"]`)
    await tile.filter({ hasText: name }).waitFor()
    return { lastSeen, tileText: (await tile.textContent())?.trim() }
  },

  // A device nobody enrolled waits on the devices page; an admin admits it, others are told who can.
  async adminAdmit({ page }) {
    const code = env.PF_WAITING_DEVICE
    await openSignedIn(page, '/admin/devices')
    const row = page.locator(`[data-test="waiting-row"][data-device="${code}"]`)
    await row.waitFor()
    const button = row.locator('[data-test="waiting-admit"]')
    const askAdmin = await page.locator('[data-test="waiting-ask-admin"]').count()
    if ((await button.count()) === 0) return { admitted: false, askAdmin }
    if (SCREENSHOT_DIR) await page.screenshot({ path: join(SCREENSHOT_DIR, 'devices-waiting.png'), fullPage: false })
    await button.click()
    await row.waitFor({ state: 'detached' })
    return { admitted: true, askAdmin }
  },

  // An admin enrols a device with the form: the credentials are shown once, then forgotten.
  async adminEnrol({ page }) {
    const code = env.PF_ENROL_DEVICE
    await openSignedIn(page, '/admin/devices')
    const form = page.locator('[data-test="enrol-device"]')
    await form.waitFor()
    await form.locator('[data-test="enrol-code"]').fill(code)
    await form.locator('[data-test="enrol-format"]').selectOption(env.PF_ENROL_FORMAT ?? 'original')
    await form.locator('[data-test="enrol-submit"]').click()
    const result = page.locator('[data-test="enrol-result"]')
    await result.waitFor()
    const username = (await result.locator('[data-test="enrol-username"]').textContent())?.trim()
    const password = (await result.locator('[data-test="enrol-password"]').textContent())?.trim()
    const setup = (await result.locator('[data-test="enrol-setup"]').textContent()) ?? ''
    const row = page.locator(`[data-test="admin-row"][data-device="${code}"]`)
    await row.locator('[data-test="admin-enrolment"]').filter({ hasText: 'Enrolled' }).waitFor()
    if (SCREENSHOT_DIR) await page.screenshot({ path: join(SCREENSHOT_DIR, 'devices-enrol.png'), fullPage: false })
    await result.locator('[data-test="enrol-done"]').click()
    await result.waitFor({ state: 'detached' })
    const passwordLeft = (await page.locator('body').innerText()).includes(password)
    return { username, password, setupHasPassword: setup.includes(password), passwordLeft }
  },

  // An admin revokes an enrolled device: a confirmation first, then the row says revoked.
  async adminRevoke({ page }) {
    const code = env.PF_ENROL_DEVICE
    await openSignedIn(page, '/admin/devices')
    const row = page.locator(`[data-test="admin-row"][data-device="${code}"]`)
    await row.waitFor()
    await row.locator('[data-test="admin-revoke"]').click()
    const confirm = row.locator('[data-test="admin-revoke-confirm"]')
    await confirm.waitFor()
    const asked = (await confirm.textContent())?.includes(code) ?? false
    await row.locator('[data-test="admin-revoke-yes"]').click()
    await row.locator('[data-test="admin-enrolment"]').filter({ hasText: 'Revoked' }).waitFor()
    const revokeLeft = await row.locator('[data-test="admin-revoke"]').count()
    return { asked, revokeLeft }
  },

  // Alerts (issue 15): an operator acknowledges an open alert, then mutes it for an hour.
  async alerts({ page }) {
    const id = env.PF_ALERT_ID
    await openSignedIn(page, '/alerts')
    const row = page.locator(`[data-test="alert-${id}"]`)
    await row.waitFor()
    const before = (await row.locator('.badge').textContent())?.trim()
    await row.locator('[data-test="alert-acknowledge"]').click()
    await row.locator('.badge').filter({ hasText: 'Acknowledged' }).waitFor()
    await row.locator('[data-test="alert-mute-1"]').click()
    await row.locator('.badge').filter({ hasText: 'Muted' }).waitFor()
    if (SCREENSHOT_DIR) await page.screenshot({ path: join(SCREENSHOT_DIR, 'alerts.png'), fullPage: false })
    const evidence = (await row.locator('.evidence').textContent())?.trim()
    return { before, evidence, unmute: await row.locator('[data-test="alert-unmute"]').count() }
  },
}

const name = process.argv[2]
const scenario = scenarios[name]
if (!scenario) {
  emit('error', { message: `unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}` })
  process.exit(2)
}
const browser = await launch()
try {
  const result = await scenario(browser)
  emit('done', { result, problems: browser.problems })
  await browser.close()
} catch (error) {
  let screenshot = null
  if (SCREENSHOT_DIR || env.PF_FAILURE_DIR) {
    screenshot = join(env.PF_FAILURE_DIR ?? SCREENSHOT_DIR, `failure-${name}.png`)
    await browser.page.screenshot({ path: screenshot, fullPage: true }).catch(() => (screenshot = null))
  }
  const body = await browser.page.locator('body').innerText().catch(() => '')
  emit('error', { message: String(error?.stack ?? error), url: browser.page.url(), body: body.slice(0, 2000), problems: browser.problems, screenshot })
  await browser.close()
  process.exit(1)
}
