/** The admin view (admin key): projects, their keys and documents. */
import { adminGet, keys } from "../api";
import { card, h, table } from "../dom";

interface Project {
  id: string;
  name: string;
  allowed_origins?: string[];
}
interface KeyView {
  id: string;
  key_kind: string;
  name: string;
  revoked: boolean;
}

const KINDS = ["metrics", "experiments", "alert-rules", "outcomes", "surveys", "features", "tracking-plans"];

export function adminPage(root: HTMLElement): void {
  const out = h("div", { id: "admin" }, h("p", { class: "note" }, "Loading…"));
  root.append(h("h1", null, "Admin"), out);
  if (!keys.admin()) {
    out.textContent = "Sign in with the admin key to see this view.";
    return;
  }
  adminGet<{ items: Project[] }>("/v1/admin/projects?limit=1000")
    .then(async (page) => {
      out.textContent = "";
      for (const p of page.items) {
        const [keyPage, ...docs] = await Promise.all([
          adminGet<{ items: KeyView[] }>(`/v1/admin/projects/${encodeURIComponent(p.id)}/keys?limit=1000`),
          ...KINDS.map((k) => adminGet<{ items: { id: string; name?: string }[] }>(`/v1/admin/projects/${encodeURIComponent(p.id)}/${k}?limit=1000`).catch(() => ({ items: [] }))),
        ]);
        out.append(
          card(
            `${p.name} (${p.id})`,
            h(
              "div",
              { class: "grid" },
              h("div", null, h("h3", null, "Keys"), table(["key", "kind", "state"], keyPage.items.map((k) => [k.name || k.id, k.key_kind, k.revoked ? "revoked" : "active"]))),
              h("div", null, h("h3", null, "Documents"), table(["kind", "count", "ids"], KINDS.map((k, i) => [k, String(docs[i].items.length), docs[i].items.map((d) => d.id).slice(0, 6).join(", ")]))),
            ),
            `Origins: ${(p.allowed_origins || []).join(", ") || "none"} · change documents with the admin API or sextant config apply`,
          ),
        );
      }
    })
    .catch((e) => (out.textContent = String(e.message || e)));
}
