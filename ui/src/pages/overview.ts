import { analysis } from "../api";
import { chartBox, link, type Ctx } from "../app";
import { axisStyle, themeColors } from "../charts";
import { empty, h, section } from "../dom";
import { channelColor, channelIcon } from "../icons";
import { label, num, pct, sentiment, splitTouchpoint } from "../format";

interface Overview {
  customers: number;
  events: number;
  goal_conversion: number | null;
  mean_sentiment: number | null;
  repeat_contact_rate: number | null;
  bot_containment: number | null;
  channel_mix: { channel: string; events: number; customers: number }[];
  top_friction: { step: string; score: number; affected_customers: number; signal: string }[];
  trend: { period: string; events: number; customers: number; mean_sentiment: number | null }[];
}

export function kpi(name: string, value: string, note?: string): HTMLElement {
  return h("div", { class: "kpi" }, h("div", { class: "kpi-value" }, value), h("div", { class: "kpi-name" }, name), note ? h("div", { class: "kpi-note" }, note) : null);
}

/** A step with its channel icon; `compact` leaves the channel's name to the icon's title. */
export function touchpointLabel(step: string, compact = false): HTMLElement {
  const [channel, activity] = splitTouchpoint(step);
  return h(
    "span",
    { class: "tp" },
    channel ? channelIcon(channel) : null,
    channel && !compact ? h("span", { class: "tp-channel" }, `${label(channel)} · `) : null,
    activity,
  );
}

export async function renderOverview(ctx: Ctx): Promise<void> {
  const o = await analysis<Overview>("overview", ctx.filters, ctx.signal);
  if (o.events === 0) {
    ctx.main.append(empty("No events match these filters."));
    return;
  }
  ctx.main.append(
    h(
      "div",
      { class: "kpis", "data-testid": "kpis" },
      kpi("Customers", num(o.customers)),
      kpi("Events", num(o.events)),
      kpi("Goal conversion", pct(o.goal_conversion), "customers with a goal outcome"),
      kpi("Mean sentiment", sentiment(o.mean_sentiment), "from −1 to +1"),
      kpi("Repeat-contact rate", pct(o.repeat_contact_rate), "assisted contacts followed by another"),
      kpi("Bot containment", pct(o.bot_containment), "bot sessions without an assisted contact"),
    ),
  );

  const mix = chartBox();
  const trend = chartBox();
  const friction = h(
    "ol",
    { class: "ranked" },
    o.top_friction.map((f) =>
      h(
        "li",
        null,
        touchpointLabel(f.step),
        h("span", { class: "muted" }, ` — ${num(f.affected_customers)} customers, mostly ${label(f.signal)} (score ${num(Math.round(f.score))})`),
      ),
    ),
  );
  ctx.main.append(
    h(
      "div",
      { class: "grid2" },
      section("Channel mix", mix),
      section(
        "Top friction points",
        o.top_friction.length ? friction : empty("No friction points."),
        h("p", null, link("/friction", "All friction points →")),
      ),
    ),
    section("Trend by week", trend),
  );

  const mixRows = [...o.channel_mix].reverse();
  const c = themeColors();
  ctx.chart(mix, {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { top: 0, itemGap: 24, textStyle: { color: c.text } },
    grid: { left: 90, right: 20, top: 30, bottom: 24 },
    xAxis: { type: "value", ...axisStyle() },
    yAxis: { type: "category", data: mixRows.map((r) => label(r.channel)), ...axisStyle() },
    series: [
      {
        name: "events",
        type: "bar",
        data: mixRows.map((r) => ({ value: r.events, itemStyle: { color: channelColor(r.channel) } })),
      },
      { name: "customers", type: "bar", data: mixRows.map((r) => r.customers), itemStyle: { color: c.muted } },
    ],
  });
  ctx.chart(trend, {
    tooltip: { trigger: "axis" },
    legend: { top: 0, itemGap: 24, textStyle: { color: c.text } },
    grid: { left: 60, right: 60, top: 36, bottom: 30 },
    xAxis: { type: "category", data: o.trend.map((t) => t.period), ...axisStyle() },
    yAxis: [
      { type: "value", name: "count", ...axisStyle() },
      { type: "value", name: "sentiment", min: -1, max: 1, ...axisStyle(), splitLine: { show: false } },
    ],
    series: [
      { name: "events", type: "line", data: o.trend.map((t) => t.events), showSymbol: false },
      { name: "customers", type: "line", data: o.trend.map((t) => t.customers), showSymbol: false },
      { name: "mean sentiment", type: "line", yAxisIndex: 1, data: o.trend.map((t) => t.mean_sentiment), showSymbol: false },
    ],
  });
}
