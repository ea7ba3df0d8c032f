/** Funnel builder over /v1/insights/funnels: steps, window, range, breakdown; bars and a table. */
import { get, post } from "../api";
import type { components } from "../api-schema";
import { bars } from "../charts";
import { card, clear, h, table } from "../dom";
import { duration, percent } from "../format";

type Schemas = components["schemas"];
type FunnelResult = Schemas["FunnelResult"];
type EventName = Schemas["EventName"];

export async function eventNames(): Promise<HTMLDataListElement> {
  const list = h("datalist", { id: "event-names" });
  try {
    const events = await get<EventName[]>("/v1/events");
    for (const e of events) list.append(h("option", { value: e.event }));
  } catch {
    /* suggestions only */
  }
  return list;
}

export const DAYS: Record<string, number> = { "1": 1, "7": 7, "30": 30 };

export function rangeSelect(id: string, value = "7"): HTMLSelectElement {
  return h("select", { id, "aria-label": "Range" }, Object.keys(DAYS).map((d) => h("option", { value: d, selected: d === value }, d === "1" ? "Last 24 hours" : `Last ${d} days`)));
}

export function funnelsPage(root: HTMLElement): void {
  const steps = h("ol", { class: "steps", id: "funnel-steps" });
  const addStep = (value = ""): void => {
    const input = h("input", { list: "event-names", value, "aria-label": "Step event", class: "step-event", required: true });
    steps.append(h("li", null, input, h("button", { type: "button", class: "link", onclick: (e: Event) => (e.target as HTMLElement).closest("li")!.remove() }, "remove")));
  };
  ["$page", "Product Viewed", "Added to Cart", "Checkout Started", "Order Completed"].forEach(addStep);
  const windowSel = h("select", { id: "funnel-window", "aria-label": "Conversion window" }, [["3600", "within 1 hour"], ["86400", "within 1 day"], ["604800", "within 7 days"]].map(([v, l]) => h("option", { value: v, selected: v === "86400" }, l)));
  const range = rangeSelect("funnel-range");
  const breakdown = h("input", { id: "funnel-breakdown", placeholder: "breakdown property (optional), e.g. plan", "aria-label": "Breakdown" });
  const out = h("div", { id: "funnel-result" });
  const run = async (): Promise<void> => {
    clear(out);
    out.append(h("p", { class: "note" }, "Counting…"));
    const to = new Date(Date.now() + 60e3);
    const from = new Date(to.getTime() - DAYS[range.value] * 86400e3);
    const events = [...steps.querySelectorAll<HTMLInputElement>(".step-event")].map((i) => i.value.trim()).filter(Boolean);
    try {
      const result = await post<FunnelResult>("/v1/insights/funnels", {
        from: from.toISOString(),
        to: to.toISOString(),
        steps: events.map((event) => ({ event })),
        window_seconds: Number(windowSel.value),
        breakdown: breakdown.value.trim() || null,
      });
      clear(out);
      for (const group of result.groups) {
        out.append(
          card(
            group.breakdown === null ? "All users" : `${breakdown.value}: ${group.breakdown}`,
            h(
              "div",
              null,
              bars(group.steps.map((s) => ({ label: `${s.step}. ${s.event}`, value: s.users, text: `${s.users.toLocaleString("en")} · ${percent(s.conversion_from_start)}` }))),
              table(
                ["step", "users", "from previous", "from start", "median time from previous"],
                group.steps.map((s) => [`${s.step}. ${s.event}`, h("span", { "data-step": s.step }, s.users.toLocaleString("en")), percent(s.conversion_from_previous), percent(s.conversion_from_start), s.median_seconds_from_previous === null ? "–" : duration(s.median_seconds_from_previous)]),
                { class: "funnel-table" },
              ),
            ),
          ),
        );
      }
    } catch (e) {
      clear(out);
      out.append(h("p", { class: "error" }, String((e as Error).message || e)));
    }
  };
  const form = h(
    "form",
    { class: "builder", onsubmit: (e: Event) => (e.preventDefault(), void run()) },
    h("h2", null, "Steps"),
    steps,
    h("button", { type: "button", class: "link", onclick: () => addStep() }, "+ add a step"),
    h("div", { class: "controls" }, windowSel, range, breakdown, h("button", { type: "submit", class: "primary", id: "funnel-run" }, "Show funnel")),
  );
  root.append(h("h1", null, "Funnels"), h("p", { class: "lede" }, "Users who did the steps in order, each step within the window of the first."), form, out);
  void eventNames().then((list) => root.append(list));
  void run();
}
