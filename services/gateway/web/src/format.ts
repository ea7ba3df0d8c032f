/** Numbers as people read them: units from the metric's kind and unit. */
import type { components } from "./api-schema";

export type MetricDef = components["schemas"]["MetricDefinition"];
export type MetricKind = components["schemas"]["MetricKind"];

export type Unit = "count" | "percent" | "currency" | "seconds" | "ms" | "points" | "number";

/** `unit` is absent where the metric's definition is not known (only its kind). */
export function unitOf(metric: { metric_kind: MetricKind; unit?: string }): { unit: Unit; currency?: string } {
  const u = metric.unit || "";
  if (metric.metric_kind === "conversion" || metric.metric_kind === "csat" || u === "percent") return { unit: "percent" };
  if (metric.metric_kind === "nps") return { unit: "points" };
  if (/^[A-Z]{3}$/.test(u)) return { unit: "currency", currency: u };
  if (u === "seconds") return { unit: "seconds" };
  if (u === "ms") return { unit: "ms" };
  if (metric.metric_kind === "count" || metric.metric_kind === "unique_users") return { unit: "count" };
  return { unit: "number" };
}

export function formatValue(value: number | null | undefined, unit: Unit, currency?: string, compact = false): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  switch (unit) {
    case "percent":
      return `${(value * 100).toFixed(Math.abs(value) < 0.1 ? 2 : 1)} %`;
    case "currency":
      return new Intl.NumberFormat("en", {
        style: "currency",
        currency: currency || "EUR",
        notation: compact && Math.abs(value) >= 10000 ? "compact" : "standard",
        maximumFractionDigits: Math.abs(value) >= 1000 ? 0 : 2,
      }).format(value);
    case "seconds":
      return duration(value);
    case "ms":
      return duration(value / 1000);
    case "points":
      return value.toFixed(1);
    case "count":
      return compact && Math.abs(value) >= 10000
        ? new Intl.NumberFormat("en", { notation: "compact" }).format(value)
        : Math.round(value).toLocaleString("en");
    default:
      return Math.abs(value) >= 1000 ? Math.round(value).toLocaleString("en") : String(Number(value.toPrecision(4)));
  }
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

export function percent(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || !Number.isFinite(value) ? "–" : `${(value * 100).toFixed(digits)} %`;
}

export function signedPercent(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${value >= 0 ? "+" : "−"}${Math.abs(value * 100).toFixed(digits)} %`;
}

export function when(iso: string, seconds = false): string {
  return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: seconds ? "medium" : "short" });
}

export function kindLabel(kind: string): string {
  return (
    {
      count: "count",
      unique_users: "unique users",
      sum: "sum",
      mean: "mean",
      percentiles: "percentiles",
      conversion: "conversion",
      nps: "NPS",
      csat: "CSAT",
    } as Record<string, string>
  )[kind] || kind;
}
