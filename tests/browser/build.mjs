// Bundles the unchanged client libraries into dist/, as a product team's page would load them.
import { copyFileSync, mkdirSync } from 'node:fs'
import { build } from 'esbuild'

mkdirSync('dist', { recursive: true })
// posthog-js's own script-tag build: defines window.posthog.
copyFileSync('node_modules/posthog-js/dist/array.full.js', 'dist/posthog.js')
// analytics-next from npm, exposed as window.AnalyticsBrowser.
await build({
  stdin: {
    contents: "import { AnalyticsBrowser } from '@segment/analytics-next'\nwindow.AnalyticsBrowser = AnalyticsBrowser\n",
    resolveDir: '.',
  },
  bundle: true,
  format: 'iife',
  minify: true,
  outfile: 'dist/segment.js',
  logLevel: 'warning',
})
