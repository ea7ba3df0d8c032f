/** Web analytics: visitors, sessions, bounce rate, pages, sources, devices and countries. */
import { get, query } from "../api";
import type { components } from "../api-schema";
import { bars, timeChart } from "../charts";
import { card, h, table } from "../dom";
import { duration, percent } from "../format";

type Schemas = components["schemas"];
type Row = Schemas["WebRow"];
type WebResult = Schemas["WebResult"];

const TITLES: Record<string, string> = { entry: "Entry pages", exit: "Exit pages", referrer: "Referrers", campaign: "UTM campaigns", source: "UTM sources", device: "Devices", country: "Countries" };

export function webPage(root: HTMLElement): () => void {
  const range = h("select", { id: "web-range", "aria-label": "Range" }, [["1", "Last 24 hours"], ["7", "Last 7 days"], ["30", "Last 30 days"]].map(([v, l]) => h("option", { value: v }, l)));
  const out = h("div", { id: "web" });
  const charts: ReturnType<typeof timeChart>[] = [];
  const load = async (): Promise<void> => {
    const days = Number(range.value);
    const to = new Date(Date.now() + 60e3);
    const from = new Date(to.getTime() - days * 86400e3);
    const r = await get<WebResult>(`/v1/web${query({ from: from.toISOString(), to: to.toISOString(), interval: days > 7 ? "day" : "hour" })}`);
    out.textContent = "";
    charts.forEach((c) => c.destroy());
    const t = r.totals;
    const tile = (label: string, value: string, field: string): HTMLElement => h("div", { class: "tile" }, h("span", { class: "tile-label" }, label), h("span", { class: "tile-value", "data-field": field }, value));
    const chart = timeChart("count", undefined, 200);
    charts.push(chart);
    const row = (rows: Row[], withBounce: boolean): HTMLElement =>
      rows.length
        ? bars(rows.map((x) => ({ label: x.value, value: x.visitors, text: `${x.visitors.toLocaleString("en")}${withBounce && x.bounce_rate !== null ? ` · bounce ${percent(x.bounce_rate, 0)}` : ""}` })))
        : h("p", { class: "note" }, "nothing yet");
    out.append(
      h(
        "div",
        { class: "tiles wide" },
        tile("Visitors", t.visitors.toLocaleString("en"), "visitors"),
        tile("Sessions", t.sessions.toLocaleString("en"), "sessions"),
        tile("Page views", t.pageviews.toLocaleString("en"), "pageviews"),
        tile("Bounce rate", percent(t.bounce_rate, 0), "bounce"),
        tile("Views per session", t.views_per_session === null ? "–" : t.views_per_session.toFixed(1), "views-per-session"),
        tile("Session length", t.mean_session_seconds === null ? "–" : duration(t.mean_session_seconds), "duration"),
      ),
      card("Visitors and page views", chart.el),
      h(
        "div",
        { class: "grid" },
        card("Top pages", table(["page", "visitors", "views"], r.pages.map((p) => [p.value, p.visitors.toLocaleString("en"), p.pageviews.toLocaleString("en")]), { id: "top-pages" })),
        ...Object.keys(TITLES).map((k) => card(TITLES[k], row(r.breakdowns[k] || [], k === "entry" || k === "referrer"), "visitors by session"),),
      ),
      h("p", { class: "method" }, `${r.method}. Countries come from the browser's locale unless a client sends context.location.country.`),
    );
    chart.update(
      r.series.map((p) => Date.parse(p.t)),
      [
        { label: "visitors", values: r.series.map((p) => p.visitors), fill: true },
        { label: "page views", values: r.series.map((p) => p.pageviews) },
      ],
    );
  };
  range.addEventListener("change", () => void load());
  root.append(h("h1", null, "Web"), h("div", { class: "controls" }, range), out);
  load().catch((e) => (out.textContent = String(e.message || e)));
  return () => charts.forEach((c) => c.destroy());
}
