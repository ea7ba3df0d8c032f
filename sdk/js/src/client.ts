import { campaign, pageInfo, staticContext } from "./context";
import { Delivery, KEEPALIVE_BYTES, MAX_EVENT_BYTES } from "./delivery";
import type { Env } from "./env";
import { defaultEnv, utf8Length, uuid } from "./env";
import { Store } from "./storage";
import type { DeliveryError, EventType, InitOptions, Properties, SextantEvent, Stats } from "./types";

const ANONYMOUS_ID = "sextant_aid";
const USER_ID = "sextant_uid";
const TRAITS = "sextant_traits";
const MAX_EARLY_CALLS = 100;

type Id = string | number;

/**
 * One Sextant client: identity, context, and the delivery queue.
 *
 * The package's functions (`init`, `track`, ...) use one shared instance; `new Sextant(env)`
 * makes another, with an injectable environment (a fake window and clock in tests).
 * Calls made before `init` are kept (up to 100) with their own time and messageId, and
 * sent once `init` has run. Nothing here throws into the page: failures go to `onError`.
 */
/** The event a survey answer is sent as (Sextant's convention). */
export const SURVEY_EVENT = "Survey Responded";

export class Sextant {
  /** @internal */ readonly env: Env;
  /** @internal */ store: Store | null = null;
  /** @internal */ writeKey = "";
  /** @internal */ options: InitOptions | null = null;
  private delivery: Delivery | null = null;
  private anonymous = "";
  private user: string | null = null;
  private traits: Properties = {};
  private context: Properties = {};
  private referrer = "";
  private lastPage = "";
  private early: Array<() => void> = [];
  private plugins: Array<(client: Sextant) => void> = [];
  private onError: (error: DeliveryError) => void = warn;

  constructor(env: Partial<Env> = {}) {
    this.env = defaultEnv(env);
  }

  /**
   * Start the client: read (or make) the anonymous id, take over events earlier pages
   * left unsent, send the calls made before init, track the first page view.
   */
  init(writeKey: string, options: InitOptions): void {
    const win = this.env.window;
    if (this.delivery || !win || !win.document) return; // once; and never outside a browser
    if (!writeKey || !options || !options.host) {
      warn({ reason: "http_status", message: "init needs a write key and options.host", events: [] });
      return;
    }
    this.writeKey = writeKey;
    this.options = options;
    if (options.onError) this.onError = options.onError;
    const persistence = options.persistence || "cookie+localStorage";
    const store = (this.store = new Store(win, persistence, options.cookieDomain, positive(options.cookieDays, 365)));
    this.anonymous = store.getId(ANONYMOUS_ID) || this.newAnonymousId();
    this.user = store.getId(USER_ID);
    this.traits = parse(store.get(TRAITS)) || {};
    this.context = staticContext(win);
    this.referrer = win.document.referrer || "";
    this.delivery = new Delivery(
      this.env,
      store,
      writeKey,
      options.host.replace(/\/+$/, "") + "/v1/batch",
      {
        flushAt: positive(options.flushAt, 20),
        flushInterval: positive(options.flushInterval, 2000),
        maxQueueSize: positive(options.maxQueueSize, 1000),
        maxBatchBytes: Math.min(positive(options.maxBatchBytes, 32000), KEEPALIVE_BYTES),
        maxAttempts: positive(options.maxAttempts, 10),
        retryBaseDelay: positive(options.retryBaseDelay, 1000),
        retryMaxDelay: positive(options.retryMaxDelay, 60000),
        beacon: options.beacon !== false,
      },
      (error) => this.report(error),
      uuid(win),
    );
    const delivery = this.delivery;
    const listen = (target: EventTarget | undefined, type: string, handler: (event: Event) => void) => {
      if (target && target.addEventListener) target.addEventListener(type, handler);
    };
    listen(win, "pagehide", () => delivery.leave(true));
    listen(win, "pageshow", (event) => {
      if ((event as PageTransitionEvent).persisted) delivery.resume();
    });
    listen(win.document, "visibilitychange", () => {
      if (win.document.visibilityState === "hidden") delivery.leave(false);
    });
    listen(win, "online", () => {
      delivery.adopt();
      delivery.online();
    });
    delivery.adopt();
    const early = this.early;
    this.early = [];
    for (const call of early) call();
    if (options.trackPages !== false) {
      this.lastPage = pageKey(win);
      this.page();
      this.watchHistory();
    }
    for (const plugin of this.plugins) plugin(this);
  }

  /** Record that the user did `event`. Returns the event's messageId. */
  track(event: string, properties?: Properties): string {
    return this.emit("track", { event, properties: { ...properties } });
  }

  /** Record a customer's answer to a survey (NPS 0-10, CSAT 1-5 …) as Sextant's
   * `Survey Responded` event: `survey`, `score` and `comment` join `properties`. */
  surveyResponse(survey: string, score: number, comment?: string, properties?: Properties): string {
    const fields: Properties = { ...properties, survey, score };
    if (comment) fields.comment = comment;
    return this.track(SURVEY_EVENT, fields);
  }

  /** Record a page view; the page's path, referrer, search, title and url join `properties`. */
  page(name?: string, properties?: Properties): string {
    const win = this.env.window;
    const info = win && win.location ? pageInfo(win, this.referrer) : {};
    const fields: Partial<SextantEvent> = { properties: { ...info, ...properties } };
    if (name) fields.name = name;
    return this.emit("page", fields);
  }

  /** Who the user is: later events carry `userId`; traits are merged with earlier ones of the same user. */
  identify(userId: Id | null, traits?: Properties): string {
    const id = userId === null || userId === undefined || userId === "" ? this.user : String(userId);
    if (id !== this.user) this.traits = {};
    this.traits = { ...this.traits, ...traits };
    this.user = id;
    if (this.store) {
      this.store.setId(USER_ID, id);
      this.store.set(TRAITS, JSON.stringify(this.traits));
    }
    return this.emit("identify", { traits: { ...this.traits } });
  }

  /** `userId` and `previousId` (by default the current user id, else the anonymous id) are one user. */
  alias(userId: Id, previousId?: Id): string {
    const previous = previousId !== undefined && previousId !== null ? String(previousId) : this.user || this.anonymous;
    return this.emit("alias", { userId: String(userId), previousId: previous });
  }

  /** The user belongs to the group (account, company) `groupId`. */
  group(groupId: Id, traits?: Properties): string {
    return this.emit("group", { groupId: String(groupId), traits: { ...traits } });
  }

  /** Forget the user (logout): no user id or traits, and a new anonymous id. Waiting events are still sent. */
  reset(): void {
    if (!this.store) {
      this.early.push(() => this.reset());
      return;
    }
    this.user = null;
    this.traits = {};
    this.store.setId(USER_ID, null);
    this.store.remove(TRAITS);
    this.anonymous = this.newAnonymousId();
  }

  /** Send what waits now; resolves when the queue is empty or delivery has to wait (backoff, offline). */
  flush(): Promise<void> {
    return this.delivery ? this.delivery.flush() : Promise.resolve();
  }

  stats(): Stats {
    const d = this.delivery;
    return d
      ? { ...d.counts, pending: d.pending }
      : { delivered: 0, rejected: 0, failed: 0, dropped: 0, retries: 0, batches: 0, beacons: 0, pending: this.early.length };
  }

  anonymousId(): string {
    return this.anonymous;
  }

  userId(): string | null {
    return this.user;
  }

  /** @internal Run `plugin` once the client is initialised (now if it is). */
  use(plugin: (client: Sextant) => void): void {
    if (this.delivery) plugin(this);
    else this.plugins.push(plugin);
  }

  /** @internal Report a failure through `onError`. */
  report(error: DeliveryError): void {
    try {
      this.onError(error);
    } catch {
      /* an application's handler must not break delivery */
    }
  }

  // --- internals ------------------------------------------------------------------------

  private emit(type: EventType, fields: Partial<SextantEvent>): string {
    const messageId = uuid(this.env.window);
    const timestamp = new Date(this.env.now()).toISOString();
    if (!this.delivery) {
      if (this.early.length < MAX_EARLY_CALLS) this.early.push(() => this.enqueue(type, fields, timestamp, messageId));
      return messageId;
    }
    this.enqueue(type, fields, timestamp, messageId);
    return messageId;
  }

  private enqueue(type: EventType, fields: Partial<SextantEvent>, timestamp: string, messageId: string): void {
    const delivery = this.delivery as Delivery;
    const win = this.env.window;
    const page = pageInfo(win, this.referrer);
    const context: Properties = { ...this.context, page };
    const utm = campaign(page.search);
    if (utm) context.campaign = utm;
    const event = { type, ...fields, anonymousId: this.anonymous, context, timestamp, messageId } as SextantEvent;
    if (this.user !== null && event.userId === undefined) event.userId = this.user;
    let json: string;
    try {
      json = JSON.stringify(event);
    } catch (error) {
      this.report({ reason: "invalid", message: `the event cannot be serialised: ${String(error)}`, events: [] });
      return;
    }
    // Most events are far below the limit in characters already; count bytes only near it.
    if (json.length * 3 > MAX_EVENT_BYTES && utf8Length(json) > MAX_EVENT_BYTES) {
      this.report({ reason: "too_large", message: `the event is over the collector's ${MAX_EVENT_BYTES} bytes`, events: [event] });
      return;
    }
    delivery.add(messageId, json);
  }

  private newAnonymousId(): string {
    const id = uuid(this.env.window);
    if (this.store) this.store.setId(ANONYMOUS_ID, id);
    return id;
  }

  /** Page views of a single-page app: after pushState / replaceState / popstate changed the URL. */
  private watchHistory(): void {
    const win = this.env.window;
    const history = win.history;
    const changed = () => {
      this.env.setTimeout(() => {
        // Later, so that the app has set the new page's title.
        const key = pageKey(win);
        if (key === this.lastPage) return;
        this.referrer = this.lastPage;
        this.lastPage = key;
        this.page();
      }, 0);
    };
    if (history) {
      for (const method of ["pushState", "replaceState"] as const) {
        const original = history[method];
        if (typeof original !== "function") continue;
        history[method] = function (this: History, ...args: Parameters<History["pushState"]>) {
          const result = original.apply(this, args);
          changed();
          return result;
        };
      }
    }
    if (win.addEventListener) win.addEventListener("popstate", changed);
  }
}

/** The URL without its fragment: a jump to an anchor is not a page view. */
function pageKey(win: Window): string {
  const href = win.location.href;
  const hash = href.indexOf("#");
  return hash < 0 ? href : href.slice(0, hash);
}

function positive(value: number | undefined, fallback: number): number {
  return typeof value === "number" && value > 0 ? value : fallback;
}

function parse(text: string | null): Properties | null {
  try {
    const value = text ? JSON.parse(text) : null;
    return value && typeof value === "object" ? value : null;
  } catch {
    return null;
  }
}

function warn(error: DeliveryError): void {
  if (typeof console !== "undefined") console.warn(`[sextant] ${error.reason}: ${error.message}`, error.events);
}
