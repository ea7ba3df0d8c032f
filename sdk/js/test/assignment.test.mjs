// The TypeScript port of schemas/src/sextant/schemas/assignment.py against GrowthBook's
// conformance cases and the vectors the Python side is tested with.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  assign,
  chooseVariation,
  fnv1a32,
  getBucketRanges,
  getEqualWeights,
  hashValue,
  inNamespace,
} from "../dist/experiments.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..", "..");
// Shared test data sits beside the repository, as the Python tests find it.
const CASES = JSON.parse(readFileSync(resolve(repo, "..", "shared", "testdata", "growthbook-cases.json"), "utf8"));
const NON_ASCII = JSON.parse(readFileSync(join(here, "non-ascii-vectors.json"), "utf8"));
const ASSIGN = JSON.parse(readFileSync(join(here, "assign-vectors.json"), "utf8"));

const rounded = (ranges) => ranges.map(([a, b]) => [Math.round(a * 1e6) / 1e6, Math.round(b * 1e6) / 1e6]);

test("the conformance sections are present", () => {
  for (const section of ["hash", "getBucketRange", "chooseVariation", "inNamespace", "getEqualWeights", "run"]) {
    assert.ok(CASES[section].length > 0, section);
  }
});

for (const [seed, value, version, expected] of CASES.hash) {
  test(`GrowthBook hash ${JSON.stringify(seed)} + ${JSON.stringify(value)} v${version}`, () => {
    assert.equal(hashValue(seed, value, version), expected);
  });
}

for (const [name, [n, coverage, weights], expected] of CASES.getBucketRange) {
  test(`GrowthBook getBucketRange: ${name}`, () => {
    assert.deepEqual(rounded(getBucketRanges(n, coverage, weights)), rounded(expected));
  });
}

for (const [name, n, ranges, expected] of CASES.chooseVariation) {
  test(`GrowthBook chooseVariation: ${name}`, () => {
    assert.equal(chooseVariation(n, ranges), expected);
  });
}

for (const [name, userId, namespace, expected] of CASES.inNamespace) {
  test(`GrowthBook inNamespace: ${name}`, () => {
    assert.equal(inNamespace(userId, namespace), expected);
  });
}

for (const [n, expected] of CASES.getEqualWeights) {
  test(`GrowthBook getEqualWeights(${n})`, () => {
    assert.deepEqual(
      getEqualWeights(n).map((w) => Math.round(w * 1e8) / 1e8),
      expected,
    );
  });
}

// The `run` cases that are pure assignment: an `id` attribute and an experiment with only
// key, variations, weights, coverage, seed, hashVersion, namespace. (Conditions, forcing,
// query strings, filters and ranges are GrowthBook features Sextant's definitions do not have.)
const ASSIGNMENT_KEYS = new Set(["key", "variations", "weights", "coverage", "seed", "hashVersion", "namespace"]);
const runCases = CASES.run.filter(
  ([, context, experiment]) =>
    Object.keys(context).every((k) => k === "attributes") &&
    Object.keys(context.attributes || {}).every((k) => k === "id") &&
    Object.keys(experiment).every((k) => ASSIGNMENT_KEYS.has(k)),
);

test("enough run cases are pure assignment", () => {
  assert.ok(runCases.length >= 40, String(runCases.length));
});

for (const [name, context, experiment, value, inExperiment] of runCases) {
  test(`GrowthBook run: ${name}`, () => {
    const id = context.attributes && context.attributes.id != null ? String(context.attributes.id) : "";
    const variations = experiment.variations;
    const weights = experiment.weights || getEqualWeights(variations.length);
    const index = assign(
      experiment.key,
      id,
      weights.length === variations.length ? weights : getEqualWeights(variations.length),
      experiment.coverage ?? 1,
      experiment.seed,
      experiment.hashVersion ?? 1, // GrowthBook's default when an experiment names none
      experiment.namespace,
    );
    assert.equal(index !== null, inExperiment);
    assert.deepEqual(index === null ? variations[0] : variations[index], value);
  });
}

for (const [seed, value, version, expected] of NON_ASCII) {
  test(`non-ASCII hash ${JSON.stringify(seed)} + ${JSON.stringify(value)} v${version} (the Python vectors)`, () => {
    assert.equal(hashValue(seed, value, version), expected);
  });
}

test("an emoji hashes as its two surrogate code units", () => {
  assert.equal(fnv1a32("😀"), fnv1a32("\ud83d\ude00"));
});

for (const experiment of ASSIGN) {
  test(`assign() agrees with the Python assignment: ${experiment.key}`, () => {
    const got = experiment.units.map((unit) =>
      assign(experiment.key, unit, experiment.weights, experiment.coverage, experiment.seed, experiment.hashVersion),
    );
    assert.deepEqual(got, experiment.expected);
  });
}

test("the seed defaults to the experiment key", () => {
  for (const unit of ["u1", "u2", "😀-user", "用户"]) {
    assert.equal(assign("exp", unit, [0.5, 0.5]), assign("exp", unit, [0.5, 0.5], 1, "exp"));
  }
});

test("the emoji vector through assign", () => {
  assert.equal(assign("any-key", "😀-user", [0.5, 0.5], 1, "seed"), 0);
  assert.equal(assign("any-key", "😀-user", [0.5, 0.5], 0.5, "seed"), null);
});

test("excluded units", () => {
  assert.equal(assign("exp", "", [0.5, 0.5]), null);
  assert.equal(assign("exp", "u1", [1]), null);
  assert.equal(assign("exp", "u1", []), null);
  assert.equal(assign("exp", "u1", [0.5, 0.5], 1, null, 3), null);
  assert.equal(assign("exp", "u1", [0.5, 0.5], 0), null);
});

test("invalid weights fall back to equal weights, as in Python", () => {
  assert.deepEqual(getBucketRanges(2, 1, [0.7, 0.6]), [[0, 0.5], [0.5, 1]]);
  assert.deepEqual(getBucketRanges(2, 1, [-0.5, 1.5]), [[0, 0.5], [0.5, 1]]);
  assert.deepEqual(getBucketRanges(2, 1, [Infinity, 0]), [[0, 0.5], [0.5, 1]]);
  assert.deepEqual(getBucketRanges(2, 2, [0.4, 0.6]), [[0, 0.4], [0.4, 1]]);
});
