import { analysis } from "../api";
import { chartBox, type Ctx } from "../app";
import { axisStyle, themeColors } from "../charts";
import { empty, h, section } from "../dom";
import { channelColor, channelIcon } from "../icons";
import { dur, label, num, pct, sentiment } from "../format";

interface Timing {
  median_s: number;
  p90_s: number;
  n: number;
}
interface ChannelPerf {
  channel: string;
  assisted: boolean;
  bot: boolean;
  customers: number;
  customer_share: number;
  contacts: number;
  contact_share: number;
  events: number;
  wait: Timing | null;
  handle_time: Timing | null;
  resolution_rate: number | null;
  repeat_contact_rate: number | null;
  containment: { contained: number; sessions: number; rate: number } | null;
  abandonment_rate: number | null;
  mean_sentiment: number | null;
  cost: number | null;
}
interface Performance {
  channels: ChannelPerf[];
  totals: { contacts: number; customers: number; events: number; cost: number | null };
  repeat_window: string;
  containment_window: string;
}
interface Switching {
  channels: { channel: string; customers: number; events: number }[];
  switches: { from: string; to: string; switches: number; customers: number; median_gap_s: number | null }[];
  totals: { switches: number; switching_customers: number; customers: number };
  window: string;
}

export async function renderChannels(ctx: Ctx): Promise<void> {
  const [perf, sw] = await Promise.all([
    analysis<Performance>("channel-performance", ctx.filters, ctx.signal),
    analysis<Switching>("channels", ctx.filters, ctx.signal),
  ]);
  if (perf.totals.events === 0) {
    ctx.main.append(empty("No events match these filters."));
    return;
  }
  const c = themeColors();
  const pref = chartBox();
  const rows = [...perf.channels].reverse();
  const perfTable = h(
    "table",
    { "data-testid": "channel-performance" },
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ["channel", "customers", "contacts", "wait (median / p90)", "handle time", "resolution", "repeat contact", "bot containment", "abandonment", "sentiment", "cost"].map((t, i) => h("th", { class: i ? "n" : null }, t)),
      ),
    ),
    h(
      "tbody",
      null,
      perf.channels.map((ch) =>
        h(
          "tr",
          null,
          h("td", null, h("span", { class: "tp" }, channelIcon(ch.channel), label(ch.channel)), ch.bot ? h("span", { class: "badge" }, "bot") : ch.assisted ? h("span", { class: "badge" }, "assisted") : null),
          h("td", { class: "n" }, num(ch.customers)),
          h("td", { class: "n" }, num(ch.contacts)),
          h("td", { class: "n" }, ch.wait ? `${dur(ch.wait.median_s)} / ${dur(ch.wait.p90_s)}` : "–"),
          h("td", { class: "n" }, ch.handle_time ? dur(ch.handle_time.median_s) : "–"),
          h("td", { class: "n" }, pct(ch.resolution_rate)),
          h("td", { class: "n" }, pct(ch.repeat_contact_rate)),
          h("td", { class: "n" }, ch.containment ? `${pct(ch.containment.rate)} of ${num(ch.containment.sessions)}` : "–"),
          h("td", { class: "n" }, pct(ch.abandonment_rate)),
          h("td", { class: "n" }, sentiment(ch.mean_sentiment)),
          h("td", { class: "n" }, ch.cost === null ? "–" : num(ch.cost)),
        ),
      ),
    ),
  );

  // Switch matrix: rows are the channel left, columns the channel jumped to.
  const names = sw.channels.map((x) => x.channel);
  const data: [number, number, number][] = sw.switches.map((s) => [names.indexOf(s.to), names.indexOf(s.from), s.switches]);
  const maxSwitch = Math.max(1, ...sw.switches.map((s) => s.switches));
  const matrix = chartBox("chart tall");
  ctx.main.append(
    h("div", { class: "grid2" }, section("Preference: share of customers and of contacts", pref), section(`Channel switches within ${sw.window}`, h("p", { class: "muted" }, `${num(sw.totals.switches)} switches by ${num(sw.totals.switching_customers)} customers. Row: from, column: to.`), h("div", { "data-testid": "switch-matrix" }, matrix))),
    section(`Performance (repeat contact within ${perf.repeat_window}, containment within ${perf.containment_window})`, h("div", { class: "scroll-x" }, perfTable)),
  );
  ctx.chart(pref, {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v: number) => pct(v) },
    legend: { top: 0, itemGap: 24, textStyle: { color: c.text } },
    grid: { left: 90, right: 20, top: 30, bottom: 24 },
    xAxis: { type: "value", ...axisStyle(), axisLabel: { color: c.muted, formatter: (v: number) => pct(v, 0) } },
    yAxis: { type: "category", data: rows.map((r) => label(r.channel)), ...axisStyle() },
    series: [
      { name: "customers", type: "bar", data: rows.map((r) => ({ value: r.customer_share, itemStyle: { color: channelColor(r.channel) } })) },
      { name: "contacts", type: "bar", data: rows.map((r) => r.contact_share), itemStyle: { color: c.muted } },
    ],
  });
  ctx.chart(matrix, {
    tooltip: {
      formatter: (p: { data: [number, number, number] }) => {
        const [to, from, n] = p.data;
        const s = sw.switches.find((x) => x.from === names[from] && x.to === names[to]);
        return `${names[from]} → ${names[to]}: ${num(n)} switches, ${num(s?.customers ?? 0)} customers, median gap ${dur(s?.median_gap_s ?? null)}`;
      },
    },
    grid: { left: 90, right: 20, top: 10, bottom: 90 },
    xAxis: { type: "category", data: names.map(label), ...axisStyle(), axisLabel: { color: c.muted, rotate: 45, interval: 0 } },
    yAxis: { type: "category", data: names.map(label), ...axisStyle(), inverse: true },
    visualMap: { min: 0, max: maxSwitch, calculable: false, orient: "horizontal", left: "center", bottom: 0, show: false, inRange: { color: ["#e8f0fe", "#2f6fde", "#d64545"] } },
    series: [{ type: "heatmap", data, label: { show: true, fontSize: 9, formatter: (p: { data: [number, number, number] }) => (p.data[2] >= maxSwitch * 0.02 ? num(p.data[2]) : "") } }],
  });
}
