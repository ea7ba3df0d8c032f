/** The workspace: sign-in, navigation and the pages, routed by the URL's hash. */
import "./style.css";
import { account, ApiError, type AuthStatus, get, isAdmin, keys, loadStatus, readsData, signedIn, signOut } from "./api";
import type { components } from "./api-schema";
import { clear, h } from "./dom";
import { adminPage } from "./pages/admin";
import { alertsPage } from "./pages/alerts";
import { experimentsPage } from "./pages/experiments";
import { feedbackPage } from "./pages/feedback";
import { funnelsPage } from "./pages/funnels";
import { historyPage } from "./pages/history";
import { metricsPage } from "./pages/metrics";
import { outcomesPage } from "./pages/outcomes";
import { retentionPage } from "./pages/retention";
import { signInPage } from "./pages/signin";
import { webPage } from "./pages/web";

export type Cleanup = () => void;
export type Page = (root: HTMLElement, args: string[]) => Cleanup | void;

// admin: shown with the admin key (or to an organisation admin), and open without a read
// key; linked: opened from other pages' links (not the navigation), with either key.
const PAGES: { path: string; title: string; page: Page; admin?: boolean; linked?: boolean }[] = [
  { path: "outcomes", title: "Outcomes", page: outcomesPage },
  { path: "metrics", title: "Metrics", page: metricsPage },
  { path: "funnels", title: "Funnels", page: funnelsPage },
  { path: "retention", title: "Retention", page: retentionPage },
  { path: "experiments", title: "Experiments", page: experimentsPage },
  { path: "alerts", title: "Alerts", page: alertsPage },
  { path: "web", title: "Web", page: webPage },
  { path: "feedback", title: "Feedback", page: feedbackPage },
  { path: "history", title: "History", page: historyPage, linked: true },
  { path: "admin", title: "Admin", page: adminPage, admin: true },
];

let cleanup: Cleanup | void;
let project = "";
let status: Promise<AuthStatus | null> | null = null;

async function whoami(): Promise<string> {
  const me = await get<components["schemas"]["WhoAmI"]>("/v1/whoami");
  return me.project_name;
}

function shell(current: string): HTMLElement {
  const main = h("main", { id: "page" });
  const nav = h(
    "nav",
    { class: "nav", "aria-label": "Workspace" },
    PAGES.filter((p) => !p.linked && (!p.admin || isAdmin())).map((p) =>
      h("a", { href: `#/${p.path}`, class: p.path === current ? "active" : null, "data-page": p.path }, p.title),
    ),
  );
  const header = h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "#/outcomes" }, "Sextant"),
    projectPicker(),
    h(
      "button",
      {
        class: "link signout",
        type: "button",
        onclick: () => {
          void signOut().finally(() => {
            project = "";
            location.hash = "#/signin";
          });
        },
      },
      "Sign out",
    ),
  );
  return h("div", { class: "shell" }, header, nav, main);
}

/** The project's name; a person with several projects picks one here. */
function projectPicker(): HTMLElement {
  const person = account.person();
  if (!person || person.projects.length < 2 || keys.read()) return h("span", { class: "project" }, project);
  const current = account.project();
  return h(
    "select",
    {
      class: "project",
      id: "project-picker",
      "aria-label": "Project",
      onchange: (e: Event) => {
        account.choose((e.target as HTMLSelectElement).value);
        project = "";
        void route();
      },
    },
    person.projects.map((p) => h("option", { value: p.id, selected: p.id === current?.id }, p.name)),
  );
}

async function route(): Promise<void> {
  const app = document.getElementById("app")!;
  const [path = "outcomes", ...args] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (typeof cleanup === "function") cleanup();
  cleanup = undefined;
  if (!status) status = loadStatus().catch(() => null);
  if (!keys.read() && !keys.admin()) await status;
  if (path === "signin" || !signedIn()) {
    clear(app);
    app.appendChild(signInPage(status));
    return;
  }
  if (!project && readsData()) {
    try {
      project = await whoami();
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        const why = keys.read() ? "That read key was not accepted. Check it and sign in again." : "Your session has ended. Sign in again.";
        await signOut().catch(() => undefined);
        clear(app);
        app.appendChild(signInPage(status, why));
        return;
      }
      project = "";
    }
  }
  const entry = PAGES.find((p) => p.path === path) || (readsData() ? PAGES[0] : PAGES[PAGES.length - 1]);
  if (!readsData() && !entry.admin && !entry.linked) {
    location.hash = "#/admin";
    return;
  }
  document.title = `${entry.title} · Sextant${project ? ` · ${project}` : ""}`;
  clear(app);
  const frame = shell(entry.path);
  app.appendChild(frame);
  const root = frame.querySelector("main") as HTMLElement;
  root.dataset.page = entry.path;
  try {
    cleanup = entry.page(root, args);
  } catch (error) {
    root.appendChild(h("p", { class: "error" }, String(error)));
  }
}

window.addEventListener("hashchange", () => void route());
void route();
