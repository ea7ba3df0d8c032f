/**
 * @sextant/browser/experiments: which variant of an experiment a unit sees, assigned in
 * the page exactly as Sextant's server, its Python SDK and GrowthBook's SDKs assign it.
 *
 * ```ts
 * import { init } from "@sextant/browser";
 * import { getVariant, experimentsReady } from "@sextant/browser/experiments";
 * init("WRITE_KEY", { host: "https://collector.example.com" });
 * await experimentsReady();
 * if (getVariant("new-checkout") === "one-page") { ... }
 * ```
 */
import { assign } from "./assignment";
import { defaultClient, Sextant } from "./index";

export {
  assign,
  chooseVariation,
  fnv1a32,
  getBucketRanges,
  getEqualWeights,
  hashValue,
  inNamespace,
} from "./assignment";
export type { BucketRange, Namespace } from "./assignment";

export const EXPERIMENT_VIEWED = "Experiment Viewed";
const DEFINITIONS_PATH = "/v1/experiments/definitions";
/** Exposures remembered per browser (the oldest are forgotten first). */
const MAX_EXPOSURES = 1000;
/** Definitions kept from an earlier visit are used until the first fetch, if this recent. */
const CACHE_MS = 7 * 24 * 3600 * 1000;
const RETRY_MS = 10000;

export interface Variant {
  id: string;
  name?: string;
  weight: number;
}

/** One experiment as the definitions endpoint sends it. */
export interface Definition {
  id: string;
  variants: Variant[];
  coverage: number;
  seed: string | null;
  hash_version: number;
  unit: "userId" | "anonymousId";
  /** Milliseconds since the epoch, or null. */
  start: number | null;
  stop: number | null;
}

/**
 * The experiments of the write key's project and the assignment of their variants.
 *
 * Definitions come from `GET {host}/v1/experiments/definitions?writeKey=...` when the
 * client is initialised, and are refreshed every `refreshInterval` (every 10 s while
 * failing); the last copy is kept in localStorage, so a returning visitor's `getVariant`
 * answers at once, before the first fetch. The request is a CORS-simple GET made with
 * `cache: "no-cache"`: the browser revalidates its copy with `If-None-Match` and a 304
 * costs no body (sending If-None-Match by hand would force a preflight).
 */
export class Experiments {
  private definitions: Record<string, Definition> = Object.create(null);
  private text: string | null = null;
  private seen: string[] = [];
  private started = false;
  private timer: unknown = undefined;
  private firstFetch: Promise<void> | null = null;
  private settle: () => void = () => undefined;

  /** Starts (fetches) when `client` is initialised, or at once if it is. */
  constructor(private readonly client: Sextant) {
    this.firstFetch = new Promise((resolve) => (this.settle = resolve));
    client.use(() => this.start());
  }

  /** Load the stored copy and start fetching (once the client is initialised). */
  start(): void {
    const store = this.client.store;
    if (this.started || !store) return;
    this.started = true;
    const cached = read(store.get(this.key("d")));
    if (cached && typeof cached.t === "number" && this.client.env.now() - cached.t < CACHE_MS) {
      this.load(String(cached.body));
    }
    const seen = read(store.get(this.key("x")));
    if (Array.isArray(seen)) this.seen = seen.filter((s) => typeof s === "string");
    void this.refresh();
  }

  /**
   * The id of the variant `unit` is assigned in `experimentKey`, or null (show the default
   * experience) when the experiment is unknown, not running (before `start`, from `stop`),
   * or leaves the unit out (coverage). `unit` defaults to the user id for experiments whose
   * unit is `userId` (the anonymous id until `identify`), and to the anonymous id otherwise.
   * The first assignment of a unit to an experiment in this browser tracks `Experiment Viewed`.
   */
  getVariant(experimentKey: string, unit?: string): string | null {
    const experiment = this.definitions[experimentKey];
    if (!experiment) return null;
    const now = this.client.env.now();
    if ((experiment.start !== null && now < experiment.start) || (experiment.stop !== null && now >= experiment.stop)) {
      return null;
    }
    const unitId =
      unit !== undefined && unit !== null
        ? String(unit)
        : (experiment.unit === "userId" && this.client.userId()) || this.client.anonymousId();
    const index = assign(
      experiment.id,
      unitId,
      experiment.variants.map((v) => v.weight),
      experiment.coverage,
      experiment.seed,
      experiment.hash_version,
    );
    if (index === null) return null;
    const variant = experiment.variants[index].id;
    const options = this.client.options;
    const track = !(options && options.experiments && options.experiments.trackExposures === false);
    if (track && this.firstExposure(experiment.id + "\n" + unitId)) {
      this.client.track(EXPERIMENT_VIEWED, { experiment_id: experiment.id, variation_id: variant });
    }
    return variant;
  }

  /** The experiment `key` as last fetched, or undefined. */
  definition(key: string): Definition | undefined {
    return this.definitions[key];
  }

  /** Resolves once the first fetch has finished (either way), or after `timeoutMs` (default 2000). */
  ready(timeoutMs = 2000): Promise<void> {
    return Promise.race([
      this.firstFetch as Promise<void>,
      new Promise<void>((resolve) => this.client.env.setTimeout(resolve, timeoutMs)),
    ]);
  }

  /** Fetch the definitions now; on failure keep the current ones. Resolves true on success. */
  async refresh(): Promise<boolean> {
    const { env, options, writeKey } = this.client;
    if (!options) return false;
    if (this.timer !== undefined) env.clearTimeout(this.timer);
    const url = `${options.host.replace(/\/+$/, "")}${DEFINITIONS_PATH}?writeKey=${encodeURIComponent(writeKey)}`;
    let ok = false;
    try {
      const response = await env.window.fetch(url, { cache: "no-cache", credentials: "omit" });
      if (response.status === 304) {
        ok = true;
      } else if (response.ok) {
        const text = await response.text();
        if (text !== this.text) {
          this.load(text, true);
          if (this.client.store) this.client.store.set(this.key("d"), JSON.stringify({ t: env.now(), body: text }));
        }
        ok = true;
      } else {
        this.failed(`HTTP ${response.status}`);
      }
    } catch (error) {
      this.failed(String(error));
    }
    this.settle();
    const exp = options.experiments;
    const interval = exp && exp.refreshInterval && exp.refreshInterval > 0 ? exp.refreshInterval : 60000;
    this.timer = env.setTimeout(() => void this.refresh(), ok ? interval : Math.min(interval, RETRY_MS));
    return ok;
  }

  private load(text: string, strict = false): void {
    const documents = read(text);
    if (!Array.isArray(documents)) {
      if (strict) throw new Error("the definitions endpoint must answer a JSON list");
      return;
    }
    const definitions: Record<string, Definition> = Object.create(null);
    for (const document of documents) {
      const definition = parseDefinition(document);
      if (definition) definitions[definition.id] = definition;
    }
    this.definitions = definitions;
    this.text = text;
  }

  private failed(message: string): void {
    this.client.report({
      reason: "http_status",
      message: `could not refresh experiment definitions (keeping the last): ${message}`,
      events: [],
    });
  }

  private firstExposure(key: string): boolean {
    if (this.seen.indexOf(key) >= 0) return false;
    this.seen.push(key);
    if (this.seen.length > MAX_EXPOSURES) this.seen.splice(0, this.seen.length - MAX_EXPOSURES);
    if (this.client.store) this.client.store.set(this.key("x"), JSON.stringify(this.seen));
    return true;
  }

  private key(kind: string): string {
    return `sextant:${kind}:${this.client.writeKey}`;
  }
}

/** A definition from the endpoint's JSON, or null when it is not one this SDK can assign. */
export function parseDefinition(document: unknown): Definition | null {
  if (!document || typeof document !== "object") return null;
  const d = document as Record<string, unknown>;
  if (typeof d.id !== "string" || !Array.isArray(d.variants) || d.variants.length < 2) return null;
  const variants: Variant[] = [];
  for (const v of d.variants as Array<Record<string, unknown>>) {
    if (!v || typeof v.id !== "string" || typeof v.weight !== "number") return null;
    variants.push({ id: v.id, name: typeof v.name === "string" ? v.name : undefined, weight: v.weight });
  }
  const start = time(d.start);
  const stop = time(d.stop);
  if (start === undefined || stop === undefined) return null;
  return {
    id: d.id,
    variants,
    coverage: typeof d.coverage === "number" ? d.coverage : 1,
    seed: typeof d.seed === "string" ? d.seed : null,
    hash_version: typeof d.hash_version === "number" ? d.hash_version : 2,
    unit: d.unit === "anonymousId" ? "anonymousId" : "userId",
    start,
    stop,
  };
}

/** Milliseconds of an ISO 8601 time (UTC when it names no offset), null for null, undefined if unreadable. */
function time(value: unknown): number | null | undefined {
  if (value === null || value === undefined) return null;
  if (typeof value !== "string") return undefined;
  const zoned = /(Z|[+-]\d\d:?\d\d)$/i.test(value) ? value : value + "Z";
  const ms = Date.parse(zoned);
  return isNaN(ms) ? undefined : ms;
}

function read(text: string | null): any {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

let shared: Experiments | undefined;

/** The experiments of the package's shared client (`init`). */
export function experiments(): Experiments {
  if (!shared) shared = new Experiments(defaultClient);
  return shared;
}

// Importing this module is what makes `init` fetch the definitions.
experiments();

export const getVariant = (experimentKey: string, unit?: string): string | null =>
  experiments().getVariant(experimentKey, unit);
export const experimentsReady = (timeoutMs?: number): Promise<void> => experiments().ready(timeoutMs);
export const refreshExperiments = (): Promise<boolean> => experiments().refresh();
