/** A config document's history: its audit entries, newest first, and what each changed. */
import { ApiError, get, isAdmin, ownerGet, query } from "../api";
import type { components } from "../api-schema";
import { h } from "../dom";
import { when } from "../format";

type Schemas = components["schemas"];
type AuditEntry = Schemas["AuditEntry"];
type AuditPage = Schemas["Page_AuditEntry_"];

/** One field that differs: its dotted path and JSON values (undefined: absent on that side). */
export interface Change {
  field: string;
  before?: string;
  after?: string;
}

const PAGE_SIZE = 20;
const DENIED = "The history needs an owner key: sign in with this project's owner key or as one of its owners, or with the admin key, to see who changed this document and how.";
const KINDS: Record<string, string> = {
  project: "project",
  api_key: "key",
  metric: "metric",
  experiment: "experiment",
  alert_rule: "alert rule",
  tracking_plan: "tracking plan",
  feature: "feature",
  outcome: "outcome",
  survey: "survey",
};
const ACTIONS: Record<string, string> = {
  "config.created": "created",
  "config.changed": "changed",
  "config.deleted": "deleted",
  "key.created": "created",
  "key.revoked": "revoked",
  "key.rotated": "rotated",
  "key.first_used": "first used",
  "key.used": "used",
};
// Every entry of one history is about the same document: these never differ.
const IDENTITY = new Set(["kind", "project_id", "id"]);

/** A link to the history of the document `kind:project:id` (its config key, the audit target). */
export function historyLink(kind: string, project: string, id: string, label = "History"): HTMLElement {
  const target = `${kind}:${project}:${id}`;
  return h("a", { href: `#/history/${[kind, project, id].map(encodeURIComponent).join(":")}`, "data-history": target }, label);
}

export function historyPage(root: HTMLElement, args: string[]): void {
  const target = args[0] || "";
  const [kind = "", project = "", id = ""] = target.split(":"); // identifiers have no colon
  const out = h("div", { id: "history" }, h("p", { class: "note" }, "Loading…"));
  root.append(
    h("p", null, h("button", { type: "button", class: "link", onclick: () => history.back() }, "← back")),
    h("h1", null, `History of ${KINDS[kind] || kind} ${id}`),
    h("p", { class: "lede" }, `Project ${project}: every change to this document in the audit log, newest first.`),
    out,
  );
  const rows = h("tbody");
  let cursor: string | null = null;
  const older = h("button", { type: "button", id: "history-older", class: "more", onclick: () => void more().catch(fail) }, "Older");
  const more = async (): Promise<void> => {
    older.disabled = true;
    const page = await ownerGet<AuditPage>(`/v1/admin/projects/${encodeURIComponent(project)}/audit${query({ target, limit: PAGE_SIZE, cursor })}`);
    if (cursor === null) out.replaceChildren(h("section", { class: "card" }, entriesTable(rows), older));
    rows.append(...page.items.map(entryRow));
    cursor = page.next_cursor ?? null;
    older.hidden = cursor === null;
    older.disabled = false;
    if (!rows.childElementCount) out.replaceChildren(h("p", { class: "note" }, "No entries: this document has not changed since the audit log began."));
  };
  const fail = (error: unknown): void => {
    const denied = error instanceof ApiError && (error.status === 401 || error.status === 403);
    out.replaceChildren(denied ? deniedNote() : h("p", { class: "error" }, String((error as Error).message || error)));
  };
  mayReadAudit(project)
    .then((allowed) => (allowed ? more() : out.replaceChildren(deniedNote())))
    .catch(fail);
}

/** The admin key (or an organisation admin) reads every project's audit log; a read key or
 * a person only as the project's owner. */
async function mayReadAudit(project: string): Promise<boolean> {
  if (isAdmin()) return true;
  const me = await get<Schemas["WhoAmI"]>("/v1/whoami");
  return me.role === "owner" && me.project_id === project;
}

function deniedNote(): HTMLElement {
  return h("p", { class: "banner notice", id: "history-denied" }, DENIED);
}

function entriesTable(rows: HTMLElement): HTMLElement {
  const head = h("thead", null, h("tr", null, ["when", "who", "action", "what changed"].map((x) => h("th", null, x))));
  return h("div", { class: "table-wrap" }, h("table", { class: "history", id: "history-entries" }, head, rows));
}

function entryRow(e: AuditEntry): HTMLElement {
  const found = changes(e.before, e.after);
  const who = [e.actor.kind, e.actor.name ? e.actor.id : "", e.source ? `from ${e.source}` : ""].filter(Boolean).join(" · ");
  return h(
    "tr",
    { "data-entry": e.id, "data-action": e.action },
    h("td", null, when(e.at, true)),
    h("td", null, h("div", null, e.actor.name || e.actor.id), h("div", { class: "sub" }, who)),
    h("td", null, ACTIONS[e.action] || e.action),
    h("td", null, found.length ? h("ul", { class: "changes" }, found.map(changeItem)) : e.detail || "–"),
  );
}

function changeItem(c: Change): HTMLElement {
  return h(
    "li",
    { "data-field": c.field },
    h("code", null, c.field),
    " ",
    c.before === undefined ? "–" : h("del", null, shorten(c.before)),
    " → ",
    c.after === undefined ? "–" : h("ins", null, shorten(c.after)),
  );
}

function shorten(text: string): string {
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** The fields that differ between two versions of a document (null: there was none). Objects,
 * and lists of objects, are compared field by field and item by item; anything else whole. */
export function changes(before: unknown, after: unknown): Change[] {
  const found: Change[] = [];
  compare(before ?? {}, after ?? {}, "", found);
  return found.filter((c) => !IDENTITY.has(c.field));
}

function compare(before: unknown, after: unknown, path: string, found: Change[]): void {
  const old = JSON.stringify(before);
  const now = JSON.stringify(after);
  if (old === now) return;
  const keys = parts(before, after);
  if (keys === null) found.push({ field: path, before: old, after: now });
  else for (const key of keys) compare(at(before, key), at(after, key), path ? `${path}.${key}` : key, found);
}

/** The keys to compare one by one: of two objects, or of two lists of objects; else null. */
function parts(before: unknown, after: unknown): string[] | null {
  if (isRecord(before) && isRecord(after)) return [...new Set([...Object.keys(after), ...Object.keys(before)])];
  if (isObjectList(before) && isObjectList(after)) return Array.from({ length: Math.max(before.length, after.length) }, (_, i) => String(i));
  return null;
}

function at(value: unknown, key: string): unknown {
  return (value as Record<string, unknown>)[key];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isObjectList(value: unknown): value is unknown[] {
  return Array.isArray(value) && value.length > 0 && value.every(isRecord);
}
