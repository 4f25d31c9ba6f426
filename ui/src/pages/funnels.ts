import { analysis } from "../api";
import { chartBox, customerLink, stats, type Ctx } from "../app";
import { axisStyle, themeColors } from "../charts";
import { clear, empty, errorBox, field, h, section } from "../dom";
import { dur, num, pct } from "../format";
import { stepOptions } from "./paths";

interface FunnelStep {
  index: number;
  label: string;
  cases: number;
  customers: number;
  conversion_from_previous: number | null;
  conversion_from_first: number | null;
  dropped_cases: number;
  dropped_customers: number;
}
interface TimeToConvert {
  converted: number;
  median_s: number | null;
  p90_s: number | null;
  mean_s: number | null;
  histogram: { label: string; cases: number }[];
}
interface Funnel {
  cases: number;
  customers: number;
  mode: string;
  steps: FunnelStep[];
  time_to_convert: TimeToConvert;
  breakdown: { by: string; groups: { value: string | null; steps: FunnelStep[]; time_to_convert: TimeToConvert }[] } | null;
  dropped: { step: number; total: number; offset: number; limit: number; customers: number[] } | null;
}

const DEFAULT_STEPS = ["landing_page_viewed", "product_viewed", "cart_added", "purchase"];

export async function renderFunnels(ctx: Ctx): Promise<void> {
  const st = await stats();
  const activities = st.by_activity.map((a) => a.name);
  let steps = ctx.params.getAll("step");
  if (steps.length === 0) {
    steps = DEFAULT_STEPS.filter((s) => activities.includes(s));
    if (steps.length < 2) steps = activities.slice(0, 3);
  }
  const mode = ctx.params.get("mode") ?? "ordered";
  const window = ctx.params.get("window") ?? "";
  const breakdown = ctx.params.get("breakdown") ?? "";

  // The builder: one row per step, in order.
  const rows = h("ol", { class: "step-rows" });
  const addRow = (value: string) => {
    const input = h("input", { type: "text", value, list: "funnel-steps", required: true, spellcheck: "false", "aria-label": "Funnel step" });
    const li = h(
      "li",
      null,
      input,
      h("button", { type: "button", class: "ghost", "aria-label": "Move step up", onclick: () => li.previousElementSibling?.before(li) }, "↑"),
      h("button", { type: "button", class: "ghost", "aria-label": "Remove step", onclick: () => li.remove() }, "✕"),
    );
    rows.append(li);
    return input;
  };
  steps.forEach((s) => addRow(s));
  const modeSelect = h("select", null, ["ordered", "strict", "any-order"].map((m) => h("option", { value: m, selected: m === mode }, m)));
  const windowInput = h("input", { type: "text", value: window, placeholder: "e.g. 7d", title: "default: the whole journey" });
  const breakdownInput = h("input", { type: "text", value: breakdown, placeholder: "property:os or trait:plan" });
  const form = h(
    "form",
    { class: "card builder" },
    h("h2", null, "Funnel steps"),
    stepOptions("funnel-steps", activities),
    rows,
    h("button", { type: "button", class: "ghost", onclick: () => addRow("").focus() }, "+ Add step"),
    h("div", { class: "controls" }, field("Mode", modeSelect), field("Conversion window", windowInput), field("Breakdown", breakdownInput), h("button", { type: "submit" }, "Run funnel")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const chosen = [...rows.querySelectorAll("input")].map((i) => i.value.trim()).filter(Boolean);
    ctx.setParams({ step: chosen, mode: modeSelect.value === "ordered" ? null : modeSelect.value, window: windowInput.value.trim() || null, breakdown: breakdownInput.value.trim() || null });
  });
  ctx.main.append(form);

  const f = await analysis<Funnel>("funnel", { ...ctx.filters, step: steps, mode, window: window || null, breakdown: breakdown || null }, ctx.signal);
  if (f.cases === 0) {
    ctx.main.append(empty("No journeys match these filters."));
    return;
  }
  const chart = chartBox();
  const dropped = h("div", { class: "dropped", "aria-live": "polite" });
  const showDropped = async (k: number) => {
    clear(dropped);
    dropped.append(h("p", { class: "loading" }, "Loading customers…"));
    try {
      const r = await analysis<Funnel>("funnel", { ...ctx.filters, step: steps, mode, window: window || null, dropped_at: k, limit: 100 }, ctx.signal);
      clear(dropped);
      const d = r.dropped;
      if (!d || d.total === 0) {
        dropped.append(empty(`No customer dropped at step ${k}.`));
        return;
      }
      dropped.append(
        h("h3", null, `Dropped at step ${k} (${steps[k - 1] ?? ""}): ${num(d.total)} customers${d.total > d.customers.length ? `, the first ${d.customers.length}` : ""}`),
        h("p", { class: "inline-list" }, d.customers.map((id) => customerLink(id))),
      );
    } catch (err) {
      clear(dropped);
      dropped.append(errorBox(err instanceof Error ? err.message : String(err)));
    }
  };
  const table = h(
    "table",
    { "data-testid": "funnel-steps" },
    h("thead", null, h("tr", null, h("th", null, "step"), h("th", { class: "n" }, "customers"), h("th", { class: "n" }, "from previous"), h("th", { class: "n" }, "from first"), h("th", { class: "n" }, "dropped"), h("th", null, ""))),
    h(
      "tbody",
      null,
      f.steps.map((s) =>
        h(
          "tr",
          null,
          h("td", null, `${s.index}. ${s.label}`),
          h("td", { class: "n" }, num(s.customers)),
          h("td", { class: "n" }, pct(s.conversion_from_previous)),
          h("td", { class: "n" }, pct(s.conversion_from_first)),
          h("td", { class: "n" }, num(s.dropped_customers)),
          h("td", null, s.dropped_customers > 0 ? h("button", { type: "button", class: "ghost small", onclick: () => void showDropped(s.index) }, "who dropped?") : null),
        ),
      ),
    ),
  );
  const t = f.time_to_convert;
  const hist = chartBox("chart short");
  ctx.main.append(
    h(
      "div",
      { class: "grid2" },
      section("Conversion", h("p", { class: "muted" }, `${num(f.customers)} customers in the selection, mode ${f.mode}.`), chart, table, dropped),
      section(
        "Time to convert",
        h("p", null, `${num(t.converted)} converted · median ${dur(t.median_s)} · p90 ${dur(t.p90_s)} · mean ${dur(t.mean_s)}`),
        hist,
      ),
    ),
  );
  const c = themeColors();
  ctx.chart(chart, {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    grid: { left: 60, right: 20, top: 20, bottom: 60 },
    xAxis: { type: "category", data: f.steps.map((s) => s.label), ...axisStyle(), axisLabel: { color: c.muted, interval: 0, rotate: 20 } },
    yAxis: { type: "value", ...axisStyle() },
    series: [{ type: "bar", name: "customers", data: f.steps.map((s) => s.customers), itemStyle: { color: c.accent }, label: { show: true, position: "top", color: c.text, formatter: (x: { dataIndex: number }) => pct(f.steps[x.dataIndex]?.conversion_from_first ?? null, 0) } }],
  });
  ctx.chart(hist, {
    tooltip: { trigger: "axis" },
    grid: { left: 50, right: 10, top: 10, bottom: 50 },
    xAxis: { type: "category", data: t.histogram.map((b) => b.label), ...axisStyle(), axisLabel: { color: c.muted, interval: 0, rotate: 30 } },
    yAxis: { type: "value", ...axisStyle() },
    series: [{ type: "bar", name: "journeys", data: t.histogram.map((b) => b.cases), itemStyle: { color: c.muted } }],
  });

  if (f.breakdown) {
    const last = f.steps.length - 1;
    ctx.main.append(
      section(
        `Breakdown by ${f.breakdown.by}`,
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, "value"), h("th", { class: "n" }, "entered"), h("th", { class: "n" }, "converted"), h("th", { class: "n" }, "conversion"), h("th", { class: "n" }, "median time"))),
          h(
            "tbody",
            null,
            f.breakdown.groups.map((g) =>
              h(
                "tr",
                null,
                h("td", null, g.value ?? "(none)"),
                h("td", { class: "n" }, num(g.steps[0]?.customers ?? 0)),
                h("td", { class: "n" }, num(g.steps[last]?.customers ?? 0)),
                h("td", { class: "n" }, pct(g.steps[last]?.conversion_from_first ?? null)),
                h("td", { class: "n" }, dur(g.time_to_convert.median_s)),
              ),
            ),
          ),
        ),
      ),
    );
  }
}
