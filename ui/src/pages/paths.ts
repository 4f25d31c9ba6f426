import { analysis } from "../api";
import { chartBox, stats, type Ctx } from "../app";
import { themeColors } from "../charts";
import { empty, field, h, section } from "../dom";
import { label, num, pct } from "../format";

interface PathNode {
  step: string | null;
  grouped_steps: number;
  count: number;
  customers: number;
  ended: number;
}
interface Paths {
  anchor: string;
  direction: string;
  paths: number;
  customers: number;
  positions: { position: number; paths: number; ended: number; nodes: PathNode[] }[];
  links: { from_position: number; from: string | null; to_position: number; to: string | null; count: number }[];
}

export function stepOptions(id: string, steps: string[]): HTMLDataListElement {
  return h("datalist", { id }, steps.map((s) => h("option", { value: s })));
}

export async function renderPaths(ctx: Ctx): Promise<void> {
  const st = await stats();
  const activities = st.by_activity.map((a) => a.name);
  const by = ctx.params.get("by") ?? "activity";
  const fallback = activities.includes("payment_failed") ? "payment_failed" : activities[0] ?? "";
  const anchor = ctx.params.get("anchor") ?? fallback;
  const backward = ctx.params.get("backward") === "true";
  const steps = ctx.params.get("steps") ?? "4";
  const top = ctx.params.get("top") ?? "5";

  const anchorInput = h("input", { type: "text", value: anchor, list: "path-steps", required: true, spellcheck: "false" });
  const bySelect = h("select", null, ["activity", "touchpoint", "channel", "stage"].map((v) => h("option", { value: v, selected: v === by }, v)));
  const dirSelect = h(
    "select",
    null,
    h("option", { value: "forward", selected: !backward }, "forward: what comes after"),
    h("option", { value: "backward", selected: backward }, "backward: what leads to it"),
  );
  const stepsInput = h("input", { type: "number", min: 1, max: 10, value: steps });
  const topInput = h("input", { type: "number", min: 1, max: 20, value: top });
  const form = h(
    "form",
    { class: "controls" },
    field("Anchor step", anchorInput),
    stepOptions("path-steps", by === "activity" ? activities : []),
    field("Step", bySelect),
    field("Direction", dirSelect),
    field("Steps", stepsInput),
    field("Top per step", topInput),
    h("button", { type: "submit" }, "Show paths"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.setParams({ anchor: anchorInput.value.trim(), by: bySelect.value, backward: dirSelect.value === "backward" ? "true" : null, steps: stepsInput.value, top: topInput.value });
  });
  ctx.main.append(form);

  const p = await analysis<Paths>("paths", { ...ctx.filters, anchor, by, backward: backward || null, steps, top }, ctx.signal);
  if (p.paths === 0) {
    ctx.main.append(empty(`No journey contains '${anchor}' with these filters.`));
    return;
  }
  const id = (pos: number, step: string | null) => `${pos}\u0001${step ?? "(other)"}`;
  const nodes: { name: string; value: number; label: string; pos: number }[] = [];
  for (const position of p.positions) {
    for (const n of position.nodes) {
      nodes.push({ name: id(position.position, n.step), value: n.count, label: n.step === null ? `other (${n.grouped_steps})` : label(n.step), pos: position.position });
    }
  }
  const links = p.links.map((l) => ({ source: id(l.from_position, l.from), target: id(l.to_position, l.to), value: l.count }));
  const c = themeColors();
  const box = chartBox("chart tall");
  ctx.main.append(
    section(
      `${backward ? "Paths leading to" : "Paths after"} ${anchor}`,
      h("p", { class: "muted" }, `${num(p.paths)} paths of ${num(p.customers)} customers. Journeys that end are not drawn past their last step.`),
      h("div", { "data-testid": "sankey" }, box),
    ),
  );
  ctx.chart(box, {
    tooltip: {
      trigger: "item",
      formatter: (param: { dataType?: string; data: { label?: string; source?: string; target?: string; value: number } }) => {
        const d = param.data;
        if (param.dataType === "edge") {
          const a = (d.source ?? "").split("\u0001")[1];
          const b = (d.target ?? "").split("\u0001")[1];
          return `${a} → ${b}: ${num(d.value)} (${pct(d.value / p.paths)})`;
        }
        return `${d.label}: ${num(d.value)} paths`;
      },
    },
    series: [
      {
        type: "sankey",
        data: nodes,
        links,
        nodeAlign: "justify",
        layoutIterations: 0,
        emphasis: { focus: "adjacency" },
        lineStyle: { color: "gradient", opacity: 0.35 },
        label: { color: c.text, formatter: (x: { data: { label: string } }) => x.data.label },
        left: 10,
        right: 140,
        top: 10,
        bottom: 10,
      },
    ],
  });

  const table = h(
    "table",
    null,
    h("thead", null, h("tr", null, h("th", null, "position"), h("th", { class: "n" }, "paths"), h("th", { class: "n" }, "ended before"), h("th", null, "top steps"))),
    h(
      "tbody",
      null,
      p.positions.map((pos) =>
        h(
          "tr",
          null,
          h("td", null, pos.position > 0 ? `+${pos.position}` : String(pos.position)),
          h("td", { class: "n" }, num(pos.paths)),
          h("td", { class: "n" }, num(pos.ended)),
          h("td", null, pos.nodes.map((n) => `${n.step === null ? "other" : n.step} ${num(n.count)}`).join(" · ")),
        ),
      ),
    ),
  );
  ctx.main.append(section("By position", table));
}
