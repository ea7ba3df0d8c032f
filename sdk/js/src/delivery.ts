import type { Env } from "./env";
import { utf8Length } from "./env";
import type { Store } from "./storage";
import type { DeliveryError, FailureReason, FieldProblem, SextantEvent, Stats } from "./types";

/** The collector's limit for one event (Segment's 32 KB). */
export const MAX_EVENT_BYTES = 32 * 1024;
/**
 * Chrome refuses a keepalive request (fetch `keepalive`, sendBeacon) once the bodies of
 * the page's keepalive requests in flight would pass 64 KiB; stay under it.
 */
export const KEEPALIVE_BYTES = 64000;
/** A queue another page left without closing is taken over after this long. */
const ORPHAN_AFTER_MS = 10 * 60 * 1000;
const BATCH_OVERHEAD = 120;
const BEACON_DRAIN_MS = 10000;

export interface DeliveryOptions {
  flushAt: number;
  flushInterval: number;
  maxQueueSize: number;
  maxBatchBytes: number;
  maxAttempts: number;
  retryBaseDelay: number;
  retryMaxDelay: number;
  beacon: boolean;
}

interface Item {
  id: string;
  json: string;
  bytes: number;
  attempts: number;
  sending: boolean;
  /** Its localStorage key once written, else "". */
  key: string;
}

/**
 * The queue of events not yet answered for, and their delivery to `POST {host}/v1/batch`.
 *
 * Every event waits in memory and in this page's localStorage entry until the collector
 * answered for it (or the browser took it in a beacon), so a reload, a closed tab or an
 * offline period loses nothing: the next page of the site takes over entries that their
 * page closed (or left for more than ten minutes) and sends them. Delivery is at least
 * once: an event may be sent again (a keepalive request still running when the page
 * closed, two tabs taking over the same entry), always with its `messageId`, which is
 * what the warehouse deduplicates on.
 *
 * One request is in flight at a time. Retryable failures (network errors, 408, 429, 5xx)
 * back off exponentially with full jitter, or wait exactly the collector's `Retry-After`;
 * other refusals, per-event rejections, and events out of attempts are final and go to
 * `onError`.
 */
export class Delivery {
  readonly counts: Omit<Stats, "pending"> = {
    delivered: 0,
    rejected: 0,
    failed: 0,
    dropped: 0,
    retries: 0,
    batches: 0,
    beacons: 0,
  };
  private items: Item[] = [];
  private sending: Promise<void> | null = null;
  /** Events in the request in flight. */
  private flying = 0;
  private timer: unknown = undefined;
  private due = 0;
  private retryAt = 0;
  private failures = 0;
  private persistTimer: unknown = undefined;
  /** Keys of answered events still to remove from localStorage. */
  private unstore: string[] = [];
  private seq = 0;
  private storageReported = false;
  /** Beacon bytes the browser may still be sending, and when the last beacon went. */
  private beaconBytes = 0;
  private beaconAt = 0;
  /** This page's entry: `{"t": last write, "c": 1 once the page is gone}`. */
  private readonly pageKey: string;
  /** Event keys: prefix + page id + ":" + sequence number. */
  private readonly prefix: string;
  private readonly mine: string;

  constructor(
    private readonly env: Env,
    private readonly store: Store,
    private readonly writeKey: string,
    private readonly url: string,
    private readonly o: DeliveryOptions,
    private readonly report: (error: DeliveryError) => void,
    pageId: string,
  ) {
    this.prefix = `sextant:q:${writeKey}:`;
    this.mine = `${this.prefix}${pageId}:`;
    this.pageKey = `sextant:p:${writeKey}:${pageId}`;
  }

  /** Events waiting, in flight included. */
  get pending(): number {
    return this.items.length;
  }

  /** Queue one serialised event (at most `MAX_EVENT_BYTES`, checked by the caller). */
  add(id: string, json: string): void {
    this.makeRoom(1);
    this.items.push(item(id, json));
    this.persistSoon();
    this.schedule(this.items.length - this.flying >= this.o.flushAt ? 0 : this.o.flushInterval);
  }

  /**
   * Take over the events of pages that were closed (or not heard of for ten minutes),
   * oldest first, then send.
   */
  adopt(): void {
    const now = this.env.now();
    const pages: Record<string, string[]> = {};
    for (const key of this.store.keys(this.prefix)) {
      if (key.indexOf(this.mine) === 0) continue;
      const page = key.slice(this.prefix.length, key.lastIndexOf(":"));
      (pages[page] || (pages[page] = [])).push(key);
    }
    const adopted: Array<Item & { at: string }> = [];
    const known: Record<string, 1> = {};
    for (const it of this.items) known[it.id] = 1;
    for (const page in pages) {
      const pageKey = this.pageKey.slice(0, this.pageKey.lastIndexOf(":") + 1) + page;
      let meta: { t?: number; c?: number } | null = null;
      try {
        meta = JSON.parse(this.store.get(pageKey) || "null");
      } catch {
        /* unreadable: the page is taken over */
      }
      if (meta && !meta.c && typeof meta.t === "number" && now - meta.t < ORPHAN_AFTER_MS) continue;
      for (const key of pages[page]) {
        const json = this.store.get(key);
        this.store.remove(key);
        let event: SextantEvent | null = null;
        try {
          event = json ? JSON.parse(json) : null;
        } catch {
          /* not an event */
        }
        if (!event || typeof event.messageId !== "string" || known[event.messageId]) continue;
        known[event.messageId] = 1;
        const seq = key.slice(key.lastIndexOf(":") + 1);
        adopted.push({ ...item(event.messageId, json as string), at: `${event.timestamp} ${("0000000" + seq).slice(-8)}` });
      }
      this.store.remove(pageKey);
    }
    if (adopted.length) {
      adopted.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      // Older than anything this page made; beyond the bound, the oldest go.
      const room = Math.max(0, this.o.maxQueueSize - this.items.length);
      this.drop(adopted.splice(0, Math.max(0, adopted.length - room)));
      this.items = (adopted as Item[]).concat(this.items);
      this.persist(false);
    }
    if (this.items.length) this.schedule(0);
  }

  /** Send what waits now; resolves when the queue is empty or delivery has to wait (backoff, offline). */
  async flush(): Promise<void> {
    for (;;) {
      if (this.sending) {
        await this.sending;
        continue;
      }
      if (!this.send()) return;
    }
  }

  /** `online` fired: try again now, whatever the backoff said. */
  online(): void {
    this.retryAt = 0;
    this.schedule(0);
  }

  /**
   * The page is being hidden or left: hand what waits to `navigator.sendBeacon` (within
   * the 64 KB keepalive budget the request in flight leaves), and persist the rest with
   * `closed` set when the page is going away, so that the next page takes it over.
   */
  leave(closing: boolean): void {
    const nav = this.env.window.navigator;
    const offline = nav && nav.onLine === false;
    if (this.o.beacon && nav && typeof nav.sendBeacon === "function" && !offline && this.env.now() >= this.retryAt) {
      // Beacons of the same departure (hidden, then pagehide) share the budget; after a
      // while the browser has sent them.
      if (this.env.now() - this.beaconAt > BEACON_DRAIN_MS) this.beaconBytes = 0;
      let budget = KEEPALIVE_BYTES - this.beaconBytes - (this.sending ? this.bytesInFlight() : 0);
      for (;;) {
        const batch = this.take(Number.MAX_SAFE_INTEGER, Math.min(this.o.maxBatchBytes, budget), false);
        if (!batch.length) break;
        const body = this.body(batch);
        const size = utf8Length(body);
        if (size > budget) break;
        let accepted = false;
        try {
          accepted = nav.sendBeacon(this.url, body);
        } catch {
          /* a refused URL or body */
        }
        if (!accepted) break;
        budget -= size;
        this.beaconBytes += size;
        this.beaconAt = this.env.now();
        this.counts.beacons++;
        this.counts.delivered += batch.length;
        this.remove(batch);
      }
    }
    this.persist(closing);
  }

  /** The page came back from the back/forward cache. */
  resume(): void {
    if (this.items.length && this.store.get(this.pageKey) === null) {
      // Another page took this queue over while this one was frozen: the events are its to send.
      this.items = this.items.filter((item) => item.sending);
    }
    this.persist(false);
    if (this.items.length) this.schedule(0);
  }

  // --- sending --------------------------------------------------------------------------

  private schedule(delay: number): void {
    const wait = Math.max(delay, this.retryAt - this.env.now(), 0);
    const due = this.env.now() + wait;
    if (this.timer !== undefined) {
      if (this.due <= due) return;
      this.env.clearTimeout(this.timer);
    }
    this.due = due;
    this.timer = this.env.setTimeout(() => {
      this.timer = undefined;
      this.send();
    }, wait);
  }

  /** Start one request if one may start; true if it did. */
  private send(): boolean {
    if (this.sending) return false;
    const wait = this.retryAt - this.env.now();
    if (wait > 0) {
      if (this.items.length) this.schedule(wait);
      return false;
    }
    const nav = this.env.window.navigator;
    if (nav && nav.onLine === false) return false; // `online` sends
    const batch = this.take(this.o.flushAt, this.o.maxBatchBytes, true);
    if (!batch.length) return false;
    this.counts.batches++;
    this.flying = batch.length;
    const body = this.body(batch);
    let request: Promise<Response>;
    try {
      request = this.env.window.fetch(this.url, {
        method: "POST",
        body,
        // A CORS-simple request: no preflight, and the browser keeps it alive past unload.
        headers: { "Content-Type": "text/plain" },
        keepalive: true,
        credentials: "omit",
      });
    } catch (error) {
      request = Promise.reject(error);
    }
    this.sending = request
      .then(
        (response) => this.answered(batch, response),
        (error: unknown) => this.retry(batch, null, `network error: ${String(error)}`, true),
      )
      .catch((error: unknown) => this.retry(batch, null, `network error: ${String(error)}`, true))
      .then(() => {
        for (const item of batch) item.sending = false;
        this.sending = null;
        this.flying = 0;
        this.persistSoon();
        if (this.items.length) {
          this.schedule(this.failures || this.items.length >= this.o.flushAt ? 0 : this.o.flushInterval);
        } else if (this.timer !== undefined) {
          this.env.clearTimeout(this.timer);
          this.timer = undefined;
        }
      });
    return true;
  }

  private async answered(batch: Item[], response: Response): Promise<void> {
    const status = response.status;
    if (status >= 200 && status < 300) {
      this.failures = 0;
      this.retryAt = 0;
      let answer: { rejected?: Array<{ index?: number; messageId?: string; errors?: FieldProblem[] }> } | null = null;
      try {
        answer = await response.json();
      } catch {
        /* an empty or non-JSON 2xx: all accepted */
      }
      const refused: Item[] = [];
      const problems: Record<string, FieldProblem[]> = {};
      const rejected = answer && Array.isArray(answer.rejected) ? answer.rejected : [];
      for (const entry of rejected) {
        const item = entry && typeof entry.index === "number" ? batch[entry.index] : undefined;
        const id = (item && item.id) || (entry && entry.messageId) || `#${entry && entry.index}`;
        if (item && refused.indexOf(item) < 0) refused.push(item);
        problems[id] = ((entry && entry.errors) || []).map((e) => ({ field: String(e.field), message: String(e.message) }));
      }
      this.counts.delivered += batch.length - refused.length;
      this.remove(batch);
      if (rejected.length) {
        this.counts.rejected += refused.length;
        this.fail("rejected", `the collector refused ${rejected.length} of ${batch.length} event(s)`, refused, status, problems);
      }
      return;
    }
    let text = "";
    try {
      text = (await response.text()).slice(0, 300);
    } catch {
      /* no body */
    }
    const message = `HTTP ${status}${text ? `: ${text}` : ""}`;
    if (status === 408 || status === 429 || status >= 500) {
      return this.retry(batch, retryAfter(response.headers.get("Retry-After"), this.env.now()), message, false, status);
    }
    this.counts.rejected += batch.length;
    this.remove(batch);
    this.fail("http_status", message, batch, status);
  }

  private retry(batch: Item[], after: number | null, message: string, network: boolean, status?: number): void {
    const nav = this.env.window.navigator;
    if (network && nav && nav.onLine === false) return; // offline: not an attempt; `online` resends
    this.failures++;
    this.counts.retries++;
    const spent: Item[] = [];
    for (const item of batch) {
      if (++item.attempts >= this.o.maxAttempts) spent.push(item);
    }
    if (spent.length) {
      this.counts.failed += spent.length;
      this.remove(spent);
      this.fail("gave_up", `no delivery after ${this.o.maxAttempts} attempts: ${message}`, spent, status);
    }
    const ceiling = Math.min(this.o.retryMaxDelay, this.o.retryBaseDelay * Math.pow(2, Math.min(this.failures - 1, 30)));
    this.retryAt = this.env.now() + (after !== null ? after : this.env.random() * ceiling);
  }

  // --- the queue ------------------------------------------------------------------------

  /** Up to `count` waiting events from the head, within `maxBytes` (but at least one). */
  private take(count: number, maxBytes: number, mark: boolean): Item[] {
    const batch: Item[] = [];
    let bytes = BATCH_OVERHEAD;
    for (const item of this.items) {
      if (batch.length >= count) break;
      if (item.sending) continue;
      if (item.bytes < 0) item.bytes = utf8Length(item.json);
      if (batch.length && bytes + item.bytes + 1 > maxBytes) break;
      bytes += item.bytes + 1;
      batch.push(item);
    }
    if (mark) for (const item of batch) item.sending = true;
    return batch;
  }

  private bytesInFlight(): number {
    let n = BATCH_OVERHEAD;
    for (const item of this.items) if (item.sending) n += item.bytes + 1;
    return n;
  }

  private body(batch: Item[]): string {
    let events = "";
    for (const item of batch) events += (events ? "," : "") + item.json;
    const sentAt = new Date(this.env.now()).toISOString();
    return `{"batch":[${events}],"sentAt":"${sentAt}","writeKey":${JSON.stringify(this.writeKey)}}`;
  }

  private remove(batch: Item[]): void {
    const gone: Record<string, 1> = {};
    for (const it of batch) {
      gone[it.id] = 1;
      if (it.key) this.unstore.push(it.key);
    }
    this.items = this.items.filter((it) => !gone[it.id]);
    this.persistSoon();
  }

  /** Drop the oldest events not in flight until `incoming` more fit. */
  private makeRoom(incoming: number): void {
    const excess = this.items.length + incoming - this.o.maxQueueSize;
    if (excess <= 0) return;
    const dropped: Item[] = [];
    for (const item of this.items) {
      if (dropped.length >= excess) break;
      if (!item.sending) dropped.push(item);
    }
    this.remove(dropped);
    this.drop(dropped);
  }

  private drop(dropped: Item[]): void {
    if (!dropped.length) return;
    this.counts.dropped += dropped.length;
    this.fail("queue_full", `the queue holds at most ${this.o.maxQueueSize} events; dropped the oldest ${dropped.length}`, dropped);
  }

  private fail(
    reason: FailureReason,
    message: string,
    items: Item[],
    status?: number,
    problems?: Record<string, FieldProblem[]>,
  ): void {
    const events: SextantEvent[] = [];
    for (const item of items) {
      try {
        events.push(JSON.parse(item.json));
      } catch {
        /* it was serialised by this SDK */
      }
    }
    const error: DeliveryError = { reason, message, events };
    if (status !== undefined) error.status = status;
    if (problems) error.problems = problems;
    this.report(error);
  }

  // --- persistence ----------------------------------------------------------------------

  private persistSoon(): void {
    if (this.persistTimer !== undefined) return;
    this.persistTimer = this.env.setTimeout(() => {
      this.persistTimer = undefined;
      this.persist(false);
    }, 0);
  }

  /**
   * Bring localStorage up to date: one key per event (written once, removed once
   * answered, so a write costs the new events, not the queue), and this page's entry.
   */
  persist(closed: boolean): void {
    if (this.persistTimer !== undefined) {
      this.env.clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
    }
    for (const key of this.unstore) this.store.remove(key);
    this.unstore = [];
    if (!this.items.length) {
      this.store.remove(this.pageKey);
      return;
    }
    let ok = this.store.set(this.pageKey, `{"t":${this.env.now()},"c":${closed ? 1 : 0}}`);
    for (const it of this.items) {
      if (it.key) continue;
      it.key = this.mine + (this.seq++).toString(36);
      // A refused write leaves the event in the store's memory: reported, not retried.
      if (!this.store.set(it.key, it.json)) ok = false;
    }
    if (!ok && !this.storageReported) {
      this.storageReported = true;
      this.report({
        reason: "storage",
        message: "localStorage refused the queue (full or disabled): waiting events may not survive a reload",
        events: [],
      });
    }
  }
}

function item(id: string, json: string): Item {
  return { id, json, bytes: -1, attempts: 0, sending: false, key: "" };
}

/** Milliseconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), or null. */
export function retryAfter(value: string | null, now: number): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const when = Date.parse(trimmed);
  return isNaN(when) ? null : Math.max(0, when - now);
}
