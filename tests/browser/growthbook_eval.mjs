// Evaluates features for many units in Node with GrowthBook's own JavaScript SDK pointed at a
// Sextant collector (apiHost, clientKey), and with @sextant/browser's evaluator on the payload
// the collector serves. Reads {apiHost, clientKey, features: [keys], units: [attributes]} as
// JSON on stdin; prints {growthbook: [[value per feature] per unit], sextant: [...]}.
import { GrowthBookClient } from "@growthbook/growthbook";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const { evaluate } = await import(pathToFileURL(resolve(here, "..", "..", "sdk", "js", "dist", "features.js")).href);

const input = JSON.parse(readFileSync(0, "utf8"));
const client = new GrowthBookClient({ apiHost: input.apiHost, clientKey: input.clientKey });
const status = await client.init({ timeout: 10000 });
if (!status.success) throw new Error(`GrowthBook's SDK could not load the features: ${JSON.stringify(status)}`);
const payload = await (await fetch(`${input.apiHost}/api/features/${input.clientKey}`)).json();

const growthbook = input.units.map((attributes) =>
  input.features.map((key) => client.evalFeature(key, { attributes }).value ?? null),
);
const sextant = input.units.map((attributes) =>
  input.features.map((key) => evaluate(payload.features, key, attributes).value ?? null),
);
process.stdout.write(JSON.stringify({ growthbook, sextant }));
client.destroy();
