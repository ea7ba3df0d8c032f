/**
 * What the SDK takes from the page, in one place so that tests can hand it a fake
 * browser and a fake clock (`new Sextant(env)`), as the Python SDK takes a transport
 * and a clock. Everything defaults to the real globals.
 */
export interface Env {
  /** The page: location, document, navigator, history, screen, storage, fetch, crypto. */
  window: Window;
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Uniform in [0, 1): backoff jitter. */
  random(): number;
}

export function defaultEnv(overrides: Partial<Env> = {}): Env {
  return {
    window: (typeof window !== "undefined" ? window : globalThis) as unknown as Window,
    now: () => Date.now(),
    setTimeout: (callback, ms) => setTimeout(callback, ms),
    clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    random: Math.random,
    ...overrides,
  };
}

/** A random (version 4) UUID; `crypto.randomUUID` needs a secure context, getRandomValues does not. */
export function uuid(win: Window): string {
  const c = win.crypto;
  if (c && c.randomUUID) return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && c.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  let s = "";
  for (let i = 0; i < 16; i++) {
    s += (b[i] + 0x100).toString(16).slice(1);
    if (i === 3 || i === 5 || i === 7 || i === 9) s += "-";
  }
  return s;
}

/** UTF-8 length of `text` (what a request body costs against the 64 KB keepalive limit). */
export function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A surrogate pair is 4 bytes for 2 code units: +1 each.
    if (c >= 0x80) n += c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 1 : 2;
  }
  return n;
}
