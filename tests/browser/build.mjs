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
// RudderStack's browser SDK with its plugins built in (its `bundled` entry point), so it loads
// nothing from RudderStack's CDN: exposed as window.RudderAnalytics.
await build({
  stdin: {
    contents: "import { RudderAnalytics } from '@rudderstack/analytics-js/bundled'\nwindow.RudderAnalytics = RudderAnalytics\n",
    resolveDir: '.',
  },
  bundle: true,
  format: 'iife',
  minify: true,
  outfile: 'dist/rudderstack.js',
  logLevel: 'warning',
})
