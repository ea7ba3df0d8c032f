/** Experiments: the list, and a report per experiment. */
import { get } from "../api";
import type { components } from "../api-schema";
import { intervalChart } from "../charts";
import { card, h, table } from "../dom";
import { formatValue, kindLabel, percent, signedPercent, unitOf, when } from "../format";
import { historyLink } from "./history";

type Schemas = components["schemas"];
type ExperimentPage = Schemas["Page_Experiment_"];
type Results = Schemas["ExperimentResults"];
type Decision = Schemas["Decision"];
type MetricPage = Schemas["Page_MetricDefinition_"];

export function experimentsPage(root: HTMLElement, args: string[]): void {
  if (args[0]) return experimentPage(root, args[0]);
  const out = h("div", null, h("p", { class: "note" }, "Loading…"));
  root.append(h("h1", null, "Experiments"), out);
  get<ExperimentPage>("/v1/experiments?limit=1000")
    .then(async (page) => {
      out.textContent = "";
      if (!page.items.length) out.append(h("p", null, "No experiments yet."));
      const rows = await Promise.all(
        page.items.map(async (e) => {
          let verdict = "–";
          let units = "–";
          try {
            const r = await get<Results>(`/v1/experiments/${encodeURIComponent(e.id)}/results`);
            units = r.variants.map((v) => v.units.toLocaleString("en")).join(" / ");
            const primary = r.metrics.find((m) => m.role === "primary");
            verdict = r.srm.flagged ? "sample ratio mismatch" : primary?.comparisons[0]?.verdict.replace(/_/g, " ") || "–";
          } catch {
            /* shown as unknown */
          }
          return [h("a", { href: `#/experiments/${encodeURIComponent(e.id)}`, "data-experiment": e.id }, e.name || e.id), e.primary_metric || "–", e.variants.map((v) => v.id).join(" / "), units, h("span", { class: `verdict ${verdict.replace(/ /g, "_")}` }, verdict)];
        }),
      );
      out.append(card("All experiments", table(["experiment", "primary metric", "variants", "units", "verdict"], rows)));
    })
    .catch((e) => (out.textContent = String(e.message || e)));
}

const VERDICT_WORDS: Record<string, (v: string, m: string) => string> = {
  win: (v, m) => `${v} wins on ${m}: the always-valid interval of the lift is above zero.`,
  loss: (v, m) => `${v} loses on ${m}: the always-valid interval of the lift is below zero.`,
  inconclusive: (v, m) => `No decision yet on ${m} for ${v}: the always-valid interval still includes zero.`,
  too_early: (_v, m) => `Too early for ${m}: each variant needs its minimum number of units first.`,
  invalid_srm: () => "Results are not trustworthy: the variants' unit counts do not match their weights (sample ratio mismatch).",
};

export function experimentPage(root: HTMLElement, id: string): void {
  const out = h("div", { id: "experiment-report" }, h("p", { class: "note" }, "Computing results…"));
  root.append(h("p", null, h("a", { href: "#/experiments" }, "← all experiments")), out);
  Promise.all([
    get<ExperimentPage>("/v1/experiments?limit=1000").then((page) => page.items.find((e) => e.id === id)),
    get<Results>(`/v1/experiments/${encodeURIComponent(id)}/results`),
    get<Decision>(`/v1/experiments/${encodeURIComponent(id)}/decision`).catch(() => null),
    get<MetricPage>("/v1/metrics?limit=1000"),
  ])
    .then(([experiment, results, decision, metrics]) => {
      out.textContent = "";
      out.append(
        h("h1", null, experiment?.name || id),
        h("p", { class: "note" }, `Computed ${when(results.computed_at)} from the warehouse.`, experiment ? [" · ", historyLink("experiment", experiment.project_id, experiment.id)] : null),
      );
      if (results.srm.flagged) {
        out.append(h("div", { class: "banner danger", id: "srm-banner" }, `Sample ratio mismatch (p = ${results.srm.p_value === null ? "–" : results.srm.p_value.toExponential(2)}): the units per variant do not match the weights. Find the cause before reading any result.`));
      } else {
        out.append(h("div", { class: "banner ok", id: "srm-banner" }, results.srm.checked ? `Sample ratio check passed (p = ${results.srm.p_value === null ? "–" : results.srm.p_value.toFixed(3)}).` : "Sample ratio not checked yet: too few units."));
      }
      out.append(
        card(
          "Variants",
          table(
            ["variant", "weight", "units"],
            results.variants.map((v) => [v.id, percent(v.weight, 0), h("span", { "data-units": v.id }, v.units.toLocaleString("en"))]),
          ),
          results.multi_variant_units ? `${results.multi_variant_units} units saw several variants and are left out.` : undefined,
        ),
      );
      if (decision) out.append(decisionCard(decision));
      for (const m of results.metrics) {
        const def = metrics.items.find((d) => d.id === m.metric) || { id: m.metric, name: m.metric, metric_kind: m.metric_kind || "mean" };
        const { unit, currency } = unitOf(def);
        if (m.error) {
          out.append(card(`${def.name || def.id} (${m.role})`, h("p", { class: "error" }, m.error)));
          continue;
        }
        const higher = m.method?.higher_is_better ?? true;
        const words = m.comparisons.map((c) => (VERDICT_WORDS[c.verdict] || (() => c.verdict))(c.variant, def.name || def.id));
        out.append(
          card(
            `${def.name || def.id} · ${m.role === "primary" ? "primary metric" : "guardrail"}`,
            h(
              "div",
              null,
              h("p", { class: `verdict-text ${m.comparisons[0]?.verdict || ""}`, "data-verdict": m.comparisons[0]?.verdict || "" }, words.join(" ")),
              table(
                ["variant", "units", "mean"],
                m.variants.map((v) => [v.variant, v.units.toLocaleString("en"), h("span", { "data-mean": v.variant }, formatValue(v.mean, unit, currency))]),
              ),
              m.comparisons.length
                ? h(
                    "div",
                    null,
                    h("h3", null, "Relative lift against control"),
                    intervalChart(
                      m.comparisons.map((c) => ({
                        label: c.variant,
                        estimate: c.relative.estimate,
                        low: c.relative.ci.low,
                        high: c.relative.ci.high,
                        outerLow: c.always_valid_relative.low,
                        outerHigh: c.always_valid_relative.high,
                        good: c.verdict === "win" ? true : c.verdict === "loss" ? false : null,
                      })),
                      (v) => signedPercent(v, 0),
                    ),
                    h("p", { class: "method" }, "Dot: the lift; dark line: its 95 % interval (fixed horizon); light band: the always-valid 95 % interval, safe to read at any time, which the verdict uses."),
                    table(
                      ["variant", "lift", "95 % interval", "always-valid", "p (always-valid)", "chance to win"],
                      m.comparisons.map((c) => [
                        c.variant,
                        h("span", { "data-lift": c.variant }, signedPercent(c.relative.estimate)),
                        `${signedPercent(c.relative.ci.low)} to ${signedPercent(c.relative.ci.high)}`,
                        `${signedPercent(c.always_valid_relative.low)} to ${signedPercent(c.always_valid_relative.high)}`,
                        c.always_valid_p_value === null ? "–" : c.always_valid_p_value.toFixed(3),
                        percent(c.bayesian?.relative?.chance_to_win ?? null, 0),
                      ]),
                    ),
                  )
                : null,
            ),
            `${kindLabel(def.metric_kind)}; ${higher ? "higher" : "lower"} is better`,
          ),
        );
      }
    })
    .catch((e) => {
      out.textContent = "";
      out.append(h("p", { class: "error" }, String(e.message || e)));
    });
}

function days(value: number | null): string {
  if (value === null) return "unknown (no traffic measured yet)";
  if (value === 0) return "now";
  if (value < 1) return `${Math.ceil(value * 24)} hours`;
  return `${value.toFixed(1)} days`;
}

function decisionCard(d: Decision): HTMLElement {
  const text =
    d.units_per_variant_needed === null
      ? "Not enough data yet to estimate how long the experiment needs."
      : d.days_remaining === 0
        ? `Enough units to detect a ${percent(d.minimum_detectable_effect, 0)} lift with ${percent(d.power, 0)} power.`
        : `To detect a ${percent(d.minimum_detectable_effect, 0)} lift of ${d.metric} with ${percent(d.power, 0)} power, each variant needs ${d.units_per_variant_needed.toLocaleString("en")} units (has ${d.units_per_variant.toLocaleString("en")}): about ${days(d.days_remaining)} more at the current ${d.units_per_day === null ? "?" : Math.round(d.units_per_day).toLocaleString("en")} units a day.`;
  return card(
    "Time to a decision",
    h(
      "div",
      { id: "decision" },
      h("p", null, text),
      d.units_per_variant_needed_always_valid !== null
        ? h("p", { class: "note" }, `For the always-valid interval to narrow to that lift: ${d.units_per_variant_needed_always_valid.toLocaleString("en")} units a variant, about ${days(d.days_remaining_always_valid)}.`)
        : null,
      h("p", { class: "method" }, d.method),
    ),
  );
}
