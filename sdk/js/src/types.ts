/** JSON-serialisable values: what properties, traits and context may hold. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type Properties = Record<string, unknown>;

export type EventType = "track" | "identify" | "page" | "screen" | "group" | "alias";

/** One event as it travels to the collector (Segment's Tracking API shape). */
export interface SextantEvent {
  type: EventType;
  event?: string;
  name?: string;
  userId?: string;
  anonymousId: string;
  previousId?: string;
  groupId?: string;
  properties?: Properties;
  traits?: Properties;
  context: Properties;
  timestamp: string;
  messageId: string;
}

/** The collector's explanation of one refused field. */
export interface FieldProblem {
  field: string;
  message: string;
}

/**
 * Why events will not arrive (or, for `storage`, may not survive a reload):
 *
 * - `rejected`: the collector refused these events one by one (its 200 answer lists them);
 * - `http_status`: the collector refused the whole batch (400, 401, 403, 413, other 4xx);
 * - `gave_up`: `maxAttempts` attempts failed (network errors, 5xx, 429);
 * - `queue_full`: `maxQueueSize` events were waiting; the oldest were dropped;
 * - `too_large`: one event is over the collector's 32 KB limit, so it was never queued;
 * - `invalid`: the event could not be serialised to JSON (a cycle, a BigInt), so it was never queued;
 * - `storage`: localStorage refused a write (quota, privacy mode); events stay in memory.
 */
export type FailureReason =
  | "rejected"
  | "http_status"
  | "gave_up"
  | "queue_full"
  | "too_large"
  | "invalid"
  | "storage";

export interface DeliveryError {
  reason: FailureReason;
  message: string;
  /** The events that will not arrive (empty for `storage`). */
  events: SextantEvent[];
  /** The HTTP status of the answer that decided it, when there was one. */
  status?: number;
  /** For `rejected`: the collector's problems, by messageId. */
  problems?: Record<string, FieldProblem[]>;
}

/** Options of the optional experiments module (`@sextant/browser/experiments`). */
export interface ExperimentOptions {
  /** Milliseconds between background refreshes of the definitions (default 60 000). */
  refreshInterval?: number;
  /** Track `Experiment Viewed` on a unit's first assignment (default true). */
  trackExposures?: boolean;
}

/** Options of the optional features module (`@sextant/browser/features`). */
export interface FeatureOptions {
  /** The environment's client key (`sdk-...`): it reads the features payload and nothing else. */
  clientKey: string;
  /** The client key's decryption key, when its payload is encrypted. */
  decryptionKey?: string;
  /** Follow the collector's stream of changes (default true, where `EventSource` exists). */
  streaming?: boolean;
  /** Milliseconds between refreshes while the stream is down (default 60 000). */
  refreshInterval?: number;
  /** Attributes every evaluation sees (rules' conditions test them), besides `id` and `anonymousId`. */
  attributes?: Record<string, unknown>;
}

export type Persistence = "cookie+localStorage" | "localStorage" | "memory";

export interface InitOptions {
  /** The collector's base URL, e.g. `https://collector.example.com` (required). */
  host: string;
  /** Send a batch as soon as this many events wait (default 20). */
  flushAt?: number;
  /** Milliseconds a partial batch may wait (default 2000). */
  flushInterval?: number;
  /** Events that may wait, in memory and in localStorage (default 1000); the oldest go first. */
  maxQueueSize?: number;
  /** Largest batch body in bytes; capped below the browser's 64 KB keepalive limit (default 60 000). */
  maxBatchBytes?: number;
  /** Attempts per event before it is reported as `gave_up` (default 10). */
  maxAttempts?: number;
  /** Milliseconds of the first retry's backoff ceiling, doubled per failure (default 1000). */
  retryBaseDelay?: number;
  /** Largest backoff in milliseconds (default 60 000). */
  retryMaxDelay?: number;
  /** A page view at init and on every SPA navigation (pushState, replaceState, popstate); default true. */
  trackPages?: boolean;
  /** Where the anonymous id, the user id and the queue live (default `cookie+localStorage`). */
  persistence?: Persistence;
  /** Cookie domain, e.g. `.example.com` to share the anonymous id across subdomains. */
  cookieDomain?: string;
  /** Cookie lifetime in days (default 365). */
  cookieDays?: number;
  /** Send what is waiting with `navigator.sendBeacon` when the page is hidden or left (default true). */
  beacon?: boolean;
  /** Called with every failure; nothing is thrown into the page. */
  onError?: (error: DeliveryError) => void;
  /** Options of the experiments module, when it is loaded. */
  experiments?: ExperimentOptions;
  /** Options of the features module, when it is loaded. */
  features?: FeatureOptions;
}

/** Counters since init. */
export interface Stats {
  /** Events accepted by the collector (or handed to the browser in a beacon). */
  delivered: number;
  rejected: number;
  failed: number;
  dropped: number;
  retries: number;
  batches: number;
  beacons: number;
  /** Events waiting now. */
  pending: number;
}
