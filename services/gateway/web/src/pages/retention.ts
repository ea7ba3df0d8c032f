/** Retention builder over /v1/insights/retention: cohort and return events; a heat table. */
import { post } from "../api";
import type { components } from "../api-schema";
import { bars } from "../charts";
import { card, clear, h } from "../dom";
import { percent } from "../format";
import { eventNames } from "./funnels";

type RetentionResult = components["schemas"]["RetentionResult"];

export function retentionPage(root: HTMLElement): void {
  const cohortEvent = h("input", { id: "cohort-event", list: "event-names", value: "Signed Up", "aria-label": "Cohort event" });
  const returnEvent = h("input", { id: "return-event", list: "event-names", value: "$page", "aria-label": "Return event" });
  const period = h("select", { id: "retention-period", "aria-label": "Period" }, h("option", { value: "day", selected: true }, "by day"), h("option", { value: "week" }, "by week"));
  const out = h("div", { id: "retention-result" });
  const run = async (): Promise<void> => {
    clear(out);
    const weeks = period.value === "week";
    const periods = weeks ? 8 : 14;
    const to = new Date(Date.now() + 60e3);
    const from = new Date(to.getTime() - (weeks ? 8 * 7 : 14) * 86400e3);
    try {
      const result = await post<RetentionResult>("/v1/insights/retention", {
        from: from.toISOString(),
        to: to.toISOString(),
        cohort_event: cohortEvent.value,
        return_event: returnEvent.value,
        period: period.value,
        periods,
      });
      const head = h("tr", null, h("th", null, "cohort"), h("th", { class: "num" }, "users"), Array.from({ length: periods + 1 }, (_, k) => h("th", { class: "num" }, `${period.value === "week" ? "W" : "D"}${k}`)));
      const rows = result.cohorts.map((c) =>
        h(
          "tr",
          null,
          h("td", null, c.cohort.slice(0, 10)),
          h("td", { class: "num", "data-cohort-users": c.cohort.slice(0, 10) }, c.users.toLocaleString("en")),
          c.rates.map((r, k) => h("td", { class: "num heat", style: `background:rgba(58,109,240,${(0.08 + 0.8 * r).toFixed(2)});color:${r > 0.5 ? "#fff" : "#1d2330"}`, title: `${c.returned[k]} users` }, percent(r, 0))),
        ),
      );
      // The average curve, weighted by cohort size, over cohorts old enough for each period.
      const curve = Array.from({ length: periods + 1 }, (_, k) => {
        const old = result.cohorts.filter((c) => c.returned.length > k && Date.parse(c.cohort) + k * (weeks ? 7 : 1) * 86400e3 <= Date.now());
        const users = old.reduce((a, c) => a + c.users, 0);
        return users ? old.reduce((a, c) => a + c.returned[k], 0) / users : null;
      });
      const label = weeks ? "week" : "day";
      const curveBars = bars(curve.map((v, k) => ({ label: `${label} ${k}`, value: v ?? 0, text: percent(v, 0) })));
      out.append(
        card("Retention curve", curveBars, "share of each cohort returning, by period since its first event (cohorts old enough)"),
        card("Cohorts", h("div", { class: "table-wrap" }, h("table", { class: "retention" }, h("thead", null, head), h("tbody", null, rows)))),
      );
    } catch (e) {
      out.append(h("p", { class: "error" }, String((e as Error).message || e)));
    }
  };
  root.append(
    h("h1", null, "Retention"),
    h("p", { class: "lede" }, "Users grouped by the day (or week) of their first cohort event, and how many come back."),
    h("form", { class: "builder controls", onsubmit: (e: Event) => (e.preventDefault(), void run()) }, h("label", null, "first ", cohortEvent), h("label", null, "comes back with ", returnEvent), period, h("button", { type: "submit", class: "primary", id: "retention-run" }, "Show retention")),
    out,
  );
  void eventNames().then((list) => root.append(list));
  void run();
}
