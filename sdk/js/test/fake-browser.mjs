// A small stand-in for a browser, enough for the SDK: a clock whose timers run when the
// test advances it, a browser profile (localStorage and cookies that outlive a page),
// pages (window, document, location, history, navigator.sendBeacon) and a scripted
// collector behind `fetch`.

/** Let promise chains and fetch handlers run. */
export async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock {
  constructor(start = Date.UTC(2026, 0, 15, 12, 0, 0)) {
    this.time = start;
    this.timers = new Map();
    this.next = 1;
  }
  now = () => this.time;
  setTimeout = (fn, ms) => {
    const id = this.next++;
    this.timers.set(id, { at: this.time + Math.max(0, ms || 0), fn, id });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  random = () => this.randomValue;
  randomValue = 0.5;
  /** Run every timer due within `ms`, in order, letting promises settle after each. */
  async advance(ms) {
    const end = this.time + ms;
    await settle();
    for (;;) {
      let first = null;
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (!first || timer.at < first.at || (timer.at === first.at && timer.id < first.id))) {
          first = timer;
        }
      }
      if (!first) break;
      this.timers.delete(first.id);
      this.time = Math.max(this.time, first.at);
      first.fn();
      await settle();
    }
    this.time = end;
  }
  /** When the next timer is due, relative to now (Infinity without one). */
  nextDelay() {
    let at = Infinity;
    for (const timer of this.timers.values()) at = Math.min(at, timer.at);
    return at - this.time;
  }
}

export class FakeStorage {
  constructor() {
    this.map = new Map();
    this.quota = Infinity;
  }
  get length() {
    return this.map.size;
  }
  key(i) {
    return [...this.map.keys()][i] ?? null;
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    const v = String(value);
    let used = 0;
    for (const [k, old] of this.map) if (k !== key) used += k.length + old.length;
    if (used + key.length + v.length > this.quota) {
      const error = new Error("quota exceeded");
      error.name = "QuotaExceededError";
      throw error;
    }
    this.map.set(key, v);
  }
  removeItem(key) {
    this.map.delete(key);
  }
  clear() {
    this.map.clear();
  }
}

/** The collector: answers each request with the next scripted answer, else 200 all accepted. */
export class FakeCollector {
  constructor() {
    this.requests = [];
    this.answers = [];
    this.definitions = [];
    this.etag = '"v1"';
    /** What `/api/features/{clientKey}` answers (GrowthBook's payload). */
    this.payload = { status: 200, features: {}, experiments: [], dateUpdated: null };
  }
  /** Script the next answers: {status, body, headers} or "network" for a failed fetch. */
  answer(...answers) {
    this.answers.push(...answers);
  }
  get batches() {
    return this.requests.filter((r) => r.url.includes("/v1/batch")).map((r) => r.json);
  }
  get events() {
    return this.batches.flatMap((b) => b.batch);
  }
  fetch = async (url, init = {}) => {
    const request = { url: String(url), init, headers: init.headers || {}, body: init.body };
    if (typeof init.body === "string") request.json = JSON.parse(init.body);
    this.requests.push(request);
    if (String(url).includes("/v1/experiments/definitions")) {
      const next = this.answers.length && this.answers[0].definitions ? this.answers.shift() : null;
      if (next === "network" || (next && next.status === "network")) throw new TypeError("Failed to fetch");
      if (next) return new Response(next.body ?? null, { status: next.status, headers: next.headers || {} });
      return new Response(JSON.stringify(this.definitions), { status: 200, headers: { ETag: this.etag } });
    }
    if (String(url).includes("/api/features/")) {
      if (this.featuresDown) throw new TypeError("Failed to fetch");
      return new Response(JSON.stringify(this.payload), { status: 200, headers: { "X-Sse-Support": "enabled" } });
    }
    const next = this.answers.length ? this.answers.shift() : null;
    if (next === "network") throw new TypeError("Failed to fetch");
    if (next) {
      const body = next.body === undefined ? "" : typeof next.body === "string" ? next.body : JSON.stringify(next.body);
      return new Response(body, { status: next.status, headers: next.headers || {} });
    }
    return new Response(JSON.stringify({ accepted: request.json.batch.length, rejected: [] }), { status: 200 });
  };
}

/** A browser profile: storage and cookies that outlive its pages, one clock, one collector. */
export class FakeProfile {
  constructor() {
    this.clock = new FakeClock();
    this.localStorage = new FakeStorage();
    this.cookies = new Map();
    this.collector = new FakeCollector();
    this.beacons = [];
    this.beaconAccepts = true;
    this.onLine = true;
  }

  /** A new page at `url` (a reload is another `open` on the same profile). */
  open(url = "https://shop.example.com/products?utm_source=news&utm_campaign=spring", referrer = "https://search.example/") {
    const profile = this;
    const win = new EventTarget();
    const document = new EventTarget();
    const location = {};
    const setUrl = (href) => {
      const u = new URL(href, location.href || undefined);
      Object.assign(location, { href: u.href, pathname: u.pathname, search: u.search, hash: u.hash, protocol: u.protocol });
    };
    setUrl(url);
    Object.defineProperty(document, "cookie", {
      get: () => [...profile.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
      set: (text) => {
        const [pair, ...attributes] = text.split(";");
        const eq = pair.indexOf("=");
        const name = pair.slice(0, eq).trim();
        if (attributes.some((a) => a.trim().toLowerCase() === "max-age=0")) profile.cookies.delete(name);
        else profile.cookies.set(name, pair.slice(eq + 1).trim());
        profile.cookieWrites = (profile.cookieWrites || []).concat(text);
      },
    });
    Object.assign(document, { title: "Products", referrer, visibilityState: "visible" });
    const history = {
      pushState(_state, _title, href) {
        setUrl(href);
      },
      replaceState(_state, _title, href) {
        setUrl(href);
      },
    };
    Object.assign(win, {
      document,
      location,
      history,
      navigator: {
        userAgent: "FakeBrowser/1.0",
        language: "en-GB",
        get onLine() {
          return profile.onLine;
        },
        sendBeacon(url, body) {
          if (!profile.beaconAccepts) return false;
          profile.beacons.push({ url, body, json: JSON.parse(body) });
          return true;
        },
      },
      screen: { width: 1440, height: 900 },
      devicePixelRatio: 2,
      localStorage: profile.localStorage,
      crypto: globalThis.crypto,
      fetch: profile.collector.fetch,
    });
    win.navigate = (href) => {
      win.history.pushState({}, "", href);
    };
    win.back = (href) => {
      setUrl(href);
      win.dispatchEvent(new Event("popstate"));
    };
    win.hide = () => {
      document.visibilityState = "hidden";
      document.dispatchEvent(new Event("visibilitychange"));
    };
    win.leave = () => {
      win.hide();
      const event = new Event("pagehide");
      event.persisted = false;
      win.dispatchEvent(event);
    };
    return win;
  }

  /** The env for `new Sextant(env)`: this profile's clock and a page. */
  env(win) {
    return {
      window: win,
      now: this.clock.now,
      setTimeout: this.clock.setTimeout,
      clearTimeout: this.clock.clearTimeout,
      random: this.clock.random,
    };
  }

  get beaconEvents() {
    return this.beacons.flatMap((b) => b.json.batch);
  }
}
