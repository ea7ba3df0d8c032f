// Generates src/api-schema.ts, the TypeScript types of the gateway's API, from openapi.json
// (the gateway's OpenAPI document, written by `python -m sextant.gateway.openapi_export`).
// `make schemas` runs both steps. With --check nothing is written: it fails when the
// committed src/api-schema.ts is not what openapi.json generates now.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

const root = dirname(fileURLToPath(import.meta.url));
const source = join(root, "openapi.json");
const target = join(root, "src", "api-schema.ts");
const regenerate = "make schemas";

const ast = await openapiTS(readFileSync(source, "utf8"), { silent: true });
const generated = `${COMMENT_HEADER}// Generated from openapi.json by api-schema.mjs: run \`${regenerate}\`.\n\n${astToString(ast)}`;

if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(target, "utf8");
  } catch {
    /* missing: reported below */
  }
  if (committed !== generated) {
    console.error(`src/api-schema.ts is not what openapi.json generates: run \`${regenerate}\` and commit both files.`);
    process.exit(1);
  }
} else {
  writeFileSync(target, generated);
  console.log(`wrote ${target}`);
}
