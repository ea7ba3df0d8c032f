// Flag evaluation cost in Node: @sextant/browser's evaluator (sdk/js/dist/features.js) and
// GrowthBook's own JavaScript SDK (GrowthBookClient.evalFeature) on the same payload.
// Reads {features: payload.features, keys, units, rounds} as JSON on stdin; prints
// {sextant_us, growthbook_us}: the median over rounds of microseconds per flag evaluated.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const load = (path) => import(pathToFileURL(resolve(repo, path)).href);
const { evaluate } = await load("sdk/js/dist/features.js");
const { GrowthBookClient } = await load("tests/browser/node_modules/@growthbook/growthbook/dist/esm/index.mjs");

const input = JSON.parse(readFileSync(0, "utf8"));
const client = new GrowthBookClient({});
client.initSync({ payload: { features: input.features } });

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function time(evaluateOne) {
  const rounds = [];
  let sink = 0;
  for (let r = 0; r < input.rounds; r++) {
    const started = process.hrtime.bigint();
    for (const attributes of input.units) {
      for (const key of input.keys) if (evaluateOne(key, attributes) !== undefined) sink++;
    }
    const ns = Number(process.hrtime.bigint() - started);
    rounds.push(ns / 1000 / (input.units.length * input.keys.length));
  }
  if (sink < 0) throw new Error("unreachable");
  return median(rounds);
}

// Warm both up (the JIT) before timing.
time((key, attributes) => evaluate(input.features, key, attributes).value);
time((key, attributes) => client.evalFeature(key, { attributes }).value);
const sextant_us = time((key, attributes) => evaluate(input.features, key, attributes).value);
const growthbook_us = time((key, attributes) => client.evalFeature(key, { attributes }).value);
process.stdout.write(JSON.stringify({ sextant_us, growthbook_us }));
