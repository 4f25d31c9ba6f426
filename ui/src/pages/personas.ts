import { analysis } from "../api";
import { href, link, type Ctx } from "../app";
import { empty, h, section } from "../dom";
import { label, num, pct } from "../format";

interface Feature {
  feature: string;
  value: number;
  population: number;
  z: number;
}
interface Personas {
  customers: number;
  k: number;
  k_choice: string;
  candidates: { k: number; silhouette: number | null; inertia: number }[];
  personas: { index: number; key: string; name: string; customers: number; share: number; distinguishing: Feature[] }[];
}

function featureValue(f: Feature): string {
  return f.value <= 1 && f.population <= 1 ? `${pct(f.value)} vs ${pct(f.population)}` : `${num(f.value)} vs ${num(f.population)}`;
}

export async function renderPersonas(ctx: Ctx): Promise<void> {
  const p = await analysis<Personas>("personas", ctx.filters, ctx.signal);
  if (p.personas.length === 0) {
    ctx.main.append(empty("Too few customers match these filters to find personas."));
    return;
  }
  const chosen = p.candidates.find((c) => c.k === p.k);
  ctx.main.append(
    h("p", { class: "muted" }, `${num(p.customers)} customers clustered by behaviour into ${p.k} personas (k chosen by ${p.k_choice}${chosen?.silhouette != null ? `, silhouette ${chosen.silhouette.toFixed(2)}` : ""}).`),
    h(
      "div",
      { class: "persona-grid", "data-testid": "personas" },
      p.personas.map((x) =>
        h(
          "article",
          { class: "card persona" },
          h("h2", null, `p${x.index}: ${x.name}`),
          h("p", { class: "persona-size" }, h("b", null, pct(x.share)), ` of customers · ${num(x.customers)}`),
          h("h3", null, "What sets them apart"),
          h(
            "ul",
            null,
            x.distinguishing.map((f) => h("li", null, h("b", null, label(f.feature)), ` ${featureValue(f)} `, h("span", { class: f.z < 0 ? "neg" : "pos" }, `(z ${f.z >= 0 ? "+" : ""}${f.z.toFixed(2)})`))),
          ),
          h(
            "p",
            null,
            h("a", { href: href("/", { persona: x.key }), "data-link": "", class: "button-link" }, "Use as the persona filter"),
            " ",
            link("/channels", "Channels of this persona →", { persona: x.key }),
          ),
        ),
      ),
    ),
    section(
      "Choice of k",
      h(
        "table",
        null,
        h("thead", null, h("tr", null, h("th", { class: "n" }, "k"), h("th", { class: "n" }, "silhouette"), h("th", { class: "n" }, "inertia"))),
        h("tbody", null, p.candidates.map((c) => h("tr", { class: c.k === p.k ? "selected" : null }, h("td", { class: "n" }, String(c.k)), h("td", { class: "n" }, c.silhouette === null ? "–" : c.silhouette.toFixed(3)), h("td", { class: "n" }, num(c.inertia))))),
      ),
    ),
  );
}
