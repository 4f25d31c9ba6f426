import { get, request } from "../api";
import { customerLink, type Ctx } from "../app";
import { clear, empty, errorBox, field, h, section } from "../dom";
import { dur, label, num, pct, sentiment } from "../format";
import { kpi } from "./overview";

interface DesignStep {
  step: string;
  activities: string[];
  channels: string[];
  within_s: number | null;
  optional: boolean;
  reached: number;
  reached_share: number;
  deviations: { class: string; cases: number; share: number }[];
}
interface Side {
  cases: number;
  goal_reached: number;
  goal_reached_rate: number | null;
  mean_sentiment: number | null;
  median_duration_s: number | null;
}
interface Conformance {
  design: string;
  goal: string;
  steps: DesignStep[];
  deviations: { class: string; cases: number; share: number; examples: number[] }[];
  fitness: { mean: number | null; median: number | null; min: number | null; p25: number | null; p75: number | null; histogram: { label: string; cases: number; share: number }[] };
  impact: { conforming: Side; deviating: Side };
  totals: { cases: number; customers: number; conforming: number; deviating: number; conformance_rate: number | null; goal_reached_rate: number | null };
}
interface Catalog {
  analyses?: { name: string; parameters: { name: string }[] }[];
}

interface EditStep {
  activity: string;
  channels: string;
  within: string;
  optional: boolean;
}

/** Seconds as a design duration (`1d 12h`, `30m`): the format designed journeys use. */
function designDuration(seconds: number | null): string {
  if (seconds === null) return "";
  const units: [string, number][] = [
    ["w", 604800],
    ["d", 86400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ];
  let rest = Math.round(seconds);
  const parts: string[] = [];
  for (const [u, size] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${u}`);
      rest %= size;
    }
  }
  return parts.join(" ");
}

function designObject(name: string, goal: string, steps: EditStep[]): Record<string, unknown> {
  return {
    name,
    ...(goal ? { goal } : {}),
    steps: steps.map((s) => {
      const activities = s.activity.split("|").map((a) => a.trim()).filter(Boolean);
      const channels = s.channels.split(",").map((c) => c.trim()).filter(Boolean);
      return {
        activity: activities.length === 1 ? activities[0] : activities,
        ...(channels.length ? { channels } : {}),
        ...(s.within.trim() ? { within: s.within.trim() } : {}),
        ...(s.optional ? { optional: true } : {}),
      };
    }),
  };
}

function designYaml(design: Record<string, unknown>): string {
  const lines = [`name: ${String(design.name)}`];
  if (design.goal) lines.push(`goal: ${String(design.goal)}`);
  lines.push("steps:");
  for (const s of design.steps as Record<string, unknown>[]) {
    const a = s.activity;
    lines.push(`  - activity: ${Array.isArray(a) ? `[${a.join(", ")}]` : String(a)}`);
    if (s.channels) lines.push(`    channels: [${(s.channels as string[]).join(", ")}]`);
    if (s.within) lines.push(`    within: ${String(s.within)}`);
    if (s.optional) lines.push("    optional: true");
  }
  return `${lines.join("\n")}\n`;
}

function renderResult(c: Conformance): HTMLElement {
  const t = c.totals;
  return h(
    "div",
    { "data-testid": "conformance-result" },
    h(
      "div",
      { class: "kpis" },
      kpi("Conformance rate", pct(t.conformance_rate), `${num(t.conforming)} of ${num(t.cases)} journeys`),
      kpi("Mean fitness", c.fitness.mean === null ? "–" : c.fitness.mean.toFixed(2), "1 = follows the design"),
      kpi("Goal reached", pct(t.goal_reached_rate), `goal: ${c.goal}`),
      kpi("Deviating journeys", num(t.deviating)),
    ),
    h(
      "div",
      { class: "grid2" },
      section(
        "Steps",
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, "step"), h("th", null, "channels"), h("th", null, "within"), h("th", { class: "n" }, "reached"), h("th", null, "deviations"))),
          h(
            "tbody",
            null,
            c.steps.map((s) =>
              h(
                "tr",
                null,
                h("td", null, s.step, s.optional ? h("small", { class: "muted" }, " (optional)") : null),
                h("td", null, s.channels.length ? s.channels.map(label).join(", ") : "any"),
                h("td", null, s.within_s === null ? "–" : dur(s.within_s)),
                h("td", { class: "n" }, pct(s.reached_share)),
                h("td", null, s.deviations.filter((d) => d.cases > 0).map((d) => `${label(d.class)} ${num(d.cases)}`).join(" · ") || "none"),
              ),
            ),
          ),
        ),
      ),
      section(
        "Deviations and their impact",
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, "deviation"), h("th", { class: "n" }, "journeys"), h("th", { class: "n" }, "share"), h("th", null, "examples"))),
          h(
            "tbody",
            null,
            c.deviations.map((d) => h("tr", null, h("td", null, label(d.class)), h("td", { class: "n" }, num(d.cases)), h("td", { class: "n" }, pct(d.share)), h("td", { class: "inline-list" }, d.examples.map((id) => customerLink(id))))),
          ),
        ),
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, ""), h("th", { class: "n" }, "journeys"), h("th", { class: "n" }, "goal reached"), h("th", { class: "n" }, "sentiment"), h("th", { class: "n" }, "median duration"))),
          h(
            "tbody",
            null,
            (["conforming", "deviating"] as const).map((k) => {
              const side = c.impact[k];
              return h("tr", null, h("th", { scope: "row" }, k), h("td", { class: "n" }, num(side.cases)), h("td", { class: "n" }, pct(side.goal_reached_rate)), h("td", { class: "n" }, sentiment(side.mean_sentiment)), h("td", { class: "n" }, dur(side.median_duration_s)));
            }),
          ),
        ),
      ),
    ),
  );
}

export async function renderConformance(ctx: Ctx): Promise<void> {
  const name = ctx.params.get("name") ?? "";
  const nameInput = h("input", { type: "text", value: name, placeholder: "the only design", spellcheck: "false" });
  const form = h("form", { class: "controls" }, field("Designed journey (name in DATA/journeys/)", nameInput), h("button", { type: "submit" }, "Check conformance"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.setParams({ name: nameInput.value.trim() || null });
  });
  ctx.main.append(form);
  const [c, catalog] = await Promise.all([
    request<Conformance>("GET", "/api/v1/analyses/conformance", { query: { ...ctx.filters, name: name || null }, signal: ctx.signal }),
    get<Catalog>("/api/v1/analyses", {}, ctx.signal).catch(() => ({}) as Catalog),
  ]);
  if (c.totals.cases === 0) {
    ctx.main.append(empty("No journey enters this design with these filters."));
  }
  const result = h("div", null, renderResult(c));
  ctx.main.append(result);

  // The editor starts from the design just checked.
  const steps: EditStep[] = c.steps.map((s) => ({ activity: s.activities.join(" | "), channels: s.channels.join(", "), within: designDuration(s.within_s), optional: s.optional }));
  const designName = h("input", { type: "text", value: `${c.design}-draft` });
  const goalInput = h("input", { type: "text", value: c.goal });
  const rows = h("tbody");
  const yaml = h("textarea", { rows: 12, readonly: true, class: "code", "aria-label": "Design as YAML" });
  const inline = (catalog.analyses ?? []).find((a) => a.name === "conformance")?.parameters.some((p) => p.name === "design") ?? false;
  const runStatus = h("div", { "aria-live": "polite" });
  const current = () => designObject(designName.value.trim() || "draft", goalInput.value.trim(), steps);
  const refresh = () => {
    yaml.value = designYaml(current());
  };
  const drawRows = () => {
    clear(rows);
    steps.forEach((s, i) => {
      const bind = (key: "activity" | "channels" | "within", aria: string) => {
        const input = h("input", { type: "text", value: s[key], "aria-label": `${aria} of step ${i + 1}`, spellcheck: "false" });
        input.addEventListener("input", () => {
          s[key] = input.value;
          refresh();
        });
        return input;
      };
      const optional = h("input", { type: "checkbox", checked: s.optional, "aria-label": `step ${i + 1} is optional` });
      optional.addEventListener("change", () => {
        s.optional = optional.checked;
        refresh();
      });
      rows.append(
        h(
          "tr",
          null,
          h("td", null, String(i + 1)),
          h("td", null, bind("activity", "activity")),
          h("td", null, bind("channels", "channels")),
          h("td", null, bind("within", "within")),
          h("td", null, optional),
          h(
            "td",
            null,
            h("button", { type: "button", class: "ghost small", "aria-label": `move step ${i + 1} up`, disabled: i === 0, onclick: () => { steps.splice(i - 1, 0, ...steps.splice(i, 1)); drawRows(); } }, "↑"),
            h("button", { type: "button", class: "ghost small", "aria-label": `remove step ${i + 1}`, onclick: () => { steps.splice(i, 1); drawRows(); } }, "✕"),
          ),
        ),
      );
    });
    refresh();
  };
  drawRows();
  const run = async () => {
    clear(runStatus);
    runStatus.append(h("p", { class: "loading" }, "Checking…"));
    try {
      const r = await request<Conformance>("POST", "/api/v1/analyses/conformance", { body: { ...ctx.filters, design: current() }, signal: ctx.signal });
      clear(runStatus);
      clear(result);
      result.append(renderResult(r));
      result.scrollIntoView({ block: "start" });
    } catch (err) {
      clear(runStatus);
      runStatus.append(errorBox(err instanceof Error ? err.message : String(err)));
    }
  };
  ctx.main.append(
    section(
      "Design editor",
      h("p", { class: "muted" }, "Steps in order. Activity: one, or alternatives separated by |. Channels: allowed channels separated by commas (empty: any). Within: the longest time since the previous step, e.g. 1d 12h."),
      h("div", { class: "controls" }, field("Name", designName), field("Goal step", goalInput)),
      h("table", { class: "editor" }, h("thead", null, h("tr", null, h("th", null, "#"), h("th", null, "activity"), h("th", null, "channels"), h("th", null, "within"), h("th", null, "optional"), h("th", null, ""))), rows),
      h(
        "div",
        { class: "controls" },
        h("button", { type: "button", class: "ghost", onclick: () => { steps.push({ activity: "", channels: "", within: "", optional: false }); drawRows(); } }, "+ Add step"),
        inline ? h("button", { type: "button", onclick: () => void run() }, "Check this design against the data") : null,
      ),
      runStatus,
      field(inline ? "As YAML" : "As YAML — save it as DATA/journeys/<name>.yaml, then check it by name above", yaml),
    ),
  );
}
