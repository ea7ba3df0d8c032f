/** Charts: uPlot for time series (axes with times and units), SVG for intervals. */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h, svg } from "./dom";
import { formatValue, type Unit } from "./format";

export const PALETTE = ["#3a6df0", "#e8833a", "#2aa876", "#c9418b", "#8a63d2", "#d4b02a", "#4bb3c8", "#8c8c8c"];

export interface Line {
  label: string;
  values: (number | null)[];
  color?: string;
  dash?: boolean;
  width?: number;
  fill?: boolean;
}

export interface TimeChart {
  el: HTMLElement;
  update(times: number[], lines: Line[]): void;
  destroy(): void;
}

/** A time-series chart; `times` in milliseconds. */
export function timeChart(unit: Unit, currency: string | undefined, height = 220, legend = true): TimeChart {
  const el = h("div", { class: "chart" });
  let plot: uPlot | null = null;
  let observer: ResizeObserver | null = null;
  const width = (): number => Math.max(240, el.clientWidth || el.parentElement?.clientWidth || 600);
  const build = (times: number[], lines: Line[]): void => {
    plot?.destroy();
    const opts: uPlot.Options = {
      width: width(),
      height,
      legend: { show: legend && lines.length > 1, live: false },
      cursor: { y: false },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min ?? 0), max && max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: "#667", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#dde" } },
        {
          stroke: "#667",
          grid: { stroke: "#eef0f3" },
          ticks: { stroke: "#dde" },
          size: 64,
          values: (_u, splits) => splits.map((v) => formatValue(v, unit, currency, true)),
        },
      ],
      series: [
        {},
        ...lines.map((line, i) => ({
          label: line.label,
          stroke: line.color || PALETTE[i % PALETTE.length],
          width: line.width ?? 2,
          dash: line.dash ? [6, 4] : undefined,
          fill: line.fill ? `${line.color || PALETTE[i % PALETTE.length]}22` : undefined,
          spanGaps: false,
          points: { show: times.length < 40 },
          value: (_u: uPlot, v: number | null) => formatValue(v, unit, currency),
        })),
      ],
    };
    plot = new uPlot(opts, [times.map((t) => t / 1000), ...lines.map((l) => l.values)] as uPlot.AlignedData, el);
  };
  let last: { times: number[]; lines: Line[] } | null = null;
  return {
    el,
    update(times, lines) {
      const shape = last ? last.lines.map((l) => l.label + l.dash).join() : "";
      last = { times, lines };
      if (!plot || shape !== lines.map((l) => l.label + l.dash).join()) build(times, lines);
      else plot.setData([times.map((t) => t / 1000), ...lines.map((l) => l.values)] as uPlot.AlignedData);
      if (!observer) {
        observer = new ResizeObserver(() => {
          if (plot && Math.abs(plot.width - width()) > 4) plot.setSize({ width: width(), height });
        });
        observer.observe(el);
      }
    },
    destroy() {
      observer?.disconnect();
      plot?.destroy();
    },
  };
}

export interface IntervalRow {
  label: string;
  estimate: number | null;
  low: number | null;
  high: number | null;
  outerLow?: number | null;
  outerHigh?: number | null;
  good?: boolean | null;
}

/** Horizontal interval chart: a point per row, its interval, an outer (always-valid) interval
 * beneath in a lighter tone, and the zero line. Values formatted by `fmt`. */
export function intervalChart(rows: IntervalRow[], fmt: (v: number) => string): SVGElement {
  const values = rows.flatMap((r) => [r.low, r.high, r.outerLow, r.outerHigh, r.estimate, 0]).filter((v): v is number => v !== null && v !== undefined && Number.isFinite(v));
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (min === max) {
    min -= 1;
    max += 1;
  }
  const pad = (max - min) * 0.08;
  min -= pad;
  max += pad;
  const W = 600;
  const rowH = 34;
  const left = 130;
  const H = rows.length * rowH + 28;
  const x = (v: number): number => left + ((v - min) / (max - min)) * (W - left - 10);
  const parts: SVGElement[] = [];
  parts.push(svg("line", { x1: x(0), x2: x(0), y1: 4, y2: H - 22, stroke: "#889", "stroke-dasharray": "3 3" }));
  const span = max - min;
  const ticks = [min + pad, max - pad].filter((t) => Math.abs(t) > span * 0.12);
  for (const tick of [...ticks, 0]) {
    parts.push(svg("text", { x: x(tick), y: H - 6, "text-anchor": "middle", class: "tick" }, fmt(tick)));
  }
  rows.forEach((r, i) => {
    const y = 16 + i * rowH;
    const color = r.good === true ? "#2aa876" : r.good === false ? "#d2453b" : "#3a6df0";
    parts.push(svg("text", { x: 4, y: y + 4, class: "label" }, r.label));
    if (r.outerLow !== null && r.outerLow !== undefined && r.outerHigh !== null && r.outerHigh !== undefined) {
      parts.push(svg("rect", { x: x(r.outerLow), y: y - 7, width: Math.max(1, x(r.outerHigh) - x(r.outerLow)), height: 14, fill: color, opacity: 0.15, rx: 3 }));
    }
    if (r.low !== null && r.high !== null) {
      parts.push(svg("line", { x1: x(r.low), x2: x(r.high), y1: y, y2: y, stroke: color, "stroke-width": 3 }));
    }
    if (r.estimate !== null) parts.push(svg("circle", { cx: x(r.estimate), cy: y, r: 5, fill: color }));
  });
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "intervals", role: "img" }, ...parts);
}

/** Horizontal bars (funnels, top lists): widths relative to the largest value. */
export function bars(rows: { label: string; value: number; text: string; sub?: string }[]): HTMLElement {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return h(
    "div",
    { class: "bars" },
    rows.map((r) =>
      h(
        "div",
        { class: "bar-row" },
        h("div", { class: "bar-label" }, r.label, r.sub ? h("span", { class: "sub" }, ` ${r.sub}`) : null),
        h("div", { class: "bar-track" }, h("div", { class: "bar-fill", style: `width:${(100 * r.value) / max}%` })),
        h("div", { class: "bar-value" }, r.text),
      ),
    ),
  );
}
