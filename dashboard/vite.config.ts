/// <reference types="vitest/config" />
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The API serves the built dashboard from its package's static/ folder (see docs/api.md).
// POWERFLOW_DASHBOARD_OUT_DIR overrides it (e.g. to build for POWERFLOW_API_STATIC_DIR). Built
// outside the repository (the container's dashboard stage copies dashboard/ alone), it goes
// to dist/.
const apiPackage = fileURLToPath(new URL('../services/api/src/powerflow_api', import.meta.url))
const outDir =
  process.env.POWERFLOW_DASHBOARD_OUT_DIR ?? (existsSync(apiPackage) ? `${apiPackage}/static` : 'dist')

export default defineConfig({
  plugins: [vue()],
  base: './',
  build: {
    outDir,
    emptyOutDir: true,
    chunkSizeWarningLimit: 600,
  },
  server: {
    // `npm run dev` next to `powerflow api` on :8000
    proxy: {
      '/api': { target: 'http://127.0.0.1:8000', ws: true },
    },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    environment: 'node',
  },
})
