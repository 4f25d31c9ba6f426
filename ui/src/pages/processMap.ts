import { Graph, layout } from "@dagrejs/dagre";
import { analysis } from "../api";
import { customerLink, type Ctx } from "../app";
import { clear, empty, errorBox, field, h, s, section } from "../dom";
import { dur, label, num, pct } from "../format";

interface MapNode {
  step: string;
  events: number;
  customers: number;
  starts: number;
  ends: number;
}
interface MapEdge {
  from: string;
  to: string;
  count: number;
  customers: number;
  median_s: number | null;
  p90_s: number | null;
  mean_s: number | null;
}
interface ProcessMap {
  step: string;
  nodes: MapNode[];
  edges: MapEdge[];
  simplification: { node_coverage: number; edge_coverage: number; hidden_nodes: number; hidden_edges: number };
  totals: { cases: number; customers: number; events: number; steps: number; edges: number; transitions: number };
}
interface StepCustomers {
  total: number;
  customers: { customer_id: string; label: string }[];
}

const START = "\u0000start";
const END = "\u0000end";

/** Colour from green (fast) to red (slow) by rank among the shown transitions. */
function heat(rank: number): string {
  const hue = 130 - 130 * rank;
  return `hsl(${hue.toFixed(0)} 70% 45%)`;
}

export async function renderProcessMap(ctx: Ctx): Promise<void> {
  const view = ctx.params.get("view") === "performance" ? "performance" : "frequency";
  const nodeCoverage = ctx.params.get("node_coverage") ?? "80";
  const edgeCoverage = ctx.params.get("edge_coverage") ?? "60";
  const by = ctx.params.get("by") ?? "activity";
  const m = await analysis<ProcessMap>("map", { ...ctx.filters, node_coverage: nodeCoverage, edge_coverage: edgeCoverage, by }, ctx.signal);

  // Controls: changes re-query the map; the address keeps them.
  const viewSelect = h(
    "select",
    null,
    h("option", { value: "frequency", selected: view === "frequency" }, "frequency (counts)"),
    h("option", { value: "performance", selected: view === "performance" }, "performance (median time)"),
  );
  const bySelect = h("select", null, ["activity", "channel", "touchpoint", "stage"].map((v) => h("option", { value: v, selected: v === by }, v)));
  const nodeSlider = h("input", { type: "range", min: 5, max: 100, step: 5, value: nodeCoverage });
  const edgeSlider = h("input", { type: "range", min: 5, max: 100, step: 5, value: edgeCoverage });
  const nodeOut = h("output", null, `${nodeCoverage}%`);
  const edgeOut = h("output", null, `${edgeCoverage}%`);
  nodeSlider.addEventListener("input", () => (nodeOut.textContent = `${nodeSlider.value}%`));
  edgeSlider.addEventListener("input", () => (edgeOut.textContent = `${edgeSlider.value}%`));
  const apply = () =>
    ctx.setParams({ view: viewSelect.value, by: bySelect.value, node_coverage: nodeSlider.value, edge_coverage: edgeSlider.value }, false);
  [viewSelect, bySelect, nodeSlider, edgeSlider].forEach((c) => c.addEventListener("change", apply));
  ctx.main.append(
    h(
      "div",
      { class: "controls" },
      field("View", viewSelect),
      field("Step", bySelect),
      h("div", { class: "field" }, h("label", { for: "node-cov" }, "Steps shown (coverage of events) "), nodeOut, Object.assign(nodeSlider, { id: "node-cov" })),
      h("div", { class: "field" }, h("label", { for: "edge-cov" }, "Transitions shown (coverage) "), edgeOut, Object.assign(edgeSlider, { id: "edge-cov" })),
    ),
  );
  if (m.nodes.length === 0) {
    ctx.main.append(empty("No events match these filters."));
    return;
  }

  const g = new Graph({ multigraph: false });
  g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 46, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const starts = m.nodes.filter((n) => n.starts > 0);
  const ends = m.nodes.filter((n) => n.ends > 0);
  g.setNode(START, { width: 70, height: 30 });
  g.setNode(END, { width: 70, height: 30 });
  for (const n of m.nodes) g.setNode(n.step, { width: Math.max(110, label(n.step).length * 7.2 + 24), height: 44 });
  for (const e of m.edges) if (e.from !== e.to) g.setEdge(e.from, e.to, { weight: e.count });
  starts.forEach((n) => g.setEdge(START, n.step, { weight: n.starts }));
  ends.forEach((n) => g.setEdge(n.step, END, { weight: n.ends }));
  layout(g);

  const maxCount = Math.max(1, ...m.edges.map((e) => e.count));
  const maxEvents = Math.max(1, ...m.nodes.map((n) => n.events));
  const medians = m.edges.map((e) => e.median_s ?? 0).sort((a, b) => a - b);
  const rankOf = (v: number) => (medians.length > 1 ? medians.findIndex((x) => x >= v) / (medians.length - 1) : 0);
  const graphInfo = g.graph() as { width?: number; height?: number };
  const width = graphInfo.width ?? 800;
  const height = graphInfo.height ?? 600;

  const panel = h("div", { class: "side-panel", "aria-live": "polite" }, h("p", { class: "muted" }, "Select a step or a transition to see the customers who took it."));
  const showCustomers = async (title: string, query: { step: string; next?: string }, facts: string) => {
    clear(panel);
    panel.append(h("h3", null, title), h("p", { class: "muted" }, facts), h("p", { class: "loading" }, "Loading customers…"));
    try {
      const r = await analysis<StepCustomers>("step-customers", { ...ctx.filters, by, limit: 50, ...query }, ctx.signal);
      panel.querySelector(".loading")?.remove();
      panel.append(
        h("p", null, `${num(r.total)} customers${r.total > r.customers.length ? `, the first ${r.customers.length}` : ""}:`),
        h("ul", { class: "customer-list" }, r.customers.map((c) => h("li", null, customerLink(c.customer_id, c.label), h("span", { class: "muted" }, ` ${c.customer_id}`)))),
      );
    } catch (err) {
      panel.querySelector(".loading")?.remove();
      panel.append(errorBox(err instanceof Error ? err.message : String(err)));
    }
  };
  const activate = (el: SVGElement, f: () => void) => {
    el.addEventListener("click", f);
    el.addEventListener("keydown", (e) => {
      const k = (e as KeyboardEvent).key;
      if (k === "Enter" || k === " ") {
        e.preventDefault();
        f();
      }
    });
  };

  // Fits the width of the card when the map is wider; taller maps scroll.
  const svg = s("svg", { class: "process-map", viewBox: `0 0 ${width} ${height}`, width: "100%", style: `max-width:${Math.ceil(width)}px`, role: "group", "aria-label": `Process map of ${m.nodes.length} steps` });
  svg.append(
    s("defs", null, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))),
  );
  const edgeLayer = s("g", { class: "edges" });
  const nodeLayer = s("g", { class: "nodes" });
  svg.append(edgeLayer, nodeLayer);

  const pathOf = (points: { x: number; y: number }[]) => {
    if (points.length === 0) return "";
    const [first, ...rest] = points;
    let d = `M${first!.x},${first!.y}`;
    for (let i = 0; i < rest.length; i++) {
      const p = rest[i]!;
      const next = rest[i + 1];
      if (next) {
        d += ` Q${p.x},${p.y} ${(p.x + next.x) / 2},${(p.y + next.y) / 2}`;
      } else {
        d += ` L${p.x},${p.y}`;
      }
    }
    return d;
  };
  const edgeByKey = new Map(m.edges.map((e) => [`${e.from}\u0001${e.to}`, e]));
  for (const ge of g.edges()) {
    const info = g.edge(ge) as { points?: { x: number; y: number }[] };
    const points = info.points ?? [];
    const e = edgeByKey.get(`${ge.v}\u0001${ge.w}`);
    if (!e) {
      edgeLayer.append(s("path", { d: pathOf(points), class: "edge virtual", "marker-end": "url(#arrow)" }));
      continue;
    }
    const widthPx = 1 + 7 * Math.sqrt(e.count / maxCount);
    const color = view === "performance" ? heat(rankOf(e.median_s ?? 0)) : "";
    const mid = points[Math.floor(points.length / 2)] ?? { x: 0, y: 0 };
    const text = view === "performance" ? dur(e.median_s) : num(e.count);
    const group = s(
      "g",
      { class: "edge-g", tabindex: 0, role: "button", "aria-label": `${e.from} to ${e.to}: ${num(e.count)} times, median ${dur(e.median_s)}` },
      s("title", null, `${e.from} → ${e.to}\n${num(e.count)} times by ${num(e.customers)} customers\nmedian ${dur(e.median_s)}, p90 ${dur(e.p90_s)}`),
      s("path", { d: pathOf(points), class: "edge-hit" }),
      s("path", { d: pathOf(points), class: "edge", style: `stroke-width:${widthPx.toFixed(1)}px${color ? `;stroke:${color}` : ""}`, "marker-end": "url(#arrow)" }),
      s("text", { x: mid.x + 4, y: mid.y, class: "edge-label" }, text),
    );
    activate(group, () => void showCustomers(`${e.from} → ${e.to}`, { step: e.from, next: e.to }, `${num(e.count)} times, ${num(e.customers)} customers, median ${dur(e.median_s)}, p90 ${dur(e.p90_s)}`));
    edgeLayer.append(group);
  }
  // Self-loops are not drawn as edges; the node shows their count instead.
  const loops = new Map(m.edges.filter((e) => e.from === e.to).map((e) => [e.from, e]));

  for (const id of g.nodes()) {
    const n = g.node(id) as { x: number; y: number; width: number; height: number };
    if (id === START || id === END) {
      nodeLayer.append(
        s("g", { class: "terminal" }, s("ellipse", { cx: n.x, cy: n.y, rx: n.width / 2, ry: n.height / 2 }), s("text", { x: n.x, y: n.y + 4, "text-anchor": "middle" }, id === START ? "start" : "end")),
      );
      continue;
    }
    const node = m.nodes.find((x) => x.step === id);
    if (!node) continue;
    const loop = loops.get(id);
    const shade = 0.15 + 0.75 * Math.sqrt(node.events / maxEvents);
    const group = s(
      "g",
      { class: "node", tabindex: 0, role: "button", "aria-label": `${id}: ${num(node.events)} events, ${num(node.customers)} customers` },
      s("title", null, `${id}\n${num(node.events)} events, ${num(node.customers)} customers\nstarts ${num(node.starts)}, ends ${num(node.ends)}${loop ? `\nrepeats ${num(loop.count)} times` : ""}`),
      s("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 6, style: `--shade:${shade.toFixed(3)}` }),
      s("text", { x: n.x, y: n.y - 3, "text-anchor": "middle", class: "node-name" }, label(id)),
      s("text", { x: n.x, y: n.y + 13, "text-anchor": "middle", class: "node-count" }, `${num(node.events)}${loop ? ` ↻${num(loop.count)}` : ""}`),
    );
    activate(group, () => void showCustomers(label(id), { step: id }, `${num(node.events)} events by ${num(node.customers)} customers (${pct(node.customers / Math.max(1, m.totals.customers))})`));
    nodeLayer.append(group);
  }

  ctx.main.append(
    h(
      "p",
      { class: "muted" },
      `${num(m.nodes.length)} of ${num(m.nodes.length + m.simplification.hidden_nodes)} steps and ${num(m.edges.length)} of ${num(m.edges.length + m.simplification.hidden_edges)} transitions shown · ${num(m.totals.events)} events of ${num(m.totals.customers)} customers. `,
      view === "performance" ? "Edge colour: median time (green fast, red slow); label: median." : "Edge width and label: how often.",
    ),
    h("div", { class: "map-layout" }, section("Process map", h("div", { class: "map-scroll", "data-testid": "process-map" }, svg)), section("Customers", panel)),
  );
}
