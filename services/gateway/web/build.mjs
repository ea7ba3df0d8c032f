// Builds the workspace into the gateway's static files (src/sextant/gateway/static/):
// one ES module bundle with its CSS (uPlot's included), hashed names, and index.html that
// names them. The gateway serves the folder; no Node process runs in production.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "..", "src", "sextant", "gateway", "static");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  sourcemap: false,
  legalComments: "none",
  write: false,
  outdir: "out",
  logLevel: "warning",
});
const names = {};
for (const file of result.outputFiles) {
  const ext = file.path.endsWith(".css") ? "css" : "js";
  const hash = createHash("sha256").update(file.contents).digest("hex").slice(0, 10);
  const name = `workspace-${hash}.${ext}`;
  writeFileSync(join(out, "assets", name), file.contents);
  names[ext] = name;
}
const page = readFileSync(join(root, "index.html"), "utf8")
  .replace("{{css}}", `/assets/${names.css}`)
  .replace("{{js}}", `/assets/${names.js}`);
writeFileSync(join(out, "index.html"), page);
writeFileSync(join(out, "manifest.json"), JSON.stringify(names) + "\n");
