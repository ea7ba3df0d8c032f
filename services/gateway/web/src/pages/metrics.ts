/** Metric explorer: range and interval, breakdowns, the previous period, live windows. */
import { get, query, stream } from "../api";
import type { components } from "../api-schema";
import { timeChart, type Line } from "../charts";
import { card, clear, h, table } from "../dom";
import { formatValue, kindLabel, signedPercent, unitOf, type MetricDef } from "../format";
import { historyLink } from "./history";

type SeriesResult = components["schemas"]["SeriesResult"];
type MetricPage = components["schemas"]["Page_MetricDefinition_"];
type LivePoint = components["schemas"]["LivePoint"];

const RANGES: Record<string, { ms: number; interval: string; label: string }> = {
  "1h": { ms: 3600e3, interval: "minute", label: "Last hour" },
  "6h": { ms: 6 * 3600e3, interval: "minute", label: "Last 6 hours" },
  "24h": { ms: 86400e3, interval: "hour", label: "Last 24 hours" },
  "7d": { ms: 7 * 86400e3, interval: "hour", label: "Last 7 days" },
  "30d": { ms: 30 * 86400e3, interval: "day", label: "Last 30 days" },
};
const STEP: Record<string, number> = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const ADDITIVE = new Set(["count", "sum", "mean", "conversion", "nps", "csat"]);
/** Kinds whose value is Σsum/Σcount: NPS and CSAT windows hold each response's value. */
const MEANS = new Set(["mean", "nps", "csat"]);

/** Components of one bucket and breakdown value. */
interface Cell {
  value: number | null;
  count: number;
  sum: number;
  denominator: number;
  quantiles?: Record<string, number | null> | null;
  version: number;
}

function combine(kind: string, cells: Cell[]): Cell {
  const count = cells.reduce((a, c) => a + c.count, 0);
  const sum = cells.reduce((a, c) => a + c.sum, 0);
  const denominator = cells.reduce((a, c) => a + c.denominator, 0);
  let value: number | null = null;
  if (kind === "count") value = count;
  else if (kind === "sum") value = sum;
  else if (MEANS.has(kind)) value = count ? sum / count : null;
  else if (kind === "conversion") value = denominator ? count / denominator : null;
  else value = cells.length === 1 ? cells[0].value : null;
  return { value, count, sum, denominator, quantiles: cells.length === 1 ? cells[0].quantiles : null, version: 0 };
}

/** The headline over the whole range: totals for additive kinds, else the latest bucket. */
export function headline(kind: string, cells: Cell[]): { value: number | null; label: string } {
  if (ADDITIVE.has(kind)) {
    const total = combine(kind, cells);
    const label = { count: "total in range", sum: "total in range", mean: "mean over range", conversion: "conversion over range", nps: "NPS over range", csat: "CSAT over range" }[kind] || "";
    return { value: total.value, label };
  }
  return { value: null, label: "" };
}

export function metricsPage(root: HTMLElement, args: string[]): () => void {
  const controller = new AbortController();
  let metrics: MetricDef[] = [];
  const state = { metric: args[0] || "", range: "1h", interval: "minute", breakdown: false, compare: true };
  const body = h("div", { class: "explorer" });
  root.append(h("h1", null, "Metrics"), body);
  let stop: (() => void) | null = null;

  get<MetricPage>("/v1/metrics?limit=1000")
    .then((page) => {
      metrics = page.items;
      if (!state.metric && metrics.length) state.metric = metrics[0].id;
      render();
    })
    .catch((e) => body.append(h("p", { class: "error" }, String(e.message || e))));

  function render(): void {
    stop?.();
    clear(body);
    const metric = metrics.find((m) => m.id === state.metric);
    if (!metric) {
      body.append(h("p", null, "No metrics are defined for this project yet."));
      return;
    }
    const select = h(
      "select",
      { id: "metric-select", "aria-label": "Metric", onchange: (e: Event) => ((state.metric = (e.target as HTMLSelectElement).value), (location.hash = `#/metrics/${state.metric}`), render()) },
      metrics.map((m) => h("option", { value: m.id, selected: m.id === state.metric }, m.name || m.id)),
    );
    const range = h(
      "select",
      { id: "range", "aria-label": "Range", onchange: (e: Event) => ((state.range = (e.target as HTMLSelectElement).value), (state.interval = RANGES[state.range].interval), render()) },
      Object.entries(RANGES).map(([k, r]) => h("option", { value: k, selected: k === state.range }, r.label)),
    );
    const interval = h(
      "select",
      { id: "interval", "aria-label": "Interval", onchange: (e: Event) => ((state.interval = (e.target as HTMLSelectElement).value), render()) },
      ["minute", "hour", "day"].map((k) => h("option", { value: k, selected: k === state.interval, disabled: RANGES[state.range].ms / STEP[k] > 2000 || RANGES[state.range].ms / STEP[k] < 1 }, `per ${k}`)),
    );
    const breakdown = metric.breakdown
      ? h("label", { class: "check" }, h("input", { type: "checkbox", id: "by-breakdown", checked: state.breakdown, onchange: (e: Event) => ((state.breakdown = (e.target as HTMLInputElement).checked), render()) }), ` by ${metric.breakdown}`)
      : null;
    const compare = h("label", { class: "check" }, h("input", { type: "checkbox", id: "compare", checked: state.compare, onchange: (e: Event) => ((state.compare = (e.target as HTMLInputElement).checked), render()) }), " previous period");
    body.append(h("div", { class: "controls" }, select, range, interval, breakdown, compare));
    const { unit, currency } = unitOf(metric);
    const describe = `${kindLabel(metric.metric_kind)} of ${metric.event}${metric.property ? ` · ${metric.property}` : ""}${metric.conversion_event ? ` → ${metric.conversion_event}` : ""}${metric.breakdown ? ` · by ${metric.breakdown}` : ""}`;
    const value = h("p", { class: "big", id: "headline", "data-metric": metric.id }, "…");
    const valueLabel = h("p", { class: "note", id: "headline-label" });
    const delta = h("p", { class: "delta", id: "delta" });
    const status = h("p", { class: "status", id: "live-status" }, "loading…");
    const chart = timeChart(unit, currency, 260);
    const breakdownTable = h("div", { id: "breakdown-table" });
    body.append(card(metric.name || metric.id, h("div", null, h("div", { class: "headline" }, value, delta), valueLabel, chart.el, status, breakdownTable), [describe, " · ", historyLink("metric", metric.project_id, metric.id)], { id: "metric-card" }));
    stop = explore(metric, chart, value, valueLabel, delta, status, breakdownTable, unit, currency);
  }

  function explore(
    metric: MetricDef,
    chart: ReturnType<typeof timeChart>,
    valueEl: HTMLElement,
    labelEl: HTMLElement,
    deltaEl: HTMLElement,
    status: HTMLElement,
    tableEl: HTMLElement,
    unit: ReturnType<typeof unitOf>["unit"],
    currency: string | undefined,
  ): () => void {
    const local = new AbortController();
    const kind = metric.metric_kind;
    const step = STEP[state.interval];
    const span = RANGES[state.range].ms;
    const byBreakdown = Boolean(metric.breakdown) && (state.breakdown || ADDITIVE.has(kind));
    // bucket start (ms) -> breakdown value -> cell
    const cells = new Map<number, Map<string, Cell>>();
    let previous: Cell[] = [];
    let previousTimes: number[] = [];
    let refetch: number | null = null;

    const load = async (): Promise<void> => {
      const to = new Date();
      const from = new Date(to.getTime() - span);
      const params = { from: from.toISOString(), to: to.toISOString(), interval: state.interval, breakdown: byBreakdown };
      const result = await get<SeriesResult>(`/v1/metrics/${encodeURIComponent(metric.id)}/series${query(params)}`);
      cells.clear();
      for (const s of result.series) {
        for (const p of s.points) {
          const t = Date.parse(p.t);
          if (!cells.has(t)) cells.set(t, new Map());
          cells.get(t)!.set(s.breakdown ?? "", { value: p.value, count: p.count, sum: p.sum, denominator: p.denominator, quantiles: p.quantiles, version: 0 });
        }
      }
      if (state.compare) {
        const prev = await get<SeriesResult>(
          `/v1/metrics/${encodeURIComponent(metric.id)}/series${query({ from: new Date(from.getTime() - span).toISOString(), to: from.toISOString(), interval: state.interval })}`,
        );
        const points = prev.series[0]?.points || [];
        previous = points.map((p) => ({ value: p.value, count: p.count, sum: p.sum, denominator: p.denominator, quantiles: p.quantiles, version: 0 }));
        previousTimes = points.map((p) => Date.parse(p.t) + span);
      }
      draw();
    };

    const draw = (): void => {
      const horizon = Date.now() - span;
      const times = [...cells.keys()].filter((t) => t >= horizon - step).sort((a, b) => a - b);
      const lines: Line[] = [];
      const labels = new Set<string>();
      for (const t of times) for (const b of cells.get(t)!.keys()) labels.add(b);
      const totals = times.map((t) => combine(kind, [...cells.get(t)!.values()]));
      if (state.breakdown && metric.breakdown) {
        const ranked = [...labels].sort((a, b) => sumCount(b) - sumCount(a)).slice(0, 8);
        for (const label of ranked) lines.push({ label: label || "(none)", values: times.map((t) => cells.get(t)!.get(label)?.value ?? null) });
      } else {
        lines.push({ label: metric.name || metric.id, values: totals.map((c) => c.value), fill: true });
        if (state.compare && previous.length) {
          const prevAt = new Map(previousTimes.map((t, i) => [t, previous[i].value]));
          lines.push({ label: "previous period", values: times.map((t) => prevAt.get(t) ?? null), dash: true, color: "#9aa3b5" });
        }
      }
      chart.update(times, lines);
      const all = times.flatMap((t) => [...cells.get(t)!.values()]);
      const head = headline(kind, all);
      if (ADDITIVE.has(kind)) {
        valueEl.textContent = formatValue(head.value, unit, currency);
        valueEl.dataset.value = head.value === null ? "" : String(head.value);
        labelEl.textContent = `${head.label} · ${RANGES[state.range].label.toLowerCase()}`;
        if (state.compare && previous.length) {
          const before = headline(kind, previous).value;
          const change = before && head.value !== null ? (head.value - before) / Math.abs(before) : null;
          deltaEl.textContent = change === null ? "" : `${signedPercent(change)} vs previous period`;
          deltaEl.className = `delta ${change === null ? "" : change >= 0 ? "up" : "down"}`;
        }
      } else {
        // The latest complete bucket (the current one is still filling), else the current.
        const done = times.filter((t) => t + step <= Date.now());
        const latest = [...done].reverse().find((t) => totals[times.indexOf(t)].value !== null) ?? [...times].reverse().find((t) => totals[times.indexOf(t)].value !== null);
        const cell = latest !== undefined ? totals[times.indexOf(latest)] : null;
        valueEl.textContent = formatValue(cell?.value ?? null, unit, currency);
        valueEl.dataset.value = cell?.value === null || cell?.value === undefined ? "" : String(cell.value);
        const at = latest !== undefined ? new Date(latest).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }) : "";
        if (kind === "percentiles" && cell?.quantiles) {
          labelEl.textContent = "";
          labelEl.append(
            `median of the ${state.interval} from ${at} · `,
            ...Object.entries(cell.quantiles).map(([q, v]) => h("span", { class: "pill" }, `${q} ${formatValue(v, unit, currency)}`)),
          );
        } else {
          labelEl.textContent = latest !== undefined ? `${kindLabel(kind)} in the ${state.interval} from ${at}` : "no data in range";
        }
        deltaEl.textContent = "";
      }
      if (metric.breakdown) {
        clear(tableEl);
        const rows = [...labels]
          .map((label) => ({ label, cell: combine(kind, times.map((t) => cells.get(t)!.get(label)).filter((c): c is Cell => Boolean(c))) }))
          .sort((a, b) => b.cell.count - a.cell.count);
        if (ADDITIVE.has(kind) && rows.length) {
          tableEl.append(
            table(
              [metric.breakdown, "value", "events"],
              rows.map((r) => [r.label || "(none)", h("span", { "data-breakdown": r.label }, formatValue(r.cell.value, unit, currency)), r.cell.count.toLocaleString("en")]),
              { class: "compact", id: "breakdown-values" },
            ),
          );
        }
      }
    };

    const sumCount = (label: string): number => [...cells.values()].reduce((a, m) => a + (m.get(label)?.count || 0), 0);

    const scheduleRefetch = (): void => {
      // Sketch metrics of several values cannot be totalled here: read /series again once
      // the warehouse has the window (the sink writes in batches), then once more.
      if (refetch !== null) return;
      refetch = window.setTimeout(() => {
        refetch = null;
        void load().catch(() => undefined);
        window.setTimeout(() => void load().catch(() => undefined), 4000);
      }, 1500);
    };

    const apply = (p: LivePoint): void => {
      if (state.interval !== "minute") {
        scheduleRefetch();
        return;
      }
      const t = Date.parse(p.window_start);
      if (!cells.has(t)) cells.set(t, new Map());
      const bucket = cells.get(t)!;
      const key = byBreakdown ? p.breakdown ?? "" : "";
      if (!byBreakdown && metric.breakdown) {
        scheduleRefetch();
        return;
      }
      const old = bucket.get(key);
      if (old && old.version > p.version) return;
      bucket.set(key, { value: p.value, count: p.count, sum: p.sum, denominator: p.denominator, quantiles: p.quantiles, version: p.version });
      status.dataset.updates = String(Number(status.dataset.updates || "0") + 1);
      draw();
    };

    load()
      .then(() => {
        void stream(
          `/v1/metrics/${encodeURIComponent(metric.id)}/live`,
          (e) => {
            if (e.event === "point") apply(JSON.parse(e.data) as LivePoint);
            else if (e.event === "reset") void load();
            else if (e.event === "ready") status.textContent = "live";
          },
          local.signal,
          (s) => (status.textContent = s),
        );
      })
      .catch((e) => (status.textContent = String(e.message || e)));
    const tick = window.setInterval(draw, 30000);
    return () => {
      local.abort();
      window.clearInterval(tick);
      chart.destroy();
    };
  }

  return () => {
    controller.abort();
    stop?.();
  };
}
