// The features module: GrowthBook's conformance cases against src/conditions.ts and
// src/flags.ts (the port of sextant.schemas.conditions and .flags), and the module in a page.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { decrypt, evalCondition, evaluate, Features, paddedVersion, runExperiment } from "../dist/features.js";
import { Sextant } from "../dist/index.js";
import { FakeProfile } from "./fake-browser.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..", "..");
const CASES = JSON.parse(readFileSync(resolve(repo, "..", "shared", "testdata", "growthbook-cases.json"), "utf8"));
// Left out, as in the Python tests (tests/flag_cases.py): contextual bandits, and run cases
// that need URL targeting, QA mode or a disabled client.
const FEATURE_CASES = CASES.feature.filter(([name]) => !name.startsWith("CB rule"));
const RUN_CASES = CASES.run.filter(([, ctx]) => !("url" in ctx) && !ctx.qaMode && ctx.enabled !== false);
const HOST = "https://collector.example.com";

test("evalCondition: every case", () => {
  assert.ok(CASES.evalCondition.length > 200);
  for (const [name, condition, attributes, expected, groups] of CASES.evalCondition) {
    assert.equal(evalCondition(attributes, condition, groups), expected, name);
  }
});

test("feature: every case but contextual bandits", () => {
  assert.ok(FEATURE_CASES.length >= 50);
  for (const [name, ctx, key, expected] of FEATURE_CASES) {
    const r = evaluate(ctx.features || {}, key, ctx.attributes || {}, ctx.savedGroups, ctx.forcedVariations);
    assert.deepEqual(
      { value: r.value, on: r.on, off: r.off, source: r.source, ruleId: r.ruleId },
      { value: expected.value, on: expected.on, off: expected.off, source: expected.source, ruleId: expected.ruleId },
      name,
    );
    assert.equal(!!r.experimentResult, !!expected.experimentResult, name);
    if (r.experimentResult) {
      const e = r.experimentResult;
      const want = expected.experimentResult;
      assert.deepEqual(
        [e.variationId, e.inExperiment, e.hashUsed, e.hashAttribute, e.hashValue, e.key, e.value],
        [want.variationId, want.inExperiment, want.hashUsed, want.hashAttribute, want.hashValue, want.key, want.value],
        name,
      );
    }
  }
});

test("run: the payload's cases", () => {
  assert.ok(RUN_CASES.length >= 50);
  for (const [name, ctx, experiment, value, inExperiment, hashUsed] of RUN_CASES) {
    const r = runExperiment(experiment, ctx.attributes || {}, ctx.features, ctx.savedGroups, ctx.forcedVariations);
    assert.deepEqual([r.value, r.inExperiment, r.hashUsed], [value, inExperiment, hashUsed], name);
  }
});

test("decrypt: every case", async () => {
  for (const [name, encrypted, key, expected] of CASES.decrypt) {
    let got = null;
    try {
      got = await decrypt(globalThis, encrypted, key);
    } catch {
      got = null;
    }
    assert.equal(got, expected, name);
  }
});

test("versions compare in version order", () => {
  assert.ok(paddedVersion("1.9.2") < paddedVersion("1.10.0"));
  assert.ok(paddedVersion("1.0.0-beta") < paddedVersion("1.0.0"));
});

const PAYLOAD = {
  status: 200,
  features: {
    banner: { defaultValue: false, rules: [{ id: "fr", condition: { country: "FR" }, force: true }] },
    checkout: {
      defaultValue: "classic",
      rules: [
        {
          id: "test",
          key: "checkout-test",
          variations: ["classic", "one-page"],
          weights: [0.5, 0.5],
          hashAttribute: "id",
          hashVersion: 2,
          meta: [{ key: "control" }, { key: "one-page" }],
        },
      ],
    },
  },
  experiments: [],
  dateUpdated: null,
};

async function start(options = {}) {
  const profile = new FakeProfile();
  profile.collector.payload = PAYLOAD;
  const win = profile.open();
  const client = new Sextant(profile.env(win));
  const features = new Features(client);
  client.init("wk_test", { host: HOST, trackPages: false, features: { clientKey: "sdk-abc", ...options } });
  await features.ready();
  return { profile, client, features };
}

test("the page fetches its client key's payload and evaluates without a network call", async () => {
  const { profile, features, client } = await start({ attributes: { country: "FR" } });
  assert.equal(profile.collector.requests[0].url, `${HOST}/api/features/sdk-abc`);
  const before = profile.collector.requests.length;
  assert.equal(features.isOn("banner"), true);
  assert.equal(features.isOn("banner", { country: "DE" }), false);
  assert.equal(features.getFeatureValue("nope", 7), 7);
  const value = features.getFeatureValue("checkout", "x");
  assert.ok(["classic", "one-page"].includes(value));
  assert.equal(profile.collector.requests.length, before, "no request to evaluate");
  features.getFeatureValue("checkout", "x");
  await client.flush();
  const viewed = profile.collector.events.filter((e) => e.event === "Experiment Viewed");
  assert.equal(viewed.length, 1, "one exposure per unit");
  assert.equal(viewed[0].properties.experiment_id, "checkout-test");
  assert.equal(viewed[0].properties.variation_id, value === "classic" ? "control" : "one-page");
});

test("a returning visitor's features answer before the first fetch", async () => {
  const profile = new FakeProfile();
  profile.collector.payload = PAYLOAD;
  const first = new Sextant(profile.env(profile.open()));
  const f1 = new Features(first);
  first.init("wk_test", { host: HOST, trackPages: false, features: { clientKey: "sdk-abc" } });
  await f1.ready();
  profile.collector.featuresDown = true;
  const again = new Sextant(profile.env(profile.open()));
  const f2 = new Features(again);
  again.init("wk_test", { host: HOST, trackPages: false, onError: () => undefined, features: { clientKey: "sdk-abc" } });
  assert.equal(f2.isOn("banner", { country: "FR" }), true, "from localStorage, synchronously");
});
