/** The gateway's API, as the signed-in person (their session cookie) or with the keys the
 * user signed in with. */
import type { components } from "./api-schema";

type Problem = components["schemas"]["Problem"];

const READ = "sextant.readKey";
const ADMIN = "sextant.adminKey";
const PROJECT = "sextant.project";

export type ProjectRole = components["schemas"]["ProjectRole"];
export type Person = components["schemas"]["Me"];
export type AuthStatus = components["schemas"]["Status"];

let person: Person | null = null;

/** The person signed in with an account (null: keys, or nobody). The session itself is an
 * HttpOnly cookie this code never sees; the browser sends it with every request here. */
export const account = {
  person: (): Person | null => person,
  set(me: Person | null): void {
    person = me;
  },
  /** The project the person looks at: the one they chose, else their first. */
  project(): ProjectRole | null {
    if (!person) return null;
    const chosen = localStorage.getItem(PROJECT);
    return person.projects.find((p) => p.id === chosen) || person.projects[0] || null;
  },
  choose(projectId: string): void {
    localStorage.setItem(PROJECT, projectId);
  },
};

/** Signed in at all: with a key, or as a person. */
export const signedIn = (): boolean => Boolean(keys.read() || keys.admin() || person);
/** Reads a project's data: with a read key, or as a person with a project. */
export const readsData = (): boolean => Boolean(keys.read() || account.project());
/** The organisation's admin view: the admin key, or an organisation admin. */
export const isAdmin = (): boolean => Boolean(keys.admin() || person?.org_admin);
/** May change the current project's config (acknowledge and mute alerts). */
export const mayEdit = (): boolean => {
  if (keys.admin() || person?.org_admin) return true;
  const role = keys.read() ? "" : account.project()?.role;
  return role === "editor" || role === "owner";
};

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

/** Who a request is from: the key when there is one, else the session cookie (sent by the
 * browser) and the person's current project. */
function credentials(key: string): Record<string, string> {
  if (key) return { Authorization: `Bearer ${key}` };
  const project = account.project();
  return project ? { "X-Sextant-Project": project.id } : {};
}

async function request<T>(method: string, path: string, key: string, body?: unknown): Promise<T> {
  const headers = credentials(key);
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
/** The admin key when signed in with one, else the read key or the person (whose role may
 * be enough). */
export const ownerGet = <T>(path: string): Promise<T> => request<T>("GET", path, keys.admin() || keys.read());

/** How people sign in here, and the signed-in person (null when no session is open). */
export async function loadStatus(): Promise<AuthStatus> {
  const status = await request<AuthStatus>("GET", "/v1/auth/status", "");
  person = status.person;
  return status;
}

export async function signInWithPassword(email: string, password: string): Promise<Person> {
  person = await request<Person>("POST", "/v1/auth/login", "", { email, password });
  return person;
}

/** Ends the session (the cookie goes) and forgets the keys. */
export async function signOut(): Promise<void> {
  keys.clear();
  if (person) await request<void>("POST", "/v1/auth/logout", "", {});
  person = null;
}

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
      const headers = credentials(keys.read());
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
