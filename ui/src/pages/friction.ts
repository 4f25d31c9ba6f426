import { analysis } from "../api";
import { customerLink, link, type Ctx } from "../app";
import { empty, field, h, section } from "../dom";
import { label, lift, num, pct, sentiment } from "../format";
import { kpi, touchpointLabel } from "./overview";

interface Signal {
  customers: number;
  eligible: number;
  events: number;
  rate: number;
}
interface RootCause {
  dimension: string;
  value: string;
  level: string;
  affected: number;
  affected_share: number;
  baseline_share: number;
  lift: number;
  support: number;
  excess: number;
}
export interface FrictionPoint {
  rank: number;
  step: string;
  score: number;
  severity: number;
  affected_customers: number;
  customers: number;
  events: number;
  examples: number[];
  mean_sentiment: number | null;
  wait_p90_s: number | null;
  wait_ratio: number | null;
  signals: Record<string, Signal>;
  root_causes: RootCause[];
}
interface Friction {
  step: string;
  points: FrictionPoint[];
  totals: { affected_customers: number; customers: number; events: number; friction_points: number; steps: number };
}

const SIGNAL_NAMES: Record<string, string> = {
  failure: "failure",
  repeat_contact: "repeat contact",
  loops: "loops",
  long_wait: "long wait",
  channel_jump: "channel jump after failure",
  abandonment: "abandonment",
  negative_sentiment: "negative sentiment",
};

function signalBadges(p: FrictionPoint): HTMLElement {
  const list = Object.entries(p.signals)
    .filter(([, s]) => s.events > 0)
    .sort((a, b) => b[1].rate - a[1].rate);
  return h(
    "span",
    { class: "badges" },
    list.map(([name, s]) => h("span", { class: "badge", title: `${num(s.events)} of ${num(s.eligible)} events` }, `${SIGNAL_NAMES[name] ?? name} ${pct(s.rate, 0)}`)),
  );
}

export async function renderFriction(ctx: Ctx): Promise<void> {
  const top = ctx.params.get("top") ?? "20";
  const by = ctx.params.get("by") ?? "";
  const f = await analysis<Friction>("friction", { ...ctx.filters, top, explain: 10, by: by || null }, ctx.signal);

  const bySelect = h(
    "select",
    { name: "by" },
    ["", "activity", "channel", "stage"].map((v) => h("option", { value: v, selected: v === by }, v ? label(v) : "touchpoint")),
  );
  const topInput = h("input", { type: "number", min: 1, max: 100, value: top, name: "top" });
  const form = h("form", { class: "controls" }, field("Step", bySelect), field("Points listed", topInput), h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.setParams({ by: bySelect.value || null, top: topInput.value });
  });
  ctx.main.append(form);

  ctx.main.append(
    h(
      "div",
      { class: "kpis" },
      kpi("Friction points", num(f.totals.friction_points), `of ${num(f.totals.steps)} steps`),
      kpi("Customers affected", num(f.totals.affected_customers), pct(f.totals.affected_customers / Math.max(1, f.totals.customers)) + " of customers"),
    ),
  );
  if (f.points.length === 0) {
    ctx.main.append(empty("No friction points in these journeys."));
    return;
  }
  const maxScore = Math.max(...f.points.map((p) => p.score), 1);
  const list = h("ol", { class: "friction-list", "data-testid": "friction-list" });
  for (const p of f.points) {
    const cause = p.root_causes[0];
    const details = h(
      "details",
      { class: "friction-item" },
      h(
        "summary",
        null,
        h("span", { class: "rank" }, `#${p.rank}`),
        h("span", { class: "fp-step" }, touchpointLabel(p.step)),
        h("span", { class: "scorebar", title: `score ${num(p.score)}` }, h("span", { style: `width:${(100 * p.score) / maxScore}%` }), h("b", null, num(Math.round(p.score)))),
        h("span", { class: "fp-affected" }, `${num(p.affected_customers)} customers`),
        signalBadges(p),
        cause ? h("span", { class: "fp-cause" }, `likely cause: ${cause.dimension} = ${cause.value} (${lift(cause.lift)})`) : null,
      ),
      h(
        "div",
        { class: "friction-detail" },
        h(
          "div",
          null,
          h("h3", null, "Evidence"),
          h(
            "table",
            null,
            h("thead", null, h("tr", null, h("th", null, "signal"), h("th", { class: "n" }, "events"), h("th", { class: "n" }, "of eligible"), h("th", { class: "n" }, "rate"), h("th", { class: "n" }, "customers"))),
            h(
              "tbody",
              null,
              Object.entries(p.signals).map(([name, s]) =>
                h("tr", null, h("td", null, SIGNAL_NAMES[name] ?? name), h("td", { class: "n" }, num(s.events)), h("td", { class: "n" }, num(s.eligible)), h("td", { class: "n" }, pct(s.rate)), h("td", { class: "n" }, num(s.customers))),
              ),
            ),
          ),
          h("p", { class: "muted" }, `${num(p.events)} events, severity ${p.severity.toFixed(2)}, mean sentiment ${sentiment(p.mean_sentiment)}`, p.wait_p90_s !== null ? `, p90 wait ${num(p.wait_p90_s)} s` : ""),
        ),
        h(
          "div",
          null,
          h("h3", null, "Root causes (over-represented among affected events)"),
          p.root_causes.length
            ? h(
                "table",
                null,
                h("thead", null, h("tr", null, h("th", null, "dimension"), h("th", null, "value"), h("th", { class: "n" }, "share here"), h("th", { class: "n" }, "baseline"), h("th", { class: "n" }, "lift"), h("th", { class: "n" }, "support"))),
                h(
                  "tbody",
                  null,
                  p.root_causes.map((c) =>
                    h("tr", null, h("td", null, c.dimension), h("td", null, c.value), h("td", { class: "n" }, pct(c.affected_share)), h("td", { class: "n" }, pct(c.baseline_share)), h("td", { class: "n" }, lift(c.lift)), h("td", { class: "n" }, num(c.support))),
                  ),
                ),
              )
            : empty("No over-represented value (root causes are computed for the top points)."),
          h("h3", null, "Example customers"),
          h("p", { class: "inline-list" }, p.examples.map((id) => customerLink(id))),
          h("p", null, link("/paths", "Paths after this step →", { anchor: p.step, by: by || "touchpoint" })),
        ),
      ),
    );
    list.append(h("li", null, details));
  }
  ctx.main.append(section(`Friction points by ${f.step}`, list));
}
