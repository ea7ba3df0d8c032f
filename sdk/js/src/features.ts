/**
 * @sextant/browser/features: feature flags evaluated in the page, from the definitions of the
 * environment's client key, kept current by the collector's stream.
 *
 * ```ts
 * import { init } from "@sextant/browser";
 * import { featuresReady, isOn, getFeatureValue } from "@sextant/browser/features";
 * init("WRITE_KEY", { host: "https://collector.example.com", features: { clientKey: "sdk-..." } });
 * await featuresReady();
 * if (isOn("one-page-checkout")) { ... }
 * ```
 */
/* eslint-disable @typescript-eslint/no-explicit-any */
import { evaluate, FeatureResult } from "./flags";
import { defaultClient, Sextant } from "./index";

export { evalCondition, getPath, paddedVersion } from "./conditions";
export { evaluate, runExperiment } from "./flags";
export type { ExperimentResult, FeatureResult } from "./flags";

const CACHE_MS = 7 * 24 * 3600 * 1000;
const MAX_EXPOSURES = 1000;

/**
 * The features of the client key's environment. The payload (GrowthBook's SDK format) comes
 * from `GET {host}/api/features/{clientKey}` at init, then from `{host}/sub/{clientKey}`
 * (Server-Sent Events) at every change; while the stream is down it is fetched every
 * `refreshInterval`. The last copy is kept in localStorage, so a returning visitor's flags
 * answer before the first fetch. Evaluation makes no network call.
 */
export class Features {
  private features: Record<string, any> = Object.create(null);
  private started = false;
  private source: any = null;
  private timer: unknown = undefined;
  private seen: string[] = [];
  private firstFetch: Promise<void>;
  private settle: () => void = () => undefined;

  constructor(private readonly client: Sextant) {
    this.firstFetch = new Promise((resolve) => (this.settle = resolve));
    client.use(() => this.start());
  }

  private opts(): any {
    const o = this.client.options;
    return (o && o.features) || null;
  }

  start(): void {
    const opts = this.opts();
    const store = this.client.store;
    if (this.started || !opts || !store) return;
    this.started = true;
    const cached = read(store.get(this.key("f")));
    if (cached && this.client.env.now() - cached.t < CACHE_MS && cached.f) this.features = cached.f;
    const seen = read(store.get(this.key("fx")));
    if (Array.isArray(seen)) this.seen = seen;
    void this.refresh().then(() => this.stream());
  }

  /** Evaluate `key` for the current visitor (its user id, else anonymous id, as `id`). */
  evaluateFeature(key: string, attributes?: Record<string, unknown>): FeatureResult {
    const client = this.client;
    const opts = this.opts();
    const attrs: Record<string, any> = Object.assign(
      { id: client.userId() || client.anonymousId(), anonymousId: client.anonymousId() },
      opts && opts.attributes,
      attributes,
    );
    const result = evaluate(this.features, key, attrs);
    const o = client.options;
    const track = !(o && o.experiments && o.experiments.trackExposures === false);
    for (const exp of track ? result.exposures : []) {
      if (this.first(exp.experiment + "\n" + exp.hashValue)) {
        client.track("Experiment Viewed", { experiment_id: exp.experiment, variation_id: exp.key, feature: key });
      }
    }
    return result;
  }

  getFeatureValue<T>(key: string, fallback: T, attributes?: Record<string, unknown>): T {
    const value = this.evaluateFeature(key, attributes).value;
    return value === null || value === undefined ? fallback : value;
  }

  isOn(key: string, attributes?: Record<string, unknown>): boolean {
    return this.evaluateFeature(key, attributes).on;
  }

  /** Resolves once the first fetch has finished (either way), or after `timeoutMs` (default 2000). */
  ready(timeoutMs = 2000): Promise<void> {
    return Promise.race([
      this.firstFetch,
      new Promise<void>((resolve) => this.client.env.setTimeout(resolve, timeoutMs)),
    ]);
  }

  /** Fetch the payload now; on failure keep the current features. Resolves true on success. */
  async refresh(): Promise<boolean> {
    const opts = this.opts();
    const env = this.client.env;
    if (!opts) return false;
    let ok = false;
    try {
      const response = await env.window.fetch(this.url("/api/features/"), { cache: "no-cache", credentials: "omit" });
      if (response.ok) ok = await this.load(await response.text());
      else this.failed(`HTTP ${response.status}`);
    } catch (error) {
      this.failed(String(error));
    }
    this.settle();
    if (this.timer !== undefined) env.clearTimeout(this.timer);
    const interval = opts.refreshInterval > 0 ? opts.refreshInterval : 60000;
    this.timer = env.setTimeout(() => {
      // The stream keeps the features current while it is open; poll only when it is not.
      if (!this.source || this.source.readyState !== 1) void this.refresh();
      else this.timer = env.setTimeout(() => void this.refresh(), interval);
    }, interval);
    return ok;
  }

  private stream(): void {
    const opts = this.opts();
    const ES = (this.client.env.window as any).EventSource;
    if (!opts || opts.streaming === false || !ES || this.source) return;
    this.source = new ES(this.url("/sub/"));
    this.source.addEventListener("features", (event: any) => void this.load(event.data));
    this.source.addEventListener("features-updated", () => void this.refresh());
  }

  private async load(text: string): Promise<boolean> {
    const payload = read(text);
    if (!payload || typeof payload !== "object") return false;
    let features = payload.features;
    if (typeof payload.encryptedFeatures === "string") {
      const key = this.opts() && this.opts().decryptionKey;
      try {
        features = JSON.parse(await decrypt(this.client.env.window, payload.encryptedFeatures, key || ""));
      } catch (error) {
        this.failed(`cannot decrypt the features: ${String(error)}`);
        return false;
      }
    }
    if (!features || typeof features !== "object") return false;
    this.features = features;
    const store = this.client.store;
    if (store) store.set(this.key("f"), JSON.stringify({ t: this.client.env.now(), f: features }));
    return true;
  }

  private url(path: string): string {
    const { host } = this.client.options!;
    return `${host.replace(/\/+$/, "")}${path}${encodeURIComponent(this.opts().clientKey)}`;
  }

  private failed(message: string): void {
    this.client.report({ reason: "http_status", message: `could not refresh features (keeping the last): ${message}`, events: [] });
  }

  private first(key: string): boolean {
    if (this.seen.indexOf(key) >= 0) return false;
    this.seen.push(key);
    if (this.seen.length > MAX_EXPOSURES) this.seen.splice(0, this.seen.length - MAX_EXPOSURES);
    if (this.client.store) this.client.store.set(this.key("fx"), JSON.stringify(this.seen));
    return true;
  }

  private key(kind: string): string {
    return `sextant:${kind}:${this.opts().clientKey}`;
  }
}

function bytes(b64: string): Uint8Array<ArrayBuffer> {
  const text = atob(b64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** GrowthBook's encrypted payload field: `base64(iv).base64(ciphertext)`, AES-128-CBC. */
export async function decrypt(win: Window, encrypted: string, key: string): Promise<string> {
  const subtle = win.crypto.subtle;
  const [iv, body] = encrypted.split(".");
  const k = await subtle.importKey("raw", bytes(key), { name: "AES-CBC", length: 128 }, false, ["decrypt"]);
  return new TextDecoder().decode(await subtle.decrypt({ name: "AES-CBC", iv: bytes(iv) }, k, bytes(body)));
}

function read(text: string | null): any {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

let shared: Features | undefined;

/** The features of the package's shared client (`init`). */
export function features(): Features {
  if (!shared) shared = new Features(defaultClient);
  return shared;
}

// Importing this module is what makes `init` fetch the features.
features();

export const isOn = (key: string, attributes?: Record<string, unknown>): boolean => features().isOn(key, attributes);
export const getFeatureValue = <T>(key: string, fallback: T, attributes?: Record<string, unknown>): T =>
  features().getFeatureValue(key, fallback, attributes);
export const evaluateFeature = (key: string, attributes?: Record<string, unknown>): FeatureResult =>
  features().evaluateFeature(key, attributes);
export const featuresReady = (timeoutMs?: number): Promise<void> => features().ready(timeoutMs);
export const refreshFeatures = (): Promise<boolean> => features().refresh();
