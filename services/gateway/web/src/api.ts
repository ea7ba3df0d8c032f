/** The gateway's API with the key the user signed in with. */
import type { components } from "./api-schema";

type Problem = components["schemas"]["Problem"];

const READ = "sextant.readKey";
const ADMIN = "sextant.adminKey";

export const keys = {
  read: (): string => localStorage.getItem(READ) || "",
  admin: (): string => localStorage.getItem(ADMIN) || "",
  set(read: string, admin: string): void {
    if (read) localStorage.setItem(READ, read);
    else localStorage.removeItem(READ);
    if (admin) localStorage.setItem(ADMIN, admin);
    else localStorage.removeItem(ADMIN);
  },
  clear(): void {
    localStorage.removeItem(READ);
    localStorage.removeItem(ADMIN);
  },
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(method: string, path: string, key: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = (await response.json()) as Partial<Problem>;
      detail = problem.detail || problem.title || detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, detail);
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const get = <T>(path: string): Promise<T> => request<T>("GET", path, keys.read());
export const post = <T>(path: string, body: unknown): Promise<T> => request<T>("POST", path, keys.read(), body);
export const adminGet = <T>(path: string): Promise<T> => request<T>("GET", path, keys.admin());
export const adminSend = <T>(method: string, path: string, body?: unknown): Promise<T> =>
  request<T>(method, path, keys.admin(), body);
/** The admin key when signed in with one, else the read key (whose role may be enough). */
export const ownerGet = <T>(path: string): Promise<T> => request<T>("GET", path, keys.admin() || keys.read());

export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") search.set(k, String(v));
  const text = search.toString();
  return text ? `?${text}` : "";
}

export interface SseEvent {
  event: string;
  id: string | null;
  data: string;
}

/** Reads a Server-Sent Events stream with fetch (so the key travels in a header), and
 * reconnects with Last-Event-ID after a drop. Stops when `signal` aborts. */
export async function stream(path: string, onEvent: (e: SseEvent) => void, signal: AbortSignal, onStatus?: (s: string) => void): Promise<void> {
  let lastId: string | null = null;
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const headers: Record<string, string> = { Authorization: `Bearer ${keys.read()}` };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(path, { headers, signal });
      if (!response.ok || !response.body) throw new Error(response.statusText);
      onStatus?.("live");
      attempt = 0;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const parsed = parseBlock(block);
          if (parsed.id !== null) lastId = parsed.id;
          onEvent(parsed);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      onStatus?.(`reconnecting (${(error as Error).message || error})`);
    }
    await new Promise((r) => setTimeout(r, Math.min(10000, 500 * 2 ** attempt)));
  }
}

export function parseBlock(block: string): SseEvent {
  let event = "message";
  let data = "";
  let id: string | null = null;
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = text;
    else if (field === "data") data += text;
    else if (field === "id") id = text;
  }
  return { event, id, data };
}
