/** The outcome board: value, trend, progress to target, forecast, and what aims at each. */
import { get } from "../api";
import type { components } from "../api-schema";
import { timeChart } from "../charts";
import { h } from "../dom";
import { formatValue, percent, unitOf } from "../format";
import { historyLink } from "./history";

type OutcomeView = components["schemas"]["OutcomeView"];
type MetricPage = components["schemas"]["Page_MetricDefinition_"];

const STATUS: Record<string, string> = {
  achieved: "Target reached",
  on_track: "On track",
  off_track: "Off track",
  no_forecast: "Too early to forecast",
  no_data: "No data yet",
};

export function outcomesPage(root: HTMLElement): () => void {
  const list = h("div", { class: "outcomes" }, h("p", { class: "note" }, "Loading outcomes…"));
  root.append(
    h("h1", null, "Outcomes"),
    h("p", { class: "lede" }, "What the team set out to change, where it stands, and where it is heading at the current pace."),
    list,
  );
  const charts: ReturnType<typeof timeChart>[] = [];
  Promise.all([get<OutcomeView[]>("/v1/outcomes"), get<MetricPage>("/v1/metrics?limit=1000")])
    .then(([outcomes, metrics]) => {
      list.textContent = "";
      if (!outcomes.length) list.append(h("p", null, "No outcomes yet. An admin adds them (admin API or YAML: outcomes)."));
      for (const view of outcomes) {
        const metric = metrics.items.find((m) => m.id === view.outcome.metric) || { id: "", metric_kind: view.metric_kind || "count" };
        const { unit, currency } = unitOf(metric);
        const fmt = (v: number | null): string => formatValue(v, unit, currency);
        const o = view.outcome;
        const chart = timeChart(unit, currency, 180, false);
        charts.push(chart);
        const progress = view.progress === null ? null : Math.max(0, Math.min(1, view.progress));
        const el = h(
          "section",
          { class: `card outcome status-${view.status}`, "data-outcome": o.id },
          h("div", { class: "outcome-head" }, h("h2", null, o.name), h("span", { class: `badge ${view.status}` }, STATUS[view.status] || view.status)),
          h("p", { class: "note" }, `${view.metric_name}: ${o.direction === "increase" ? "raise" : "lower"} to ${fmt(o.target)} by ${o.target_date}`, o.owner ? ` · owner ${o.owner}` : "", " · ", historyLink("outcome", o.project_id, o.id)),
          o.why ? h("p", { class: "why" }, o.why) : null,
          h(
            "div",
            { class: "tiles" },
            h("div", { class: "tile" }, h("span", { class: "tile-label" }, "Now (today so far)"), h("span", { class: "tile-value", "data-field": "current" }, fmt(view.current))),
            h("div", { class: "tile" }, h("span", { class: "tile-label" }, "Baseline"), h("span", { class: "tile-value" }, fmt(view.baseline))),
            h("div", { class: "tile" }, h("span", { class: "tile-label" }, "Target"), h("span", { class: "tile-value" }, fmt(o.target))),
            h(
              "div",
              { class: "tile" },
              h("span", { class: "tile-label" }, `Forecast for ${o.target_date}`),
              h("span", { class: "tile-value", "data-field": "forecast" }, view.forecast ? fmt(view.forecast.estimate) : "–"),
              view.forecast ? h("span", { class: "tile-sub" }, `95 % interval ${fmt(view.forecast.low)} to ${fmt(view.forecast.high)}`) : h("span", { class: "tile-sub" }, "needs 3 complete days"),
            ),
          ),
          h(
            "div",
            { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": progress === null ? 0 : Math.round(progress * 100) },
            h("div", { class: "progress-fill", style: `width:${progress === null ? 0 : progress * 100}%` }),
          ),
          h("p", { class: "note" }, view.progress === null ? "Progress: –" : `Progress from baseline to target: ${percent(view.progress, 0)}`),
          chart.el,
          h("p", { class: "legend" }, h("span", { class: "key actual" }, "daily value"), h("span", { class: "key forecast" }, "forecast and its 95 % interval"), h("span", { class: "key target" }, "target")),
          view.forecast ? h("p", { class: "method" }, `Forecast: ${view.forecast.method}; ${view.forecast.points} days, trend ${fmt(view.forecast.slope_per_day)} a day.`) : null,
          h(
            "div",
            { class: "aiming" },
            h("strong", null, "Aiming at it: "),
            view.experiments.length || view.features.length
              ? [
                  ...view.experiments.map((e) => h("a", { class: "chip", href: `#/experiments/${encodeURIComponent(e.id)}` }, `${e.name} (${e.role === "primary" ? "experiment" : "guardrail"})`)),
                  ...view.features.map((f) => h("span", { class: "chip feature" }, `feature ${f.name}`)),
                ]
              : h("span", { class: "note" }, "no experiment or feature yet"),
          ),
        );
        list.append(el);
        const times = view.days.map((d) => Date.parse(d.t));
        const values = view.days.map((d) => d.value);
        const lines = [{ label: view.metric_name, values, fill: true }];
        if (view.forecast && times.length) {
          const end = Date.parse(`${view.forecast.at}T00:00:00Z`);
          const last = times[times.length - 1];
          const lastValue = [...values].reverse().find((v) => v !== null) ?? null;
          const all = [...times, end];
          const pad = (arr: (number | null)[]): (number | null)[] => [...arr, null];
          const fc = (target: number): (number | null)[] => all.map((t) => (t === last ? lastValue : t === end ? target : null));
          chart.update(all, [
            { label: view.metric_name, values: pad(values), fill: true },
            { label: "forecast", values: fc(view.forecast.estimate), dash: true, color: "#8a63d2" },
            { label: "95 % low", values: fc(view.forecast.low), dash: true, color: "#c9b8ee", width: 1 },
            { label: "95 % high", values: fc(view.forecast.high), dash: true, color: "#c9b8ee", width: 1 },
            { label: "target", values: all.map(() => o.target), dash: true, color: "#2aa876", width: 1 },
          ]);
        } else {
          chart.update(times, lines);
        }
      }
    })
    .catch((e) => {
      list.textContent = "";
      list.append(h("p", { class: "error" }, String(e.message || e)));
    });
  return () => charts.forEach((c) => c.destroy());
}
