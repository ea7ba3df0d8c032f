/**
 * The asynchronous script-tag snippet leaves `window.sextant` as an array of calls
 * (`[["init", key, options], ["track", "Signed Up"], ...]`) made before the bundle loaded;
 * the bundle replays them in order, with the real functions.
 */
export function replay(api: Record<string, unknown>): void {
  const calls = typeof window !== "undefined" ? (window as unknown as { sextant?: unknown }).sextant : undefined;
  if (!Array.isArray(calls)) return;
  for (const call of calls) {
    if (!Array.isArray(call)) continue;
    const fn = api[call[0]];
    if (typeof fn === "function") fn(...call.slice(1));
  }
}
