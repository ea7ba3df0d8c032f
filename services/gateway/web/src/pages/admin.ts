/** The admin view (admin key): projects, their keys and documents, each with its history. */
import { adminGet, isAdmin } from "../api";
import type { components } from "../api-schema";
import { card, h, table } from "../dom";
import { historyLink } from "./history";

type Schemas = components["schemas"];
type ProjectPage = Schemas["Page_Project_"];
type KeyPage = Schemas["Page_KeyView_"];
/** A config document of any kind listed below (features and tracking plans have no name). */
type Doc = Schemas["MetricDefinition" | "Experiment" | "AlertRule" | "Outcome" | "Survey" | "Feature" | "TrackingPlan"];

// The admin API's path of each kind, and the kind its config keys start with.
const KINDS: [string, string][] = [
  ["metrics", "metric"],
  ["experiments", "experiment"],
  ["alert-rules", "alert_rule"],
  ["outcomes", "outcome"],
  ["surveys", "survey"],
  ["features", "feature"],
  ["tracking-plans", "tracking_plan"],
];

function docLabel(doc: Doc): string {
  return "name" in doc && doc.name ? `${doc.name} (${doc.id})` : doc.id;
}

export function adminPage(root: HTMLElement): void {
  const out = h("div", { id: "admin" }, h("p", { class: "note" }, "Loading…"));
  root.append(h("h1", null, "Admin"), out);
  if (!isAdmin()) {
    out.textContent = "Sign in with the admin key, or as an organisation admin, to see this view.";
    return;
  }
  adminGet<ProjectPage>("/v1/admin/projects?limit=1000")
    .then(async (page) => {
      out.textContent = "";
      for (const p of page.items) {
        const [keyPage, ...docs] = await Promise.all([
          adminGet<KeyPage>(`/v1/admin/projects/${encodeURIComponent(p.id)}/keys?limit=1000`),
          ...KINDS.map(([path]) => adminGet<{ items: Doc[] }>(`/v1/admin/projects/${encodeURIComponent(p.id)}/${path}?limit=1000`).catch(() => ({ items: [] }))),
        ]);
        const documents = KINDS.flatMap(([, kind], i) => docs[i].items.map((d) => [docLabel(d), kind.replace(/_/g, " "), historyLink(kind, p.id, d.id)]));
        out.append(
          card(
            `${p.name} (${p.id})`,
            h(
              "div",
              { class: "grid admin-grid" },
              h("div", null, h("h3", null, "Keys"), table(["key", "kind", "state", ""], keyPage.items.map((k) => [k.name || k.id, k.key_kind, k.revoked ? "revoked" : "active", historyLink("api_key", p.id, k.id)]))),
              h("div", null, h("h3", null, `Documents (${documents.length})`), table(["document", "kind", ""], documents, { "data-documents": p.id })),
            ),
            [`Origins: ${(p.allowed_origins ?? []).join(", ") || "none"} · change documents with the admin API or sextant config apply · `, historyLink("project", p.id, p.id, "settings history")],
          ),
        );
      }
    })
    .catch((e) => (out.textContent = String(e.message || e)));
}
