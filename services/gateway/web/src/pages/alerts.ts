/** Alerts: rules and their states, a timeline of transitions, acknowledge and mute. */
import { adminSend, get, mayEdit } from "../api";
import type { components } from "../api-schema";
import { card, h, svg, table } from "../dom";
import { when } from "../format";
import { historyLink } from "./history";

type Schemas = components["schemas"];
type Status = Schemas["AlertStatus"];
type AlertEvent = Schemas["AlertEvent"];

const COLORS: Record<string, string> = { ok: "#2aa876", pending: "#d4b02a", firing: "#d2453b", resolved: "#3a6df0" };

export function alertsPage(root: HTMLElement): () => void {
  const out = h("div", { id: "alerts" }, h("p", { class: "note" }, "Loading…"));
  root.append(h("h1", null, "Alerts"), out);
  let project = "";
  const load = async (): Promise<void> => {
    const [states, history, me] = await Promise.all([
      get<Status[]>("/v1/alerts/states"),
      get<Schemas["AlertPage"]>("/v1/alerts?limit=200"),
      get<Schemas["WhoAmI"]>("/v1/whoami"),
    ]);
    project = me.project_id;
    out.textContent = "";
    const admin = mayEdit();
    const act = (rule: string, what: "ack" | "mute" | "unmute") => async () => {
      const base = `/v1/admin/projects/${encodeURIComponent(project)}/alert-rules/${encodeURIComponent(rule)}`;
      try {
        if (what === "ack") await adminSend("POST", `${base}/ack`, { note: "acknowledged in the workspace" });
        else if (what === "mute") await adminSend("PUT", `${base}/mute`, { minutes: 60, reason: "muted in the workspace" });
        else await adminSend("DELETE", `${base}/mute`);
        await load();
      } catch (e) {
        alert(String((e as Error).message || e));
      }
    };
    const title = admin ? null : "Acknowledging and muting needs the admin key, or the editor role";
    out.append(
      card(
        "Rules",
        table(
          ["rule", "state", "since", "value", "severity", ""],
          states.map((s) => [
            h("span", null, s.name || s.rule_id, h("span", { class: "sub" }, ` ${s.rule_kind.replace(/_/g, " ")}`)),
            h("span", { class: `state ${s.state}`, "data-rule-state": s.rule_id }, s.state, s.acknowledged ? " · acknowledged" : "", s.muted_until ? ` · muted until ${when(s.muted_until)}` : ""),
            s.since ? when(s.since) : "–",
            s.value === null ? "–" : String(Number(s.value.toPrecision(4))),
            s.severity,
            h(
              "span",
              { class: "actions" },
              h("button", { type: "button", disabled: !admin || !s.episode_id || s.acknowledged, title, onclick: act(s.rule_id, "ack") }, "Acknowledge"),
              s.muted_until
                ? h("button", { type: "button", disabled: !admin, title, onclick: act(s.rule_id, "unmute") }, "Unmute")
                : h("button", { type: "button", disabled: !admin, title, onclick: act(s.rule_id, "mute") }, "Mute 1 h"),
              historyLink("alert_rule", project, s.rule_id),
            ),
          ]),
        ),
        states.length ? undefined : "No alert rules yet.",
      ),
      card("Timeline", timeline(states, history.items), "each rule's transitions over the last 24 hours"),
      card(
        "History",
        table(
          ["when", "rule", "transition", "value", "message"],
          history.items.slice(0, 50).map((e) => [when(e.at), e.rule_id, `${e.from_state} → ${e.to_state}`, e.value === null ? "–" : String(Number(e.value.toPrecision(4))), e.message]),
        ),
      ),
    );
  };
  load().catch((e) => (out.textContent = String(e.message || e)));
  const timer = window.setInterval(() => void load().catch(() => undefined), 15000);
  return () => window.clearInterval(timer);
}

function timeline(states: Status[], events: AlertEvent[]): SVGElement {
  const W = 1000;
  const left = 230;
  const rowH = 26;
  const end = Date.now();
  const start = end - 86400e3;
  const x = (t: number): number => left + ((Math.max(start, t) - start) / (end - start)) * (W - left - 8);
  const parts: SVGElement[] = [];
  states.forEach((s, i) => {
    const y = 10 + i * rowH;
    parts.push(svg("text", { x: 4, y: y + 12, class: "label" }, (s.name || s.rule_id).slice(0, 30)));
    const mine = events.filter((e) => e.rule_id === s.rule_id).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    let state = mine.length ? mine[0].from_state : s.state;
    let at = start;
    for (const e of mine) {
      const t = Date.parse(e.at);
      parts.push(svg("rect", { x: x(at), y, width: Math.max(1, x(t) - x(at)), height: 16, fill: COLORS[state] || "#ccc", opacity: 0.8 }));
      state = e.to_state;
      at = t;
    }
    parts.push(svg("rect", { x: x(at), y, width: Math.max(1, x(end) - x(at)), height: 16, fill: COLORS[state] || "#ccc", opacity: 0.8 }));
  });
  const H = states.length * rowH + 30;
  for (let k = 0; k <= 4; k++) {
    const t = start + (k * (end - start)) / 4;
    parts.push(svg("text", { x: x(t), y: H - 6, "text-anchor": "middle", class: "tick" }, new Date(t).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })));
  }
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "timeline", role: "img" }, ...parts);
}
