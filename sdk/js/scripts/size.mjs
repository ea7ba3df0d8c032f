// The size budgets, minified and gzipped (level 9), of what a page loads:
//   tracking core     dist/sextant.min.js                                  <= 8 KB
//   experiments and features  dist/sextant-experiments.min.js minus the core  <= 6 KB
// Prints every size and exits non-zero when one is over its budget.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const KB = 1024;
const gz = (file) => {
  const raw = readFileSync(join(dist, file));
  return { min: raw.length, gz: gzipSync(raw, { level: 9 }).length };
};

const core = gz("sextant.min.js");
const full = gz("sextant-experiments.min.js");
const rows = [
  ["tracking core (sextant.min.js)", core.min, core.gz, 8 * KB],
  ["experiments and features (sextant-experiments.min.js minus the core)", full.min - core.min, full.gz - core.gz, 6 * KB],
  ["both (sextant-experiments.min.js)", full.min, full.gz, 14 * KB],
];
let over = false;
for (const [name, min, gzip, budget] of rows) {
  const ok = gzip <= budget;
  over ||= !ok;
  console.log(
    `${ok ? "ok  " : "OVER"} ${name}: ${(min / KB).toFixed(2)} KB minified, ` +
      `${(gzip / KB).toFixed(2)} KB gzipped (budget ${budget / KB} KB)`,
  );
}
if (over) {
  console.error("a bundle is over its size budget");
  process.exit(1);
}
