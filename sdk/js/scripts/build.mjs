// Builds dist/: the ESM package (index.js, experiments.js and their shared chunk, with
// type declarations) and the two script-tag bundles (IIFE, global `sextant`):
// sextant.min.js (tracking) and sextant-experiments.min.js (tracking, experiments, features).
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const common = {
  absWorkingDir: root,
  bundle: true,
  target: ["es2020"],
  define: { __VERSION__: JSON.stringify(version) },
  legalComments: "none",
  logLevel: "warning",
};

rmSync(join(root, "dist"), { recursive: true, force: true });
await esbuild.build({
  ...common,
  entryPoints: ["src/index.ts", "src/experiments.ts", "src/features.ts"],
  outdir: "dist",
  format: "esm",
  splitting: true,
  chunkNames: "chunk-[hash]",
  sourcemap: true,
});
for (const [entry, out] of [
  ["src/browser.ts", "dist/sextant.min.js"],
  ["src/browser-experiments.ts", "dist/sextant-experiments.min.js"],
]) {
  await esbuild.build({
    ...common,
    entryPoints: [entry],
    outfile: out,
    format: "iife",
    globalName: "sextant",
    minify: true,
    sourcemap: true,
  });
}
execFileSync(join(root, "node_modules", ".bin", "tsc"), ["--emitDeclarationOnly", "--stripInternal"], {
  cwd: root,
  stdio: "inherit",
});
