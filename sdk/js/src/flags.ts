/**
 * Feature flags evaluated in the page from GrowthBook's SDK payload, as Sextant's
 * `sextant.schemas.flags` (Python) evaluates them: rules in order, prerequisites, filters and
 * namespaces, force rules with conditions and rollout ranges, experiment rules (with
 * passthrough variations, as holdouts use). No sticky bucketing, URL targeting or bandits.
 */
/* eslint-disable @typescript-eslint/no-explicit-any */
import { chooseVariation, getBucketRanges, hashValue } from "./assignment";
import { evalCondition } from "./conditions";

type Obj = Record<string, any>;

export interface ExperimentResult {
  /** The experiment's key. */
  experiment: string;
  inExperiment: boolean;
  variationId: number;
  /** The variation's `meta.key` (Sextant: the variant id), else its index. */
  key: string;
  value: any;
  hashUsed: boolean;
  hashAttribute: string;
  hashValue: any;
  passthrough: boolean;
}

export interface FeatureResult {
  value: any;
  on: boolean;
  off: boolean;
  /** `defaultValue`, `force`, `experiment`, `unknownFeature`, `prerequisite`, `cyclicPrerequisite`. */
  source: string;
  ruleId: string;
  experimentResult?: ExperimentResult;
  /** Every experiment that bucketed the unit on the way (a holdout's passthrough group included): log each once. */
  exposures: ExperimentResult[];
}

interface Ctx {
  features: Obj;
  attributes: Obj;
  groups: Obj;
  forced: Obj;
  stack: Set<string>;
  exposures: ExperimentResult[];
}

function result(value: any, source: string, ruleId = "", exp?: ExperimentResult): FeatureResult {
  const r: FeatureResult = { value, on: !!value, off: !value, source, ruleId, exposures: [] };
  if (exp) r.experimentResult = exp;
  return r;
}

function hashAttr(ctx: Ctx, attr?: string): [string, any] {
  const name = attr || "id";
  return [name, ctx.attributes[name] || ""];
}

function inRange(n: number, range: number[]): boolean {
  return n >= range[0] && n < range[1];
}

function filteredOut(filters: Obj[], ctx: Ctx): boolean {
  return filters.some((f) => {
    const value = hashAttr(ctx, f.attribute)[1];
    if (!value) return true;
    const n = hashValue(f.seed, value + "", f.hashVersion || 2);
    return n === null || !f.ranges.some((r: number[]) => inRange(n, r));
  });
}

/** Feature `key` for a unit with `attributes`, from a payload's `features`. */
export function evaluate(
  features: Obj,
  key: string,
  attributes: Obj,
  savedGroups?: Obj | null,
  forcedVariations?: Obj | null,
): FeatureResult {
  const ctx: Ctx = { features, attributes, groups: savedGroups || {}, forced: forcedVariations || {}, stack: new Set(), exposures: [] };
  const r = feature(ctx, key);
  r.exposures = ctx.exposures;
  return r;
}

function parents(conditions: Obj[], ctx: Ctx): string {
  const evaluated = new Set(ctx.stack);
  for (const p of conditions) {
    ctx.stack = new Set(evaluated);
    const parent = feature(ctx, p.id);
    if (parent.source === "cyclicPrerequisite") return "cyclic";
    if (!evalCondition({ value: parent.value }, p.condition || {}, ctx.groups)) return p.gate ? "gate" : "fail";
  }
  return "pass";
}

function feature(ctx: Ctx, key: string): FeatureResult {
  if (ctx.stack.has(key)) return result(null, "cyclicPrerequisite");
  ctx.stack.add(key);
  const f = ctx.features[key];
  if (!f) return result(null, "unknownFeature");
  const evaluated = new Set(ctx.stack);
  for (const rule of f.rules || []) {
    if (rule.parentConditions) {
      const verdict = parents(rule.parentConditions, ctx);
      if (verdict === "cyclic") return result(null, "cyclicPrerequisite");
      if (verdict === "gate") return result(null, "prerequisite");
      if (verdict === "fail") continue;
      ctx.stack = new Set(evaluated);
    }
    if (rule.filters && filteredOut(rule.filters, ctx)) continue;
    if ("force" in rule) {
      if (rule.condition && !evalCondition(ctx.attributes, rule.condition, ctx.groups)) continue;
      if (!inRollout(ctx, rule, rule.seed || key)) continue;
      return result(rule.force, "force", rule.id);
    }
    if (!rule.variations) continue;
    const exp = run(Object.assign({}, rule, { key: rule.key || key }), ctx);
    if (exp.hashUsed && exp.inExperiment) ctx.exposures.push(exp);
    if (exp.inExperiment && !exp.passthrough) return result(exp.value, "experiment", rule.id, exp);
  }
  return result(f.defaultValue === undefined ? null : f.defaultValue, "defaultValue");
}

function inRollout(ctx: Ctx, rule: Obj, seed: string): boolean {
  const { range, coverage } = rule;
  if (!range && coverage === undefined) return true;
  if (!range && coverage === 0) return false;
  const value = hashAttr(ctx, rule.hashAttribute)[1];
  if (!value) return false;
  const n = hashValue(seed, value + "", rule.hashVersion || 1);
  return n !== null && (range ? inRange(n, range) : n <= coverage);
}

function outcome(exp: Obj, index: number, hashUsed: boolean, ctx: Ctx): ExperimentResult {
  const inExperiment = index >= 0 && index < exp.variations.length;
  if (!inExperiment) index = 0;
  const meta = (exp.meta && exp.meta[index]) || {};
  const [hashAttribute, value] = hashAttr(ctx, exp.hashAttribute);
  return {
    experiment: exp.key,
    inExperiment,
    variationId: index,
    key: meta.key || "" + index,
    value: exp.variations[index],
    hashUsed,
    hashAttribute,
    hashValue: value,
    passthrough: !!meta.passthrough,
  };
}

/** Run one experiment in GrowthBook's format (`key`, `variations`, …) for a unit. */
export function runExperiment(exp: Obj, attributes: Obj, features?: Obj, savedGroups?: Obj, forced?: Obj): ExperimentResult {
  return run(exp, { features: features || {}, attributes, groups: savedGroups || {}, forced: forced || {}, stack: new Set(), exposures: [] });
}

function run(exp: Obj, ctx: Ctx): ExperimentResult {
  const out = () => outcome(exp, -1, false, ctx);
  const key = exp.key;
  if (exp.variations.length < 2) return out();
  if (key in ctx.forced) return outcome(exp, ctx.forced[key], false, ctx);
  if (exp.status === "draft" || exp.active === false) return out();
  const value = hashAttr(ctx, exp.hashAttribute)[1];
  if (!value) return out();
  if (exp.filters) {
    if (filteredOut(exp.filters, ctx)) return out();
  } else if (exp.namespace) {
    const n = hashValue("__" + exp.namespace[0], value + "", 1);
    if (n === null || n < exp.namespace[1] || n >= exp.namespace[2]) return out();
  }
  if (exp.condition && !evalCondition(ctx.attributes, exp.condition, ctx.groups)) return out();
  if (exp.parentConditions && parents(exp.parentConditions, ctx) !== "pass") return out();
  const n = hashValue(exp.seed || key, value + "", exp.hashVersion || 1);
  if (n === null) return out();
  const ranges = exp.ranges || getBucketRanges(exp.variations.length, exp.coverage === undefined ? 1 : exp.coverage, exp.weights);
  const assigned = chooseVariation(n, ranges);
  if (assigned < 0) return out();
  if ("force" in exp) return outcome(exp, exp.force === undefined || exp.force === null ? -1 : exp.force, false, ctx);
  if (exp.status === "stopped") return out();
  return outcome(exp, assigned, true, ctx);
}
