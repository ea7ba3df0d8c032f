/**
 * GrowthBook's condition language, as Sextant's `sextant.schemas.conditions` (Python) evaluates
 * it: which units a feature rule targets by their attributes. JavaScript's own coercions are the
 * semantics (GrowthBook's reference SDK relies on them); GrowthBook's `evalCondition`
 * conformance cases pass against both.
 */
/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = Record<string, any>;
type Groups = Obj;

const regexes: Record<string, RegExp> = {};

export function evalCondition(attributes: any, condition: Obj, groups?: Groups | null): boolean {
  try {
    return cond(attributes, condition, groups || {}, []);
  } catch {
    return false;
  }
}

function cond(obj: any, condition: Obj, groups: Groups, seen: string[]): boolean {
  for (const k of Object.keys(condition)) {
    const v = condition[k];
    if (k === "$or" ? !or(obj, v, groups, seen)
      : k === "$nor" ? or(obj, v, groups, seen)
      : k === "$and" ? !v.every((c: Obj) => cond(obj, c, groups, seen))
      : k === "$not" ? cond(obj, v, groups, seen)
      : k === "$savedGroup" ? !savedGroup(obj, v, groups, seen)
      : !value(v, getPath(obj, k), groups, seen)) return false;
  }
  return true;
}

function or(obj: any, conditions: Obj[], groups: Groups, seen: string[]): boolean {
  return !conditions.length || conditions.some((c) => cond(obj, c, groups, seen));
}

function savedGroup(obj: any, ref: any, groups: Groups, seen: string[]): boolean {
  if (!ref || typeof ref !== "object" || Array.isArray(ref)) return false;
  const { id, attributeKey } = ref;
  if (typeof id !== "string" || seen.indexOf(id) >= 0) return false;
  if (attributeKey !== undefined && typeof attributeKey !== "string") return false;
  const entry = groups[id];
  if (!entry || Array.isArray(entry) || typeof entry !== "object") return false;
  if (entry.type === "list") {
    const key = attributeKey ?? entry.attributeKey;
    return typeof key === "string" && Array.isArray(entry.values) && isIn(getPath(obj, key), entry.values);
  }
  if (entry.type === "condition") {
    return !!entry.condition && typeof entry.condition === "object" && cond(obj, entry.condition, groups, seen.concat(id));
  }
  return false;
}

export function getPath(obj: any, path: string): any {
  let current = obj;
  for (const part of path.split(".")) {
    if (current && typeof current === "object" && part in current) current = current[part];
    else return null;
  }
  return current;
}

function isOperators(obj: Obj): boolean {
  const keys = Object.keys(obj);
  return keys.length > 0 && keys.every((k) => k[0] === "$");
}

function value(expected: any, actual: any, groups: Groups, seen: string[], fold = false): boolean {
  if (typeof expected === "string") {
    return fold ? String(actual).toLowerCase() === expected.toLowerCase() : actual + "" === expected;
  }
  if (typeof expected === "number") return actual * 1 === expected;
  if (typeof expected === "boolean") return actual !== null && !!actual === expected;
  if (expected === null) return actual === null;
  if (Array.isArray(expected) || !isOperators(expected)) return JSON.stringify(actual) === JSON.stringify(expected);
  for (const op in expected) if (!operator(op, actual, expected[op], groups, seen)) return false;
  return true;
}

function isIn(actual: any, expected: any[], fold = false): boolean {
  const f = (v: any) => (fold && typeof v === "string" ? v.toLowerCase() : v);
  const one = (a: any) => (fold ? expected.some((e) => f(a) === f(e)) : expected.includes(a));
  return Array.isArray(actual) ? actual.some(one) : one(actual);
}

function groupValues(entry: any): any[] | null {
  if (entry === undefined) return [];
  if (Array.isArray(entry)) return entry;
  if (entry && typeof entry === "object" && entry.type === "list") return Array.isArray(entry.values) ? entry.values : null;
  return null;
}

function inAll(actual: any, expected: any[], groups: Groups, seen: string[], fold: boolean): boolean {
  return Array.isArray(actual) && expected.every((e) => actual.some((a) => value(e, a, groups, seen, fold)));
}

function typeOf(v: any): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  const t = typeof v;
  return ["string", "number", "boolean", "object", "undefined"].indexOf(t) >= 0 ? t : "unknown";
}

function regex(source: string, fold: boolean): RegExp {
  const key = source + (fold ? "/i" : "");
  return regexes[key] || (regexes[key] = new RegExp(source.replace(/([^\\])\//g, "$1\\/"), fold ? "i" : undefined));
}

function operator(op: string, actual: any, expected: any, groups: Groups, seen: string[]): boolean {
  if (op.lastIndexOf("$v", 0) === 0) {
    const a = paddedVersion(actual);
    const b = paddedVersion(expected);
    switch (op) {
      case "$veq": return a === b;
      case "$vne": return a !== b;
      case "$vgt": return a > b;
      case "$vgte": return a >= b;
      case "$vlt": return a < b;
      case "$vlte": return a <= b;
    }
  }
  switch (op) {
    case "$eq": return actual === expected;
    case "$ne": return actual !== expected;
    case "$lt": return actual < expected;
    case "$lte": return actual <= expected;
    case "$gt": return actual > expected;
    case "$gte": return actual >= expected;
    case "$exists": return expected ? actual != null : actual == null;
    case "$in": return Array.isArray(expected) && isIn(actual, expected);
    case "$ini": return Array.isArray(expected) && isIn(actual, expected, true);
    case "$nin": return Array.isArray(expected) && !isIn(actual, expected);
    case "$nini": return Array.isArray(expected) && !isIn(actual, expected, true);
    case "$inGroup":
    case "$notInGroup": {
      const values = groupValues(groups[expected]);
      return values !== null && isIn(actual, values) === (op === "$inGroup");
    }
    case "$not": return !value(expected, actual, groups, seen);
    case "$size": return Array.isArray(actual) && value(expected, actual.length, groups, seen);
    case "$elemMatch":
      return Array.isArray(actual) && actual.some((item) =>
        (item ?? null) !== null &&
        (isOperators(expected) ? value(expected, item, groups, seen) : cond(item, expected, groups, seen)));
    case "$all": return Array.isArray(expected) && inAll(actual, expected, groups, seen, false);
    case "$alli": return Array.isArray(expected) && inAll(actual, expected, groups, seen, true);
    case "$regex":
    case "$regexi":
      try {
        return regex(expected, op === "$regexi").test(actual);
      } catch {
        return false;
      }
    case "$type": return typeOf(actual) === expected;
  }
  return false;
}

/** A version as text that compares in version order (`1.10.0` after `1.9.2`, `1.0.0` after `1.0.0-beta`). */
export function paddedVersion(input: any): string {
  if (typeof input === "number") input = input + "";
  if (!input || typeof input !== "string") input = "0";
  const parts = input.replace(/(^v|\+.*$)/g, "").split(/[-.]/);
  if (parts.length === 3) parts.push("~");
  return parts.map((p: string) => (/^[0-9]+$/.test(p) ? p.padStart(5, " ") : p)).join("-");
}
