import { analysis } from "../api";
import { stats, type Ctx } from "../app";
import { empty, field, h, section } from "../dom";
import { dur, num, pct } from "../format";
import { touchpointLabel } from "./overview";

interface Test {
  z: number;
  p_value: number;
}
interface Compared {
  change: string;
  verdict: string;
  test: Test | null;
}
interface Compare {
  a: { label: string; events: number; cases: number; customers: number };
  b: { label: string; events: number; cases: number; customers: number };
  alpha: number;
  map: { step: string; gained: number; lost: number; significant: number; edges: (Compared & { from: string; to: string; status: string; share_a: number | null; share_b: number | null; median_a_s: number | null; median_b_s: number | null })[] } | null;
  funnel: (Compared & { index: number; label: string; conversion_a: number | null; conversion_b: number | null })[] | null;
  friction: (Compared & { step: string; score_a: number; score_b: number; failure_rate_a: number | null; failure_rate_b: number | null })[] | null;
}

const MODES = ["periods", "segments", "personas"] as const;
type Mode = (typeof MODES)[number];

function changeBadge(c: Compared): HTMLElement {
  const cls = c.change === "significant_rise" ? "rise" : c.change === "significant_drop" ? "drop" : "same";
  const text = c.change === "significant_rise" ? "▲ significant rise" : c.change === "significant_drop" ? "▼ significant drop" : c.change === "untested" ? "untested" : "no significant change";
  return h("span", { class: `change ${cls}`, title: c.test ? `z ${c.test.z.toFixed(2)}, p ${c.test.p_value.toFixed(3)}` : "not tested" }, text);
}

function isoDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export async function renderCompare(ctx: Ctx): Promise<void> {
  const p = ctx.params;
  const mode: Mode = (MODES as readonly string[]).includes(p.get("mode") ?? "") ? (p.get("mode") as Mode) : "periods";
  const st = await stats();
  // Default periods: the data's time range cut in half.
  const first = st.first_event ? new Date(st.first_event) : new Date();
  const last = st.last_event ? new Date(st.last_event) : new Date();
  const mid = new Date((first.getTime() + last.getTime()) / 2);
  const after = new Date(last.getTime() + 86400000);
  const v = (name: string, fallback: string) => p.get(name) ?? fallback;
  const inputs: Record<string, HTMLInputElement> = {
    a_from: h("input", { type: "date", value: v("a_from", isoDate(first)) }),
    a_to: h("input", { type: "date", value: v("a_to", isoDate(mid)) }),
    b_from: h("input", { type: "date", value: v("b_from", isoDate(mid)) }),
    b_to: h("input", { type: "date", value: v("b_to", isoDate(after)) }),
    a_segment: h("input", { type: "text", value: v("a_segment", "trait.plan = 'premium'"), spellcheck: "false" }),
    b_segment: h("input", { type: "text", value: v("b_segment", "trait.plan != 'premium'"), spellcheck: "false" }),
    a_persona: h("input", { type: "text", value: v("a_persona", "p1") }),
    b_persona: h("input", { type: "text", value: v("b_persona", "p2") }),
    funnel: h("input", { type: "text", value: v("funnel", ""), placeholder: "e.g. cart_added > purchase", spellcheck: "false" }),
  };
  const keys: Record<Mode, string[]> = {
    periods: ["a_from", "a_to", "b_from", "b_to"],
    segments: ["a_segment", "b_segment"],
    personas: ["a_persona", "b_persona"],
  };
  const labels: Record<string, string> = {
    a_from: "A from",
    a_to: "A to",
    b_from: "B from",
    b_to: "B to",
    a_segment: "A segment",
    b_segment: "B segment",
    a_persona: "A persona",
    b_persona: "B persona",
    funnel: "Funnel (optional)",
  };
  const modeSelect = h("select", null, MODES.map((m) => h("option", { value: m, selected: m === mode }, `two ${m}`)));
  modeSelect.addEventListener("change", () => ctx.setParams({ mode: modeSelect.value }));
  const form = h(
    "form",
    { class: "controls" },
    field("Compare", modeSelect),
    [...keys[mode], "funnel"].map((k) => field(labels[k] ?? k, inputs[k] as HTMLInputElement)),
    h("button", { type: "submit" }, "Compare"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const update: Record<string, string | null> = { mode };
    for (const k of [...keys[mode], "funnel"]) update[k] = inputs[k]?.value.trim() || null;
    ctx.setParams(update);
  });
  ctx.main.append(form);

  const query: Record<string, string | null> = {};
  for (const k of [...keys[mode], "funnel"]) query[k] = inputs[k]?.value.trim() || null;
  const c = await analysis<Compare>("compare", { ...ctx.filters, ...query }, ctx.signal);

  const side = (s: Compare["a"], what: string) =>
    h("div", { class: "kpi" }, h("div", { class: "kpi-value" }, num(s.customers)), h("div", { class: "kpi-name" }, `${s.label}: customers`), h("div", { class: "kpi-note" }, `${num(s.events)} events · ${what}`));
  const describe = (x: "a" | "b") =>
    mode === "periods" ? `${query[`${x}_from`] ?? ""} to ${query[`${x}_to`] ?? ""}` : mode === "segments" ? query[`${x}_segment`] ?? "" : `persona ${query[`${x}_persona`] ?? ""}`;
  ctx.main.append(h("div", { class: "kpis", "data-testid": "compare-sides" }, side(c.a, describe("a")), side(c.b, describe("b")), h("div", { class: "kpi" }, h("div", { class: "kpi-value" }, String(c.alpha)), h("div", { class: "kpi-name" }, "significance level"))));

  if (c.funnel) {
    ctx.main.append(
      section(
        "Funnel",
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, "step"), h("th", { class: "n" }, "A"), h("th", { class: "n" }, "B"), h("th", null, "change"), h("th", null, "verdict"))),
          h("tbody", null, c.funnel.map((f) => h("tr", null, h("td", null, `${f.index}. ${f.label}`), h("td", { class: "n" }, pct(f.conversion_a)), h("td", { class: "n" }, pct(f.conversion_b)), h("td", null, changeBadge(f)), h("td", { class: "verdict" }, f.verdict)))),
        ),
      ),
    );
  }
  if (c.friction) {
    ctx.main.append(
      section(
        "Friction",
        c.friction.length
          ? h(
              "table",
              { "data-testid": "compare-friction" },
              h("thead", null, h("tr", null, h("th", null, "touchpoint"), h("th", { class: "n" }, "score A"), h("th", { class: "n" }, "score B"), h("th", { class: "n" }, "failure A"), h("th", { class: "n" }, "failure B"), h("th", null, "change"))),
              h(
                "tbody",
                null,
                c.friction.slice(0, 15).map((f) =>
                  h("tr", { title: f.verdict }, h("td", null, touchpointLabel(f.step)), h("td", { class: "n" }, num(Math.round(f.score_a))), h("td", { class: "n" }, num(Math.round(f.score_b))), h("td", { class: "n" }, pct(f.failure_rate_a)), h("td", { class: "n" }, pct(f.failure_rate_b)), h("td", null, changeBadge(f))),
                ),
              ),
            )
          : empty("No friction points on either side."),
      ),
    );
  }
  if (c.map) {
    const edges = c.map.edges.slice(0, 20);
    ctx.main.append(
      section(
        "Process map changes",
        h("p", { class: "muted" }, `${num(c.map.significant)} transitions changed significantly; ${num(c.map.gained)} only in B, ${num(c.map.lost)} only in A. The 20 most significant:`),
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, "transition"), h("th", { class: "n" }, "share of A"), h("th", { class: "n" }, "share of B"), h("th", { class: "n" }, "median A"), h("th", { class: "n" }, "median B"), h("th", null, "change"))),
          h(
            "tbody",
            null,
            edges.map((e) =>
              h("tr", { title: e.verdict }, h("td", null, `${e.from} → ${e.to}`), h("td", { class: "n" }, pct(e.share_a)), h("td", { class: "n" }, pct(e.share_b)), h("td", { class: "n" }, dur(e.median_a_s)), h("td", { class: "n" }, dur(e.median_b_s)), h("td", null, changeBadge(e))),
            ),
          ),
        ),
      ),
    );
  }
}
