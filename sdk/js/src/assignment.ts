/**
 * Deterministic experiment assignment, compatible with GrowthBook's hashing.
 *
 * A line-for-line port of `schemas/src/sextant/schemas/assignment.py`, the one
 * implementation the server and the Python SDK share: the same unit, experiment
 * and weights give the same variant in every Sextant SDK and in GrowthBook's.
 * The conformance cases (`growthbook-cases.json`) and the non-ASCII vectors the
 * Python module is tested with run against this file too (test/assignment.test.mjs,
 * tests/browser/test_browser_sdk_assignment.py); change both together.
 *
 * Hashing is FNV-1a 32-bit over UTF-16 code units (`charCodeAt`), as GrowthBook's
 * JavaScript SDK does: an emoji contributes its two surrogates.
 */

/** A half-open interval `[start, end)` of hash values that select one variant. */
export type BucketRange = [number, number];

/** `[namespaceId, start, end]`: a unit is in it when its namespace hash is in `[start, end)`. */
export type Namespace = [string, number, number];

/** FNV-1a 32-bit of `text` over its UTF-16 code units; an unsigned 32-bit integer. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  }
  return h >>> 0;
}

/**
 * GrowthBook's `hash(seed, value, version)`: a number in `[0, 1)`, or null for an
 * unknown version (the unit then stays out of the experiment).
 */
export function hashValue(seed: string, value: string, version: number): number | null {
  if (version === 2) return (fnv1a32(String(fnv1a32(seed + value))) % 10000) / 10000;
  if (version === 1) return (fnv1a32(value + seed) % 1000) / 1000;
  return null;
}

/** Whether `userId` falls in `namespace`: hash version 1, seed `"__" + id`, half-open range. */
export function inNamespace(userId: string, namespace: Namespace): boolean {
  const n = hashValue("__" + namespace[0], userId, 1);
  return n !== null && namespace[1] <= n && n < namespace[2];
}

/** `numVariations` equal weights summing to 1; empty below 1. */
export function getEqualWeights(numVariations: number): number[] {
  if (numVariations < 1) return [];
  return new Array<number>(numVariations).fill(1 / numVariations);
}

/**
 * `weights` when they are one finite, non-negative weight per variation summing
 * to 1 within 0.01 (a left-to-right sum, as GrowthBook's reduce); equal weights otherwise.
 */
function normalisedWeights(numVariations: number, weights?: readonly number[] | null): number[] {
  if (weights && weights.length === numVariations) {
    let total = 0;
    let valid = true;
    for (const w of weights) {
      if (!(Number.isFinite(w) && w >= 0)) valid = false;
      total += w;
    }
    if (valid && total >= 0.99 && total <= 1.01) return weights.slice();
  }
  return getEqualWeights(numVariations);
}

/**
 * GrowthBook's `getBucketRanges`: one `[start, end)` per variation. Coverage is
 * clamped to [0, 1]; variation i starts at the cumulative weight before it and
 * covers `coverage * weights[i]` of its slot.
 */
export function getBucketRanges(
  numVariations: number,
  coverage = 1,
  weights?: readonly number[] | null,
): BucketRange[] {
  const c = Math.min(Math.max(coverage, 0), 1);
  const ranges: BucketRange[] = [];
  let cumulative = 0;
  for (const w of normalisedWeights(numVariations, weights)) {
    const start = cumulative;
    cumulative += w;
    ranges.push([start, start + c * w]);
  }
  return ranges;
}

/** Index of the first range with `start <= n < end`, or -1. */
export function chooseVariation(n: number, ranges: readonly BucketRange[]): number {
  for (let i = 0; i < ranges.length; i++) {
    if (ranges[i][0] <= n && n < ranges[i][1]) return i;
  }
  return -1;
}

/**
 * The variant index of `unitId`, or null when excluded: fewer than two variants,
 * an empty unit id, an unknown hash version, outside `namespace`, or a hash
 * outside the (coverage-reduced) ranges. `seed` defaults to `experimentKey`.
 */
export function assign(
  experimentKey: string,
  unitId: string,
  weights: readonly number[],
  coverage = 1,
  seed?: string | null,
  hashVersion = 2,
  namespace?: Namespace | null,
): number | null {
  if (weights.length < 2 || !unitId) return null;
  if (namespace && !inNamespace(unitId, namespace)) return null;
  const n = hashValue(seed || experimentKey, unitId, hashVersion);
  if (n === null) return null;
  const variant = chooseVariation(n, getBucketRanges(weights.length, coverage, weights));
  return variant >= 0 ? variant : null;
}
