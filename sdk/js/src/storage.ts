import type { Persistence } from "./types";

/**
 * First-party storage: localStorage, and cookies for the ids.
 *
 * Ids (the anonymous id, the user id) are written to both a cookie and localStorage
 * and read from either, so one of them being cleared (Safari's seven-day cap on
 * script-written storage, a cookie banner that deletes cookies) does not make a
 * returning visitor new. Every access is guarded: storage may be disabled or full,
 * and the SDK then carries on in memory.
 */
export class Store {
  private readonly memory = new Map<string, string>();
  private readonly local: Storage | null;

  constructor(
    private readonly win: Window,
    private readonly persistence: Persistence,
    private readonly cookieDomain: string | undefined,
    private readonly cookieDays: number,
  ) {
    let local: Storage | null = null;
    if (persistence !== "memory") {
      try {
        local = win.localStorage || null;
      } catch {
        // Disabled storage throws on access (a sandboxed frame, blocked cookies).
      }
    }
    this.local = local;
  }

  get(key: string): string | null {
    if (this.local) {
      try {
        return this.local.getItem(key);
      } catch {
        /* fall through to memory */
      }
    }
    const value = this.memory.get(key);
    return value === undefined ? null : value;
  }

  /** False when localStorage refused the write (the value is then kept in memory). */
  set(key: string, value: string): boolean {
    if (this.local) {
      try {
        this.local.setItem(key, value);
        return true;
      } catch {
        this.memory.set(key, value);
        return false;
      }
    }
    this.memory.set(key, value);
    return true;
  }

  remove(key: string): void {
    this.memory.delete(key);
    if (this.local) {
      try {
        this.local.removeItem(key);
      } catch {
        /* nothing to do */
      }
    }
  }

  /** Keys that start with `prefix`. */
  keys(prefix: string): string[] {
    const found: string[] = [];
    if (this.local) {
      try {
        for (let i = 0; i < this.local.length; i++) {
          const key = this.local.key(i);
          if (key !== null && key.indexOf(prefix) === 0) found.push(key);
        }
      } catch {
        /* nothing readable */
      }
    }
    this.memory.forEach((_, key) => {
      if (key.indexOf(prefix) === 0 && found.indexOf(key) < 0) found.push(key);
    });
    return found;
  }

  /** An id from the cookie, else from localStorage (and copied back to both). */
  getId(name: string): string | null {
    const value = this.cookie(name) || this.get(name);
    if (value) this.setId(name, value);
    return value || null;
  }

  setId(name: string, value: string | null): void {
    if (value === null) this.remove(name);
    else this.set(name, value);
    if (this.persistence !== "cookie+localStorage") return;
    let cookie = `${name}=${value === null ? "" : encodeURIComponent(value)}; Path=/; SameSite=Lax; Max-Age=${
      value === null ? 0 : Math.round(this.cookieDays * 86400)
    }`;
    if (this.cookieDomain) cookie += `; Domain=${this.cookieDomain}`;
    if (this.win.location && this.win.location.protocol === "https:") cookie += "; Secure";
    try {
      this.win.document.cookie = cookie;
    } catch {
      /* cookies disabled */
    }
  }

  private cookie(name: string): string | null {
    if (this.persistence !== "cookie+localStorage") return null;
    let all = "";
    try {
      all = this.win.document.cookie || "";
    } catch {
      return null;
    }
    for (const part of all.split(";")) {
      const eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq).trim() === name) {
        try {
          return decodeURIComponent(part.slice(eq + 1).trim()) || null;
        } catch {
          return null;
        }
      }
    }
    return null;
  }
}
