import { analysis } from "../api";
import { link, type Ctx } from "../app";
import { empty, h, s, section } from "../dom";
import { channelIcon } from "../icons";
import { dur, label, num, pct, sentiment } from "../format";
import { touchpointLabel } from "./overview";

interface Cell {
  channel: string;
  customers: number;
  events: number;
  mean_sentiment: number | null;
  sentiment_n: number;
}
interface Row {
  stage: string;
  customers: number;
  events: number;
  conversion: number | null;
  converted: number;
  mean_sentiment: number | null;
  sentiment_n: number;
  median_time_in_stage_s: number | null;
  cells: Cell[];
  pain_points: { touchpoint: string; main_signal: string; affected_customers: number; score: number }[];
  opportunities: { touchpoint: string; customers: number; goal_rate: number | null; positive_rate: number | null; score: number }[];
}
interface JourneyMap {
  stages: string[];
  channels: string[];
  rows: Row[];
  totals: { customers: number; events: number; unmapped_events: number };
}

/** The emotion curve across the stage columns: a line through each stage's mean sentiment
 * (−1 at the bottom, +1 at the top), gaps where a stage has no sentiment data. */
function emotionCurve(rows: Row[]): HTMLElement {
  const n = rows.length;
  const y = (v: number) => 50 - v * 45;
  const segments: string[] = [];
  let current: string[] = [];
  rows.forEach((r, i) => {
    if (r.mean_sentiment === null) {
      if (current.length) segments.push(current.join(" "));
      current = [];
    } else {
      current.push(`${(i + 0.5) * 100},${y(r.mean_sentiment)}`);
    }
  });
  if (current.length) segments.push(current.join(" "));
  const svg = s(
    "svg",
    { class: "emotion-line", viewBox: `0 0 ${n * 100} 100`, preserveAspectRatio: "none", "aria-hidden": "true" },
    s("line", { x1: 0, x2: n * 100, y1: 50, y2: 50, class: "zero" }),
    segments.map((points) => s("polyline", { points, "vector-effect": "non-scaling-stroke" })),
  );
  const dots = rows.map((r, i) =>
    r.mean_sentiment === null
      ? h("span", { class: "emotion-none", style: `left:${((i + 0.5) * 100) / n}%` }, "no sentiment data")
      : h(
          "span",
          {
            class: `emotion-dot ${r.mean_sentiment < -0.05 ? "neg" : r.mean_sentiment > 0.05 ? "pos" : "neu"}`,
            style: `left:${((i + 0.5) * 100) / n}%;top:${y(r.mean_sentiment)}%`,
            title: `${r.stage}: mean sentiment ${sentiment(r.mean_sentiment)} over ${num(r.sentiment_n)} events`,
          },
          sentiment(r.mean_sentiment),
        ),
  );
  return h("div", { class: "emotion", role: "img", "aria-label": `Emotion curve: ${rows.map((r) => `${r.stage} ${sentiment(r.mean_sentiment)}`).join(", ")}` }, svg, dots);
}

export async function renderJourneyMap(ctx: Ctx): Promise<void> {
  const m = await analysis<JourneyMap>("journey-map", { ...ctx.filters, top: 3 }, ctx.signal);
  if (m.totals.events === 0 || m.rows.length === 0) {
    ctx.main.append(empty("No events in mapped stages match these filters."));
    return;
  }
  const maxEvents = Math.max(1, ...m.rows.flatMap((r) => r.cells.map((c) => c.events)));
  const cols = m.rows.length;
  const table = h(
    "table",
    { class: "journey-grid", "data-testid": "journey-grid" },
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        h("th", { scope: "col", class: "rowhead" }, "Stage"),
        m.rows.map((r) =>
          h(
            "th",
            { scope: "col", class: "stage" },
            h("div", { class: "stage-name" }, label(r.stage)),
            h("div", { class: "stage-meta" }, `${num(r.customers)} customers · ${num(r.events)} events`),
            h("div", { class: "stage-meta" }, `conversion ${pct(r.conversion)} · median ${dur(r.median_time_in_stage_s)} in stage`),
          ),
        ),
      ),
    ),
    h(
      "tbody",
      null,
      h("tr", { class: "emotion-row" }, h("th", { scope: "row", class: "rowhead" }, "Emotion"), h("td", { colspan: cols }, emotionCurve(m.rows))),
      h(
        "tr",
        { class: "pain-row" },
        h("th", { scope: "row", class: "rowhead" }, "Pain points"),
        m.rows.map((r) =>
          h(
            "td",
            null,
            r.pain_points.length
              ? h(
                  "ul",
                  { class: "chips" },
                  r.pain_points.map((p) =>
                    h(
                      "li",
                      { class: "chip pain", title: `score ${num(p.score)}` },
                      link("/friction", touchpointLabel(p.touchpoint, true)),
                      h("small", null, `${label(p.main_signal)} · ${num(p.affected_customers)} customers`),
                    ),
                  ),
                )
              : h("span", { class: "muted" }, "none"),
          ),
        ),
      ),
      m.channels.map((channel) =>
        h(
          "tr",
          null,
          h("th", { scope: "row", class: "rowhead" }, h("span", { class: "tp" }, channelIcon(channel), label(channel))),
          m.rows.map((r) => {
            const c = r.cells.find((x) => x.channel === channel);
            if (!c || c.events === 0) return h("td", { class: "cell empty-cell" }, "");
            const alpha = 0.08 + 0.6 * Math.sqrt(c.events / maxEvents);
            return h(
              "td",
              {
                class: "cell",
                style: `--heat:${alpha.toFixed(3)}`,
                title: `${r.stage} × ${channel}: ${num(c.events)} events, ${num(c.customers)} customers, sentiment ${sentiment(c.mean_sentiment)}`,
              },
              h("b", null, num(c.events)),
              h("small", null, `${num(c.customers)} cust.`),
              c.mean_sentiment !== null ? h("small", { class: c.mean_sentiment < 0 ? "neg" : "pos" }, sentiment(c.mean_sentiment)) : null,
            );
          }),
        ),
      ),
      h(
        "tr",
        { class: "opp-row" },
        h("th", { scope: "row", class: "rowhead" }, "Opportunities"),
        m.rows.map((r) =>
          h(
            "td",
            null,
            r.opportunities.length
              ? h(
                  "ul",
                  { class: "chips" },
                  r.opportunities.map((o) => h("li", { class: "chip opp" }, touchpointLabel(o.touchpoint, true), h("small", null, `${num(o.customers)} customers · goal ${pct(o.goal_rate)}`))),
                )
              : h("span", { class: "muted" }, "none"),
          ),
        ),
      ),
    ),
  );
  ctx.main.append(
    section(
      "Stages × channels",
      h("p", { class: "muted" }, `${num(m.totals.customers)} customers, ${num(m.totals.events)} events`, m.totals.unmapped_events ? `, ${num(m.totals.unmapped_events)} events in no stage` : "", ". Cell shade: events."),
      h("div", { class: "scroll-x" }, table),
    ),
  );
}
