import { get, request } from "../api";
import { customerLink, link, type Ctx } from "../app";
import { clear, empty, errorBox, field, h, section } from "../dom";
import { num, usTime } from "../format";
import { actionText, chainList, ruleJson, spanMicros, stepsSummary, type FiringView, type ReplayReport, type RuleDef, type RuleInfo } from "../triggers";

interface Delivery {
  id: number;
  rule: string;
  firing: string;
  customer_id: string;
  url: string;
  status: "pending" | "delivered" | "dead";
  attempts: number;
  next_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  finished_at: number | null;
}

/** Firings listed one by one; the summary and the customer list still count all of them. */
const FIRINGS_SHOWN = 200;
const DELIVERY_STATES = ["pending", "delivered", "dead"] as const;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function rulesTable(rules: RuleInfo[], selected: string | null): HTMLElement {
  if (rules.length === 0) return empty("No rules yet. Write one in the editor below and save it.");
  return h(
    "div",
    { class: "scroll-x" },
    h(
      "table",
      { "data-testid": "rules" },
      h("thead", null, h("tr", null, h("th", null, "name"), h("th", null, "description"), h("th", null, "state"), h("th", null, "steps"), h("th", null, "actions"))),
      h(
        "tbody",
        null,
        rules.map((r) =>
          h(
            "tr",
            { class: r.name === selected ? "selected" : null, "data-rule": r.name },
            h("td", null, link("/rules", r.name, { rule: r.name }, r.name === selected ? { "aria-current": "true" } : {})),
            h("td", null, r.rule.description ?? h("span", { class: "muted" }, "–")),
            h("td", null, h("span", { class: `badge ${r.enabled ? "on" : "off"}` }, r.enabled ? "enabled" : "disabled")),
            h("td", null, stepsSummary(r.rule)),
            h("td", null, h("ul", { class: "inline-list" }, r.rule.actions.map((a) => h("li", null, actionText(a))))),
          ),
        ),
      ),
    ),
  );
}

function firingsResult(fired: FiringView[], total: number, customers: number, extra: string): HTMLElement {
  const byCustomer = new Map<string, number>();
  for (const f of fired) if (f.customer_id) byCustomer.set(f.customer_id, (byCustomer.get(f.customer_id) ?? 0) + 1);
  const ids = [...byCustomer.keys()].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)) || a.localeCompare(b));
  return h(
    "div",
    null,
    h("p", { class: "replay-summary" }, h("b", { "data-testid": "replay-firings" }, num(total)), ` firing${total === 1 ? "" : "s"} for `, h("b", null, num(customers)), ` customer${customers === 1 ? "" : "s"}${extra}`),
    ids.length
      ? h("div", null, h("h3", null, "Customers"), h("ul", { class: "inline-list customer-chips", "data-testid": "replay-customers" }, ids.map((id) => h("li", null, customerLink(id), (byCustomer.get(id) ?? 0) > 1 ? h("small", { class: "muted" }, ` ×${byCustomer.get(id)}`) : null))))
      : null,
    fired.length
      ? h(
          "details",
          null,
          h("summary", null, `Every firing with its events${fired.length > FIRINGS_SHOWN ? ` (the first ${FIRINGS_SHOWN})` : ""}`),
          h(
            "table",
            null,
            h("thead", null, h("tr", null, h("th", null, "customer"), h("th", null, "completed"), h("th", null, "events"))),
            h("tbody", null, fired.slice(0, FIRINGS_SHOWN).map((f) => h("tr", null, h("td", null, f.customer_id ? customerLink(f.customer_id) : "–"), h("td", null, usTime(f.completed_at)), h("td", null, chainList(f.steps))))),
          ),
        )
      : null,
  );
}

function replaySection(ctx: Ctx, info: RuleInfo): HTMLElement {
  const from = h("input", { type: "date", value: ctx.params.get("from") ?? "" });
  const to = h("input", { type: "date", value: ctx.params.get("to") ?? "" });
  const result = h("div", { "data-testid": "replay-result", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Replay");
  const form = h("form", { class: "controls" }, field("From", from), field("To (exclusive)", to), button);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clear(result);
    button.disabled = true;
    result.setAttribute("aria-busy", "true");
    result.append(h("p", { class: "loading" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Replaying the history…"));
    const body: Record<string, string> = {};
    if (from.value) body.from = from.value;
    if (to.value) body.to = to.value;
    request<ReplayReport>("POST", `/api/v1/rules/${encodeURIComponent(info.name)}/replay`, { body, signal: ctx.signal })
      .then((r) => {
        clear(result);
        const range = from.value || to.value ? ` from ${from.value || "the start"} to ${to.value || "now"}` : " over all time";
        result.append(firingsResult(r.fired, r.firings, r.customers, `${range} (${num(r.events_read)} events read). Nothing was sent or recorded.`));
        result.dataset.state = "ready";
      })
      .catch((err: unknown) => {
        if (ctx.signal.aborted) return;
        clear(result);
        result.append(errorBox(message(err)));
        result.dataset.state = "error";
      })
      .finally(() => {
        button.disabled = false;
        result.removeAttribute("aria-busy");
      });
  });
  return h(
    "section",
    { class: "card", "data-testid": "replay" },
    h("h2", null, `Replay ${info.name}`),
    h("p", { class: "muted" }, "How often, and for whom, the rule would have fired over the stored history, as if each event had arrived at its own time. No webhook, task or event comes of it."),
    form,
    result,
  );
}

function detailSection(ctx: Ctx, info: RuleInfo): HTMLElement {
  const status = h("div", { "aria-live": "polite" });
  const toggle = h("button", { type: "button", class: info.enabled ? "ghost" : "", "data-testid": "rule-toggle" }, info.enabled ? "Disable" : "Enable");
  toggle.addEventListener("click", () => {
    toggle.disabled = true;
    clear(status);
    request<RuleInfo>("POST", `/api/v1/rules/${encodeURIComponent(info.name)}/${info.enabled ? "disable" : "enable"}`)
      .then(() => ctx.setParams({}, false))
      .catch((err: unknown) => {
        toggle.disabled = false;
        status.append(errorBox(message(err)));
      });
  });
  return h(
    "section",
    { class: "card", "data-testid": "rule-detail" },
    h("div", { class: "task-head" }, h("h2", null, info.name), h("span", { class: `badge ${info.enabled ? "on" : "off"}` }, info.enabled ? "enabled" : "disabled"), toggle),
    h("p", { class: "muted" }, info.enabled ? "Evaluated on every event as it arrives." : "Not evaluated; its state is kept, so enabling it resumes where it stopped.", ` Updated ${usTime(info.updated_at)}.`),
    status,
    h("pre", { class: "code definition", "aria-label": `Definition of ${info.name}` }, ruleJson(info.rule)),
    h("details", null, h("summary", null, "Webhook signing secret"), h("p", { class: "muted" }, "Used when neither the action nor its endpoint names a secret (Standard Webhooks signature)."), h("code", null, info.secret)),
  );
}

/** What the editor offers when the project has no rule yet. */
const STARTER = `{
  "name": "login-failed-then-call",
  "description": "a failed login followed by a phone call -> follow up",
  "steps": [
    {"activity": "login_failed"},
    {"activity": "call_started", "channel": "phone", "within": "1h"}
  ],
  "cooldown": "1d",
  "actions": [
    {"task": {"queue": "follow-up", "title": "Follow up on the login problem"}}
  ]
}`;

/** Events that complete the rule once, as a starting point for a test: each step's filter
 * met, each step halfway into its window after the previous one. */
function sampleEvents(rule: RuleDef | null): string {
  if (!rule) return `[\n  {"timestamp": "2026-03-01T10:00:00Z", "identifiers": {"email": "test@example.com"}, "channel": "web", "activity": "login_failed"},\n  {"timestamp": "2026-03-01T10:20:00Z", "identifiers": {"email": "test@example.com"}, "channel": "phone", "activity": "call_started"}\n]`;
  let at = Date.parse("2026-03-01T10:00:00Z");
  const traits = Object.fromEntries(Object.entries(rule.customer?.traits ?? {}).map(([k, v]) => [k, v[0] ?? ""]));
  const events = rule.steps.map((s, i) => {
    if (i > 0) at += Math.max(1, Math.floor(spanMicros(s.within) / 2000));
    const e: Record<string, unknown> = {
      event_id: `test-${i + 1}`,
      timestamp: new Date(at).toISOString(),
      identifiers: { email: "test@example.com" },
      channel: s.channel ?? "web",
      activity: s.activity ?? "step",
    };
    if (s.properties) e.properties = s.properties;
    if (i === 0 && Object.keys(traits).length) e.traits = traits;
    return e;
  });
  return `[\n${events.map((e) => `  ${JSON.stringify(e)}`).join(",\n")}\n]`;
}

/** A JSON array, or NDJSON (one event a line, blank lines skipped). */
function parseEvents(text: string): unknown[] {
  const trimmed = text.trim();
  if (!trimmed) return [];
  if (trimmed.startsWith("[")) {
    try {
      return JSON.parse(trimmed) as unknown[];
    } catch (e) {
      throw new Error(`events: not a valid JSON array: ${message(e)}`);
    }
  }
  return trimmed.split("\n").flatMap((line, i) => {
    if (!line.trim()) return [];
    try {
      return [JSON.parse(line) as unknown];
    } catch (e) {
      throw new Error(`events: line ${i + 1} is not valid JSON: ${message(e)}`);
    }
  });
}

function editorSection(ctx: Ctx, info: RuleInfo | null): HTMLElement {
  const rule = h("textarea", { class: "code", rows: 22, spellcheck: "false", "data-testid": "rule-text" });
  rule.value = info ? ruleJson(info.rule) : STARTER;
  const events = h("textarea", { class: "code", rows: 8, spellcheck: "false", "data-testid": "rule-events" });
  events.value = sampleEvents(info?.rule ?? null);
  const result = h("div", { "data-testid": "editor-result", "aria-live": "polite" });
  const test = h("button", { type: "button" }, "Test");
  const replay = h("button", { type: "button", class: "ghost", "data-testid": "replay-draft" }, "Replay this draft");
  const save = h("button", { type: "button", class: "ghost" }, "Save");
  const show = (...nodes: (Node | string)[]) => {
    clear(result);
    result.append(...nodes);
  };
  test.addEventListener("click", () => {
    let list: unknown[];
    try {
      list = parseEvents(events.value);
    } catch (e) {
      show(errorBox(message(e)));
      return;
    }
    test.disabled = true;
    delete result.dataset.state;
    // The rule goes as typed (YAML or JSON), so the parser's line is the editor's line.
    request<{ firings: FiringView[] }>("POST", "/api/v1/rules/test", { body: { rule: rule.value, events: list }, signal: ctx.signal })
      .then((r) => {
        show(r.firings.length ? firingsResult(r.firings, r.firings.length, 1, " on these events (taken as one customer's history).") : empty("It does not fire on these events."));
        result.dataset.state = "tested";
      })
      .catch((err: unknown) => {
        show(errorBox(message(err)));
        result.dataset.state = "error";
      })
      .finally(() => (test.disabled = false));
  });
  replay.addEventListener("click", () => {
    replay.disabled = true;
    // The state says what the result shows: none while the replay runs.
    delete result.dataset.state;
    result.setAttribute("aria-busy", "true");
    show(h("p", { class: "loading" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Replaying the draft over the history…"));
    request<ReplayReport>("POST", "/api/v1/rules/replay", { body: { rule: rule.value }, signal: ctx.signal })
      .then((r) => {
        show(firingsResult(r.fired, r.firings, r.customers, ` over all time (${num(r.events_read)} events read), had this draft been saved. Nothing was saved, sent or recorded.`));
        result.dataset.state = "replayed";
      })
      .catch((err: unknown) => {
        if (ctx.signal.aborted) return;
        show(errorBox(message(err)));
        result.dataset.state = "error";
      })
      .finally(() => {
        replay.disabled = false;
        result.removeAttribute("aria-busy");
      });
  });
  save.addEventListener("click", () => {
    save.disabled = true;
    request<RuleInfo>("POST", "/api/v1/rules", { body: rule.value, signal: ctx.signal })
      .then((saved) => ctx.setParams({ rule: saved.name }))
      .catch((err: unknown) => {
        show(errorBox(message(err)));
        result.dataset.state = "error";
      })
      .finally(() => (save.disabled = false));
  });
  return h(
    "section",
    { class: "card editor-card", "data-testid": "rule-editor" },
    h("h2", null, "Rule editor"),
    h("p", { class: "muted" }, "A rule as YAML or JSON (docs/triggers.md has the format); errors name the line or the field. Test runs it over the events below, taken as one customer's history; Replay this draft runs it over the stored history; neither stores or sends anything. Save adds it, or replaces the rule of the same name."),
    h(
      "div",
      { class: "grid2" },
      field("Rule", rule),
      h("div", null, field("Events (JSON array or NDJSON)", events, "Canonical events as for POST /v1/events; identifiers are required."), h("div", { class: "controls" }, test, replay, save)),
    ),
    result,
  );
}

function deliveriesSection(ctx: Ctx): HTMLElement {
  const select = h("select", { "data-testid": "delivery-status" }, h("option", { value: "" }, "all"), DELIVERY_STATES.map((s) => h("option", { value: s }, s)));
  const body = h("div", { "aria-live": "polite" });
  const load = () => {
    clear(body);
    body.append(h("p", { class: "loading" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Loading…"));
    get<Delivery[]>("/api/v1/webhook-deliveries", { status: select.value, limit: 100 }, ctx.signal)
      .then((list) => {
        clear(body);
        if (list.length === 0) {
          body.append(empty(select.value ? `No ${select.value} deliveries.` : "No webhook deliveries yet."));
          return;
        }
        body.append(
          h(
            "div",
            { class: "scroll-x" },
            h(
              "table",
              { "data-testid": "deliveries" },
              h("thead", null, h("tr", null, h("th", null, "created"), h("th", null, "rule"), h("th", null, "customer"), h("th", null, "url"), h("th", null, "status"), h("th", { class: "n" }, "attempts"), h("th", null, "last error"), h("th", null, "finished / next attempt"))),
              h(
                "tbody",
                null,
                list.map((d) =>
                  h(
                    "tr",
                    null,
                    h("td", null, usTime(d.created_at)),
                    h("td", null, link("/rules", d.rule, { rule: d.rule })),
                    h("td", null, customerLink(d.customer_id)),
                    h("td", null, h("code", null, d.url)),
                    h("td", null, h("span", { class: `badge delivery-${d.status}` }, d.status)),
                    h("td", { class: "n" }, num(d.attempts)),
                    h("td", null, [d.last_status !== null ? `HTTP ${d.last_status}` : null, d.last_error].filter(Boolean).join(": ") || "–"),
                    h("td", null, d.finished_at !== null ? usTime(d.finished_at) : d.next_attempt_at !== null ? `next ${usTime(d.next_attempt_at)}` : "–"),
                  ),
                ),
              ),
            ),
          ),
        );
      })
      .catch((err: unknown) => {
        if (ctx.signal.aborted) return;
        clear(body);
        body.append(errorBox(message(err)));
      });
  };
  select.addEventListener("change", load);
  load();
  return section("Webhook deliveries", h("p", { class: "muted" }, "Newest first, up to 100. A delivery is retried after 1, 2, 4, 8 and 16 s and is dead after 6 failed attempts."), h("div", { class: "controls" }, field("Status", select)), body);
}

export async function renderRules(ctx: Ctx): Promise<void> {
  const rules = await get<RuleInfo[]>("/api/v1/rules", {}, ctx.signal);
  const asked = ctx.params.get("rule");
  const info = rules.find((r) => r.name === asked) ?? rules[0] ?? null;
  ctx.main.append(
    section("Rules", h("p", { class: "muted" }, `${num(rules.length)} rule${rules.length === 1 ? "" : "s"}: each watches every customer's events and acts when its steps happen in order (a webhook, an agent task, an event). Select one to see it, replay it or edit it.`), rulesTable(rules, info?.name ?? null)),
  );
  if (asked && info && info.name !== asked) ctx.main.append(errorBox(`there is no rule '${asked}'; showing ${info.name}`));
  if (info) ctx.main.append(h("div", { class: "grid2" }, detailSection(ctx, info), replaySection(ctx, info)));
  ctx.main.append(editorSection(ctx, info), deliveriesSection(ctx));
}
