// getVariant: definitions fetched with the write key, Python's assignment, one exposure per unit.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { Experiments, parseDefinition } from "../dist/experiments.js";
import { Sextant } from "../dist/index.js";
import { FakeProfile, settle } from "./fake-browser.mjs";

const HOST = "https://collector.example.com";
const here = dirname(fileURLToPath(import.meta.url));
const ASSIGN = JSON.parse(readFileSync(join(here, "assign-vectors.json"), "utf8"));

const CHECKOUT = {
  id: "checkout",
  name: "",
  variants: [
    { id: "control", name: "Control", weight: 0.5 },
    { id: "one-page", name: "One page", weight: 0.5 },
  ],
  coverage: 1,
  seed: null,
  hash_version: 2,
  unit: "userId",
  start: null,
  stop: null,
};

async function start(definitions = [CHECKOUT], options = {}, profile = new FakeProfile()) {
  profile.collector.definitions = definitions;
  const win = profile.open();
  const client = new Sextant(profile.env(win));
  const experiments = new Experiments(client);
  const errors = [];
  client.init("wk_test", { host: HOST, trackPages: false, onError: (e) => errors.push(e), ...options });
  await experiments.ready();
  return { profile, client, experiments, errors, collector: profile.collector, clock: profile.clock };
}

const exposures = (collector) => collector.events.filter((e) => e.event === "Experiment Viewed");

test("definitions are fetched with the write key, as a CORS-simple GET revalidated by the browser", async () => {
  const { collector } = await start();
  const [request] = collector.requests;
  assert.equal(request.url, `${HOST}/v1/experiments/definitions?writeKey=wk_test`);
  assert.equal(request.init.cache, "no-cache");
  assert.equal(request.init.headers, undefined, "no header that would need a preflight");
});

test("getVariant assigns as the Python assignment does", async () => {
  for (const vector of ASSIGN) {
    const definition = {
      ...CHECKOUT,
      id: vector.key,
      variants: vector.weights.map((weight, i) => ({ id: `v${i}`, weight })),
      coverage: vector.coverage,
      seed: vector.seed,
      hash_version: vector.hashVersion,
    };
    const { experiments } = await start([definition], { experiments: { trackExposures: false } });
    const got = vector.units.map((unit) => (unit ? experiments.getVariant(vector.key, unit) : null));
    const want = vector.expected.map((index, i) => (index === null || !vector.units[i] ? null : `v${index}`));
    assert.deepEqual(got, want, vector.key);
  }
});

test("the unit is the user id once identified, the anonymous id before; or always the anonymous id", async () => {
  const byAnonymous = { ...CHECKOUT, id: "banner", unit: "anonymousId" };
  const { client, experiments, collector } = await start([CHECKOUT, byAnonymous]);
  const anonymous = client.anonymousId();
  experiments.getVariant("checkout");
  client.identify("user-42");
  experiments.getVariant("checkout");
  experiments.getVariant("banner");
  await client.flush();
  const seen = exposures(collector).map((e) => [e.properties.experiment_id, e.userId ?? null, e.anonymousId]);
  assert.deepEqual(seen, [
    ["checkout", null, anonymous],
    ["checkout", "user-42", anonymous],
    ["banner", "user-42", anonymous],
  ]);
  const ids = exposures(collector).map((e) => e.properties.variation_id);
  for (const id of ids) assert.ok(["control", "one-page"].includes(id));
});

test("an exposure is logged once per unit and experiment, across reloads", async () => {
  const profile = new FakeProfile();
  const first = await start([CHECKOUT], {}, profile);
  const variant = first.experiments.getVariant("checkout", "user-7");
  assert.equal(first.experiments.getVariant("checkout", "user-7"), variant);
  first.experiments.getVariant("checkout", "user-8");
  await first.client.flush();
  const second = await start([CHECKOUT], {}, profile);
  assert.equal(second.experiments.getVariant("checkout", "user-7"), variant);
  await second.client.flush();
  const events = exposures(profile.collector);
  assert.deepEqual(events.map((e) => e.properties.variation_id)[0], variant);
  assert.equal(events.length, 2, "user-7 once, user-8 once");
  assert.deepEqual(events[0].properties, { experiment_id: "checkout", variation_id: variant });
});

test("trackExposures: false logs none", async () => {
  const { client, experiments, collector } = await start([CHECKOUT], { experiments: { trackExposures: false } });
  assert.ok(experiments.getVariant("checkout", "u1"));
  await client.flush();
  assert.equal(exposures(collector).length, 0);
});

test("unknown, not started, stopped and uncovered give null", async () => {
  const now = Date.UTC(2026, 0, 15, 12, 0, 0);
  const iso = (ms) => new Date(ms).toISOString();
  const { experiments } = await start([
    { ...CHECKOUT, id: "later", start: iso(now + 1000) },
    { ...CHECKOUT, id: "over", stop: iso(now) },
    { ...CHECKOUT, id: "running", start: iso(now - 1000), stop: "2026-01-16T00:00:00" },
    { ...CHECKOUT, id: "nobody", coverage: 0 },
  ]);
  assert.equal(experiments.getVariant("nope", "u1"), null);
  assert.equal(experiments.getVariant("later", "u1"), null);
  assert.equal(experiments.getVariant("over", "u1"), null);
  assert.notEqual(experiments.getVariant("running", "u1"), null);
  assert.equal(experiments.getVariant("nobody", "u1"), null);
});

test("definitions are refreshed in the background; a 304 or a failure keeps them", async () => {
  const { experiments, collector, clock, errors } = await start([CHECKOUT], { experiments: { refreshInterval: 30000 } });
  assert.notEqual(experiments.getVariant("checkout", "u1"), null);
  collector.answer({ definitions: true, status: 304 });
  await clock.advance(30000);
  assert.notEqual(experiments.getVariant("checkout", "u1"), null);
  collector.answer({ definitions: true, status: "network" });
  await clock.advance(30000);
  assert.notEqual(experiments.getVariant("checkout", "u1"), null);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].reason, "http_status");
  collector.definitions = [];
  await clock.advance(10000); // retried sooner after a failure
  assert.equal(experiments.getVariant("checkout", "u1"), null, "the experiment was removed");
  const fetches = collector.requests.filter((r) => r.url.includes("definitions")).length;
  assert.equal(fetches, 4);
});

test("a returning visitor's definitions answer before the first fetch", async () => {
  const profile = new FakeProfile();
  await start([CHECKOUT], {}, profile);
  profile.collector.answer({ definitions: true, status: "network" });
  const win = profile.open();
  const client = new Sextant(profile.env(win));
  const experiments = new Experiments(client);
  client.init("wk_test", { host: HOST, trackPages: false, onError: () => undefined });
  assert.notEqual(experiments.getVariant("checkout", "u1"), null, "from localStorage, synchronously");
  await settle();
  assert.notEqual(experiments.getVariant("checkout", "u1"), null, "kept after a failed fetch");
});

test("definitions this SDK cannot assign are skipped", () => {
  assert.equal(parseDefinition({ id: "x", variants: [{ id: "a", weight: 1 }] }), null);
  assert.equal(parseDefinition({ id: "x", variants: [{ id: "a" }, { id: "b", weight: 0.5 }] }), null);
  assert.equal(parseDefinition({ ...CHECKOUT, start: "not a date" }), null);
  const parsed = parseDefinition({ id: "x", variants: CHECKOUT.variants });
  assert.deepEqual(
    [parsed.coverage, parsed.seed, parsed.hash_version, parsed.unit, parsed.start, parsed.stop],
    [1, null, 2, "userId", null, null],
  );
});
