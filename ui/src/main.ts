import "./style.css";
import { analysis, ApiError, forgetKey, getKey, onUnauthorized, request, setKey, takeKeyFromFragment } from "./api";
import { currentFilters, GLOBAL_FILTERS, href, makeChart, resetStats, setNavigate, type Ctx } from "./app";
import { clear, errorBox, field, h } from "./dom";
import { renderChannels } from "./pages/channels";
import { renderCompare } from "./pages/compare";
import { renderConformance } from "./pages/conformance";
import { renderCustomer } from "./pages/customer";
import { renderFriction } from "./pages/friction";
import { renderFunnels } from "./pages/funnels";
import { renderJourneyMap } from "./pages/journeyMap";
import { renderOverview } from "./pages/overview";
import { renderPaths } from "./pages/paths";
import { renderPersonas } from "./pages/personas";
import { renderProcessMap } from "./pages/processMap";
import { renderRules } from "./pages/rules";
import { renderTasks } from "./pages/tasks";
import { renderVariants } from "./pages/variants";

interface Route {
  path: string;
  title: string;
  render: (ctx: Ctx) => Promise<void>;
}

const ROUTES: Route[] = [
  { path: "/", title: "Overview", render: renderOverview },
  { path: "/journey-map", title: "Journey map", render: renderJourneyMap },
  { path: "/process-map", title: "Process map", render: renderProcessMap },
  { path: "/paths", title: "Paths", render: renderPaths },
  { path: "/funnels", title: "Funnels", render: renderFunnels },
  { path: "/variants", title: "Variants", render: renderVariants },
  { path: "/channels", title: "Channels", render: renderChannels },
  { path: "/friction", title: "Friction", render: renderFriction },
  { path: "/conformance", title: "Conformance", render: renderConformance },
  { path: "/personas", title: "Personas", render: renderPersonas },
  { path: "/compare", title: "Compare", render: renderCompare },
  { path: "/customers", title: "Customer view", render: renderCustomer },
  { path: "/tasks", title: "Tasks", render: renderTasks },
  { path: "/rules", title: "Rules", render: renderRules },
];

function routeOf(path: string): Route | null {
  if (path === "/" || path === "") return ROUTES[0] ?? null;
  return ROUTES.find((r) => r.path !== "/" && (path === r.path || path.startsWith(`${r.path}/`))) ?? null;
}

// ---- theme ---------------------------------------------------------------------------

const THEME_KEY = "omnitrail.theme";
function effectiveTheme(): "light" | "dark" {
  const saved = localStorage.getItem(THEME_KEY);
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function applyTheme(): void {
  document.documentElement.dataset.theme = effectiveTheme();
}

// ---- layout --------------------------------------------------------------------------

const root = document.getElementById("app") as HTMLElement;
const nav = h("nav", { class: "nav", "aria-label": "Pages" });
const filterBar = h("form", { class: "filters", role: "search", "aria-label": "Filters for every page" });
const main = h("main", { id: "main", tabindex: "-1" });
const pageTitle = h("h1", { class: "page-title" });
const themeButton = h("button", { type: "button", class: "ghost", "aria-label": "Switch light or dark theme" });
const signOutButton = h("button", { type: "button", class: "ghost" }, "Sign out");

function layout(): void {
  clear(root);
  root.append(
    h("a", { href: "#main", class: "skip" }, "Skip to content"),
    h(
      "div",
      { class: "shell" },
      h(
        "aside",
        { class: "sidebar" },
        h("div", { class: "brand" }, h("span", { class: "logo", "aria-hidden": "true" }), "Omnitrail"),
        nav,
        h("div", { class: "side-actions" }, themeButton, signOutButton),
      ),
      h("div", { class: "content" }, h("header", { class: "topbar" }, pageTitle, filterBar), main),
    ),
  );
  themeButton.addEventListener("click", () => {
    localStorage.setItem(THEME_KEY, effectiveTheme() === "dark" ? "light" : "dark");
    applyTheme();
    updateThemeButton();
    void render();
  });
  signOutButton.addEventListener("click", () => {
    forgetKey();
    void render();
  });
  updateThemeButton();
}

function updateThemeButton(): void {
  themeButton.textContent = effectiveTheme() === "dark" ? "☀ Light" : "☾ Dark";
}

function renderNav(path: string): void {
  clear(nav);
  const current = routeOf(path);
  const ul = h("ul");
  for (const r of ROUTES) {
    ul.append(
      h(
        "li",
        null,
        h(
          "a",
          { href: href(r.path), "data-link": "", "aria-current": r === current ? "page" : null },
          r.title,
        ),
      ),
    );
  }
  nav.append(ul);
}

let personaOptions: { key: string; name: string }[] | null = null;
async function loadPersonas(select: HTMLSelectElement): Promise<void> {
  if (!personaOptions) {
    const result = await analysis<{ personas: { key: string; name: string; index: number }[] }>("personas", {});
    personaOptions = result.personas.map((p) => ({ key: p.key, name: `p${p.index}: ${p.name}` }));
  }
  for (const p of personaOptions) {
    const selected = [...select.options].find((o) => o.value === p.key);
    if (selected) selected.textContent = p.name;
    else select.append(h("option", { value: p.key }, p.name));
  }
}

function renderFilters(params: URLSearchParams): void {
  clear(filterBar);
  const from = h("input", { type: "date", name: "from", value: params.get("from") ?? "" });
  const to = h("input", { type: "date", name: "to", value: params.get("to") ?? "" });
  const segment = h("input", {
    type: "text",
    name: "segment",
    value: params.get("segment") ?? "",
    placeholder: "e.g. trait.plan = 'premium' and did('payment_failed')",
    spellcheck: "false",
  });
  const chosen = params.get("persona");
  const persona = h(
    "select",
    { name: "persona" },
    h("option", { value: "" }, "All customers"),
    chosen ? h("option", { value: chosen, selected: true }, chosen) : null,
  );
  // Personas are found by clustering, which can take a while on big data: the list is
  // fetched when the control is first used, not on every page.
  let requested = false;
  const load = () => {
    if (requested) return;
    requested = true;
    persona.setAttribute("aria-busy", "true");
    loadPersonas(persona)
      .catch((err: unknown) => {
        persona.title = `personas could not be loaded: ${err instanceof Error ? err.message : String(err)}`;
      })
      .finally(() => persona.removeAttribute("aria-busy"));
  };
  persona.addEventListener("focus", load);
  persona.addEventListener("pointerdown", load);
  if (personaOptions) load();
  filterBar.append(
    field("From", from),
    field("To (exclusive)", to),
    h("div", { class: "grow" }, field("Segment", segment)),
    field("Persona", persona),
    h(
      "div",
      { class: "filter-actions" },
      h("button", { type: "submit" }, "Apply"),
      h(
        "button",
        {
          type: "button",
          class: "ghost",
          onclick: () => {
            const q = new URLSearchParams(location.search);
            GLOBAL_FILTERS.forEach((n) => q.delete(n));
            go(location.pathname + (q.toString() ? `?${q}` : ""), true);
          },
        },
        "Clear",
      ),
    ),
  );
  filterBar.onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams(location.search);
    const values: Record<string, string> = {
      from: from.value,
      to: to.value,
      segment: segment.value.trim(),
      persona: persona.value,
    };
    for (const [n, v] of Object.entries(values)) {
      if (v) q.set(n, v);
      else q.delete(n);
    }
    go(location.pathname + (q.toString() ? `?${q}` : ""), true);
  };
}

// ---- sign-in -------------------------------------------------------------------------

function renderSignIn(message: string | null): void {
  pageTitle.textContent = "Sign in";
  clear(nav);
  clear(filterBar);
  clear(main);
  const input = h("input", {
    type: "password",
    name: "key",
    autocomplete: "off",
    placeholder: "ots_…",
    required: true,
  });
  const status = h("div", { "aria-live": "polite" }, message ? errorBox(message) : null);
  const form = h(
    "form",
    { class: "card signin" },
    h("h2", null, "Secret key"),
    h(
      "p",
      null,
      "The query API needs a secret key (ots_…) of your project. ",
      h("code", null, "omnitrail demo"),
      " prints one, and ",
      h("code", null, "omnitrail keys create --kind secret"),
      " makes a new one. It is kept in this browser only.",
    ),
    field("Secret key", input),
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = input.value.trim();
    clear(status);
    request("GET", "/api/v1/stats", { key })
      .then(() => {
        setKey(key);
        resetStats();
        personaOptions = null;
        void render();
      })
      .catch((err: unknown) => {
        status.append(errorBox(err instanceof Error ? err.message : String(err)));
      });
  });
  main.append(form);
  main.dataset.state = "signin";
  input.focus();
}

// ---- router --------------------------------------------------------------------------

let controller: AbortController | null = null;
let cleanups: (() => void)[] = [];

function go(url: string, push: boolean): void {
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  void render();
}
setNavigate(go);

async function render(): Promise<void> {
  controller?.abort();
  cleanups.forEach((f) => f());
  cleanups = [];
  const ctl = new AbortController();
  controller = ctl;
  if (!getKey()) {
    renderSignIn(null);
    return;
  }
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  renderNav(path);
  renderFilters(params);
  const route = routeOf(path);
  clear(main);
  if (!route) {
    pageTitle.textContent = "Not found";
    main.append(errorBox(`there is no page at ${path}`));
    main.dataset.state = "error";
    return;
  }
  pageTitle.textContent = route.title;
  document.title = `${route.title} · Omnitrail`;
  main.dataset.page = route.path;
  main.dataset.state = "loading";
  main.setAttribute("aria-busy", "true");
  const loading = h("div", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Loading…");
  const body = h("div", { class: "page" });
  main.append(loading, body);
  const ctx: Ctx = {
    main: body,
    path,
    params,
    filters: currentFilters(params),
    signal: ctl.signal,
    setParams(update, push = true) {
      const q = new URLSearchParams(location.search);
      for (const [n, v] of Object.entries(update)) {
        q.delete(n);
        if (v === null) continue;
        if (Array.isArray(v)) v.forEach((x) => q.append(n, x));
        else if (v !== "") q.set(n, v);
      }
      go(location.pathname + (q.toString() ? `?${q}` : ""), push);
    },
    chart(el, option) {
      const { dispose } = makeChart(el, option);
      cleanups.push(dispose);
    },
    onCleanup(f) {
      cleanups.push(f);
    },
  };
  try {
    await route.render(ctx);
    if (ctl.signal.aborted) return;
    loading.remove();
    main.dataset.state = "ready";
  } catch (err) {
    if (ctl.signal.aborted) return;
    loading.remove();
    const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
    body.prepend(errorBox(message));
    main.dataset.state = "error";
  } finally {
    if (!ctl.signal.aborted) main.removeAttribute("aria-busy");
  }
}

// In-app links navigate without reloading; modified clicks keep the browser's behaviour.
document.addEventListener("click", (e) => {
  const target = e.target instanceof Element ? e.target.closest("a[data-link]") : null;
  if (!(target instanceof HTMLAnchorElement)) return;
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  go(target.getAttribute("href") ?? "/", true);
  main.focus({ preventScroll: true });
});
window.addEventListener("popstate", () => void render());
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  applyTheme();
  updateThemeButton();
  void render();
});

onUnauthorized(() => {
  controller?.abort();
  forgetKey();
  renderSignIn("the key was refused: it is unknown or revoked; sign in with a secret key");
});

takeKeyFromFragment();
applyTheme();
layout();
void render();
