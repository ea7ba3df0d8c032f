/** Customer feedback: NPS and CSAT with intervals, broken down, and the comments beside them. */
import { get, query } from "../api";
import type { components } from "../api-schema";
import { bars, intervalChart, timeChart } from "../charts";
import { card, clear, h } from "../dom";
import { percent, when } from "../format";
import { historyLink } from "./history";

type Schemas = components["schemas"];
type Survey = Schemas["Survey"];
type SurveyResult = Schemas["SurveyResult"];

export function feedbackPage(root: HTMLElement): () => void {
  const out = h("div", { id: "feedback" });
  const charts: ReturnType<typeof timeChart>[] = [];
  root.append(h("h1", null, "Customer feedback"), out);
  Promise.all([get<Survey[]>("/v1/surveys"), get<Schemas["Page_Experiment_"]>("/v1/experiments?limit=1000")])
    .then(([surveys, experiments]) => {
      if (!surveys.length) {
        out.append(h("p", null, "No surveys yet. Send answers as `Survey Responded` events (survey, score, comment) and add a survey document."));
        return;
      }
      surveys.sort((a, b) => (a.survey_kind === b.survey_kind ? a.id.localeCompare(b.id) : a.survey_kind === "nps" ? -1 : 1));
      let current = surveys[0];
      const pick = h("select", { id: "survey", "aria-label": "Survey" }, surveys.map((s) => h("option", { value: s.id }, s.name || s.id)));
      const by = h(
        "select",
        { id: "feedback-breakdown", "aria-label": "Break down by" },
        h("option", { value: "" }, "no breakdown"),
        h("option", { value: "p:plan", selected: true }, "by plan"),
        h("option", { value: "p:country" }, "by country"),
        experiments.items.map((e) => h("option", { value: `e:${e.id}` }, `by variant of ${e.name || e.id}`)),
      );
      const search = h("input", { id: "comment-search", type: "search", placeholder: "search comments", "aria-label": "Search comments" });
      const scores = h("select", { id: "comment-scores", "aria-label": "Which answers" }, ["all", "promoters", "passives", "detractors"].map((s) => h("option", { value: s }, s)));
      const body = h("div", { class: "feedback-body" });
      const comments = h("div", { id: "comments" });
      const to = (): string => new Date(Date.now() + 60e3).toISOString();
      const from = (): string => new Date(Date.now() - 30 * 86400e3).toISOString();
      const tone = (score: number | null): string => {
        if (score === null) return "";
        if (current.survey_kind === "nps") return score >= 9 ? "p" : score <= 6 ? "d" : "n";
        return score >= 4 ? "p" : score <= 2 ? "d" : "n";
      };
      const loadComments = async (): Promise<void> => {
        scores.hidden = current.survey_kind !== "nps";
        const breakdown = by.value.startsWith("p:") ? by.value.slice(2) : null;
        const r = await get<Schemas["CommentsResult"]>(`/v1/surveys/${encodeURIComponent(current.id)}/comments${query({ from: from(), to: to(), q: search.value, scores: current.survey_kind === "nps" ? scores.value : "all", breakdown, limit: 20 })}`);
        clear(comments);
        if (!r.comments.length) comments.append(h("p", { class: "note" }, "No comments match."));
        for (const c of r.comments) {
          comments.append(
            h(
              "article",
              { class: "comment" },
              h("span", { class: `score s${tone(c.score)}` }, c.score === null ? "–" : String(c.score)),
              h("div", null, h("p", null, c.comment), h("p", { class: "note" }, `${when(c.timestamp)} · ${c.distinct_id}${c.breakdown ? ` · ${c.breakdown}` : ""}`)),
            ),
          );
        }
      };
      const load = async (): Promise<void> => {
        const breakdown = by.value.startsWith("p:") ? by.value.slice(2) : null;
        const experiment = by.value.startsWith("e:") ? by.value.slice(2) : null;
        const r = await get<SurveyResult>(`/v1/surveys/${encodeURIComponent(current.id)}/results${query({ from: from(), to: to(), breakdown, experiment })}`);
        clear(body);
        charts.forEach((c) => c.destroy());
        const nps = current.survey_kind === "nps";
        const show = (v: number | null): string => (v === null ? "–" : nps ? v.toFixed(1) : percent(v));
        const o = r.overall;
        const chart = timeChart(nps ? "points" : "percent", undefined, 180, false);
        charts.push(chart);
        const dist = Object.entries(o.distribution ?? {}).sort((a, b) => Number(a[0]) - Number(b[0]));
        body.append(
          h(
            "div",
            { class: "tiles wide" },
            h("div", { class: "tile" }, h("span", { class: "tile-label" }, nps ? "NPS (last 30 days)" : "CSAT (last 30 days)"), h("span", { class: "tile-value big", id: "score", "data-value": o.value ?? "" }, show(o.value)), h("span", { class: "tile-sub" }, `95 % interval ${show(o.low)} to ${show(o.high)}`)),
            h("div", { class: "tile" }, h("span", { class: "tile-label" }, "Answers"), h("span", { class: "tile-value", id: "responses" }, o.responses.toLocaleString("en"))),
            nps
              ? h("div", { class: "tile" }, h("span", { class: "tile-label" }, "Promoters · passives · detractors"), h("span", { class: "tile-value" }, `${percent(o.responses ? o.promoters / o.responses : null, 0)} · ${percent(o.responses ? o.passives / o.responses : null, 0)} · ${percent(o.responses ? o.detractors / o.responses : null, 0)}`))
              : h("div", { class: "tile" }, h("span", { class: "tile-label" }, "Satisfied"), h("span", { class: "tile-value" }, o.satisfied.toLocaleString("en"))),
          ),
          h("p", { class: "question" }, current.question, " · ", historyLink("survey", current.project_id, current.id)),
          h(
            "div",
            { class: "grid" },
            card("By day", chart.el, "with the 95 % interval"),
            card("Scores", bars(dist.map(([k, v]) => ({ label: k, value: v, text: v.toLocaleString("en") })))),
          ),
          h(
            "div",
            null,
            r.groups.length
              ? card(
                  "Breakdown",
                  h(
                    "div",
                    null,
                    intervalChart(
                      r.groups.slice(0, 10).map((g) => ({ label: `${g.breakdown ?? "(none)"} (${g.responses})`, estimate: g.value, low: g.low, high: g.high })),
                      (v) => (nps ? v.toFixed(0) : percent(v, 0)),
                    ),
                  ),
                  "each value's score and 95 % interval",
                  { id: "feedback-groups" },
                )
              : null,
          ),
          h("p", { class: "method" }, r.method),
        );
        chart.update(
          r.daily.map((d) => Date.parse(d.t)),
          [
            { label: nps ? "NPS" : "CSAT", values: r.daily.map((d) => d.value), fill: true },
            { label: "95 % low", values: r.daily.map((d) => d.low), dash: true, color: "#9aa3b5", width: 1 },
            { label: "95 % high", values: r.daily.map((d) => d.high), dash: true, color: "#9aa3b5", width: 1 },
          ],
        );
        await loadComments();
      };
      pick.addEventListener("change", () => {
        current = surveys.find((s) => s.id === pick.value) || surveys[0];
        void load();
      });
      by.addEventListener("change", () => void load());
      let typing: number | undefined;
      search.addEventListener("input", () => {
        window.clearTimeout(typing);
        typing = window.setTimeout(() => void loadComments(), 250);
      });
      scores.addEventListener("change", () => void loadComments());
      out.append(h("div", { class: "controls" }, pick, by), body, card("Comments", h("div", null, h("div", { class: "controls" }, search, scores), comments), "the newest 20 that match"));
      void load().catch((e) => body.append(h("p", { class: "error" }, String(e.message || e))));
    })
    .catch((e) => out.append(h("p", { class: "error" }, String(e.message || e))));
  return () => charts.forEach((c) => c.destroy());
}
