import { analysis } from "../api";
import { type Ctx } from "../app";
import { empty, field, h, section } from "../dom";
import { dur, label, num, pct } from "../format";

interface Variants {
  total_cases: number;
  total_variants: number;
  variants: {
    count: number;
    customers: number;
    share: number;
    median_duration_s: number | null;
    steps: string[];
    successes: number;
    with_outcome: number;
    success_share: number | null;
  }[];
}

export async function renderVariants(ctx: Ctx): Promise<void> {
  const top = ctx.params.get("top") ?? "20";
  const by = ctx.params.get("by") ?? "stage";
  const bySelect = h("select", null, ["stage", "channel", "activity", "touchpoint"].map((v) => h("option", { value: v, selected: v === by }, v)));
  const topInput = h("input", { type: "number", min: 1, max: 200, value: top });
  const form = h("form", { class: "controls" }, field("Step", bySelect), field("Variants listed", topInput), h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.setParams({ by: bySelect.value, top: topInput.value });
  });
  ctx.main.append(form);
  const v = await analysis<Variants>("variants", { ...ctx.filters, top, by }, ctx.signal);
  if (v.variants.length === 0) {
    ctx.main.append(empty("No journeys match these filters."));
    return;
  }
  const shown = v.variants.reduce((a, x) => a + x.count, 0);
  ctx.main.append(
    section(
      "Most frequent journeys",
      h("p", { class: "muted" }, `${num(v.total_variants)} distinct journeys among ${num(v.total_cases)}; the ${v.variants.length} listed cover ${pct(shown / Math.max(1, v.total_cases))}.`),
      h(
        "table",
        { "data-testid": "variants" },
        h("thead", null, h("tr", null, h("th", null, "#"), h("th", { class: "n" }, "journeys"), h("th", { class: "n" }, "share"), h("th", { class: "n" }, "median duration"), h("th", { class: "n" }, "success"), h("th", null, "steps"))),
        h(
          "tbody",
          null,
          v.variants.map((x, i) => {
            // Collapse runs of the same step so long journeys stay readable: a ×n marks repeats.
            const runs: [string, number][] = [];
            for (const st of x.steps) {
              const last = runs[runs.length - 1];
              if (last && last[0] === st) last[1] += 1;
              else runs.push([st, 1]);
            }
            return h(
              "tr",
              null,
              h("td", null, String(i + 1)),
              h("td", { class: "n" }, num(x.count)),
              h("td", { class: "n" }, h("span", { class: "sharebar" }, h("span", { style: `width:${Math.min(100, x.share * 100 * 4)}%` })), pct(x.share)),
              h("td", { class: "n" }, dur(x.median_duration_s)),
              h("td", { class: "n" }, x.with_outcome ? pct(x.success_share) : "–"),
              h("td", null, h("ol", { class: "steps" }, runs.map(([st, n]) => h("li", null, label(st), n > 1 ? h("small", null, ` ×${n}`) : null)))),
            );
          }),
        ),
      ),
    ),
  );
}
